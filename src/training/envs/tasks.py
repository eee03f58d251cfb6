"""Register the payload's own tasks with gymnasium, right before the task is looked up.

Two sources, imported in this order (each module once per process):

1. the convention: every package directly under ``training/tasks/`` (``training.tasks.<name>``,
   sorted by name);
2. ``--task-module`` / ``TASK_MODULES``: dotted module names for other layouts, e.g. an Isaac
   Lab extension package shipped in the payload. A name whose first part is a package directly
   in the payload's ``training/`` directory (``my_ext.tasks`` for ``src/training/my_ext/``) is
   imported under that top-level name: the payload's ``training/`` directory is appended to
   ``sys.path`` for it, because extension packages import themselves by their own name
   (``import my_ext.tasks.reach.mdp``) and their entry points say ``my_ext...:Cfg``.

Registration is what Isaac Lab's own task packages do when imported (``gymnasium.register``
with ``env_cfg_entry_point`` / ``rsl_rl_cfg_entry_point`` / ``skrl_cfg_entry_point`` kwargs),
so the entry points resolve through Isaac Lab's ``load_cfg_from_registry`` unchanged.

A module that fails to import is :class:`~training.envs.TaskError` (exit 2) with one line
naming the module and the error; the traceback goes to stdout, the task log.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

PAYLOAD_DIR = Path(__file__).resolve().parents[1]  # the payload's training/ directory
CONVENTION_PACKAGE = "training.tasks"


def convention_modules() -> list[str]:
    """``training.tasks.<name>`` for every package directly under training/tasks/."""
    tasks_dir = PAYLOAD_DIR / "tasks"
    if not tasks_dir.is_dir():
        return []
    return sorted(f"{CONVENTION_PACKAGE}.{info.name}"
                  for info in pkgutil.iter_modules([str(tasks_dir)]) if info.ispkg)


def register_payload_tasks(task_modules: Sequence[str] = ()) -> list[str]:
    """Import the convention's packages, then ``task_modules``; return the task ids they
    registered (new in gymnasium's registry). Raises TaskError on an import failure."""
    import gymnasium

    from training.envs import TaskError, one_line

    before = set(gymnasium.registry)
    for module in [*convention_modules(), *task_modules]:
        _make_importable(module)
        try:
            importlib.import_module(module)
        except Exception as error:  # anything a user's module raises, SyntaxError included
            traceback.print_exc(file=sys.stdout)  # the task log keeps where it failed
            sys.stdout.flush()
            raise TaskError(f"cannot import task module {module}: {type(error).__name__}: "
                            f"{one_line(error)}") from error
    registered = sorted(set(gymnasium.registry) - before)
    if registered:
        print(f"payload tasks registered: {', '.join(registered)}", flush=True)
    return registered


def _make_importable(module: str) -> None:
    """Append the payload's training/ directory to sys.path when ``module`` is a top-level
    package shipped there (see the module doc); installed packages keep precedence."""
    top = module.split(".", 1)[0]
    if top == "training" or not (PAYLOAD_DIR / top).is_dir():
        return
    if str(PAYLOAD_DIR) not in sys.path:
        sys.path.append(str(PAYLOAD_DIR))
        importlib.invalidate_caches()
