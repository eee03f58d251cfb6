"""Step 2b: which task ids the payload registers, read without running it, and the -t check.

The runtime imports every package under ``src/training/tasks/`` and each ``--task-module``
before it looks the task up (``training.envs.tasks``). The client cannot import them (no
gymnasium, no runtime here), so it reads their ``.py`` files with :mod:`ast` and collects the
literal ids of ``gymnasium.register(...)`` calls, whatever the import is called
(``import gymnasium as gym``; ``from gymnasium.envs.registration import register``).

A task given with ``-t`` must be one of: an id the payload registers, one of gymnasium's own
ids (``gymnasium_ids.txt``, written by ``scripts/gymnasium_ids.py`` from gymnasium 1.4), or
an Isaac Lab task. Otherwise the client stops with exit 2 and the closest names. Where the
read cannot be complete (an id that is not a literal string, a file that does not parse
here, a ``--task-module`` that lives in the image rather than the payload) an unknown id
earns a note instead.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from osmo_inline.errors import BadInput

GYMNASIUM_IDS_FILE = Path(__file__).with_name("gymnasium_ids.txt")
TASKS_DIR = "tasks/"  # the convention: every package under src/training/tasks/ is imported
RUNTIME_PACKAGE = "training"  # the payload's own import name
# What gymnasium.register is reachable as, once a file's import aliases are resolved.
REGISTER_FUNCTIONS = frozenset({
    "gymnasium.register", "gymnasium.envs.register", "gymnasium.envs.registration.register",
})


class TaskCatalog(NamedTuple):
    ids: dict[str, str]  # task id -> the payload file (relative to src/training) registering it
    unread: tuple[str, ...]  # why some registrations could not be read (one line each)
    source: Path  # the source tree and its packaged files, for the hints of a refusal
    files: tuple[str, ...] = ()
    read: frozenset[str] = frozenset()  # the files the container imports, read above


def module_files(module: str, files: Sequence[str]) -> list[str] | None:
    """The packaged files (relative to src/training) of a ``--task-module``, as the runtime
    imports it: ``training.a.b`` and ``a.b`` (a top-level package shipped in the payload)
    both mean ``a/b.py`` or ``a/b/``. None when the module is not in the payload at all (it
    comes from the image); BadInput when its package is but the module is not."""
    parts = module.split(".")
    if parts[0] == RUNTIME_PACKAGE:
        parts = parts[1:]
        if not parts:
            raise BadInput("--task-module training would import the whole runtime; name the "
                           "package that registers tasks (e.g. training.tasks.my_robot)")
    elif not any(name.startswith(parts[0] + "/") for name in files):
        return None
    path = "/".join(parts)
    found = [name for name in files if name == path + ".py"
             or (name.startswith(path + "/") and name.endswith(".py"))]
    if not found:
        raise BadInput(f"task module {module} is not in the payload: neither "
                       f"src/training/{path}.py nor src/training/{path}/ is packaged")
    return found


def read_catalog(source: Path, files: Sequence[str], task_modules: Sequence[str]) -> TaskCatalog:
    """The ids registered by the packaged ``files`` under tasks/ and by ``task_modules``."""
    to_read = {name for name in files if name.startswith(TASKS_DIR) and name.endswith(".py")}
    unread: list[str] = []
    for module in task_modules:
        found = module_files(module, files)
        if found is None:
            unread.append(f"task module {module} is not in the payload (the image's own?)")
        else:
            to_read.update(found)
    ids, problems = _read_ids(source, sorted(to_read))
    return TaskCatalog(ids, (*unread, *problems), source, tuple(files), frozenset(to_read))


def _read_ids(source: Path, names: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """(task id -> file, why some could not be read) for the files ``names``."""
    ids: dict[str, str] = {}
    unread: list[str] = []
    for name in names:
        text = (source / name).read_text(encoding="utf-8", errors="replace")
        if "register" not in text:  # most files: no need to parse them
            continue
        try:
            literal, dynamic = registered_ids(ast.parse(text, filename=name))
        except SyntaxError as error:  # maybe newer syntax than this Python's: not our call
            unread.append(f"{name} does not parse here (line {error.lineno}: {error.msg})")
            continue
        for task_id in literal:
            ids.setdefault(task_id, name)
        if dynamic:
            unread.append(f"{name} registers {dynamic} id(s) that are not literal strings")
    return ids, unread


def registered_ids(tree: ast.Module) -> tuple[list[str], int]:
    """(the literal ids of the gymnasium.register calls in ``tree``, how many other ids)."""
    aliases = _import_aliases(tree)
    literal: list[str] = []
    dynamic = 0
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or _resolved(node.func, aliases) not in \
                REGISTER_FUNCTIONS:
            continue
        given = next((k.value for k in node.keywords if k.arg == "id"),
                     node.args[0] if node.args else None)
        if isinstance(given, ast.Constant) and isinstance(given.value, str):
            literal.append(given.value)
        else:
            dynamic += 1
    return literal, dynamic


def _import_aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> the dotted name it stands for, from the file's import statements."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:  # `import a.b` binds `a`
                    top = alias.name.split(".", 1)[0]
                    aliases[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _resolved(func: ast.expr, aliases: dict[str, str]) -> str | None:
    """``gym.envs.registration.register`` -> its dotted name with the first part resolved."""
    attributes: list[str] = []
    while isinstance(func, ast.Attribute):
        attributes.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name) or func.id not in aliases:
        return None
    return ".".join([aliases[func.id], *reversed(attributes)])


def gymnasium_ids() -> list[str]:
    return GYMNASIUM_IDS_FILE.read_text(encoding="utf-8").split()


def looks_like_isaaclab(task: str) -> bool:
    """Isaac Lab's own tasks (all releases start their ids with Isaac)."""
    return task.startswith("Isaac")


def check_task(task: str, catalog: TaskCatalog) -> list[str]:
    """Accept ``task`` (returning notes for stderr) or raise BadInput with the closest names."""
    if task in catalog.ids or looks_like_isaaclab(task):
        return []
    known_gym = gymnasium_ids()
    if task in known_gym:
        return []
    if catalog.unread:
        return [f"note: task {task} is not among the payload's literal registrations, gymnasium "
                "ids or Isaac Lab tasks; not checked further because " + "; ".join(catalog.unread)]
    not_imported = _registered_elsewhere(task, catalog)
    if not_imported:
        package = not_imported.split("/", 1)[0].removesuffix(".py")
        raise BadInput(f"task {task} is registered in src/training/{not_imported}, which the "
                       f"container does not import: pass --task-module {package} (or move it "
                       "under src/training/tasks/)")
    import difflib  # only on this path: keeps a dry run's start-up light

    close = difflib.get_close_matches(task, [*catalog.ids, *known_gym], n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    own = ", ".join(sorted(catalog.ids)) or "none"
    raise BadInput(f"unknown task {task!r}: {hint}(the payload registers: {own}; also "
                   "gymnasium ids such as HalfCheetah-v5 and Isaac Lab tasks Isaac-...)")


def _registered_elsewhere(task: str, catalog: TaskCatalog) -> str | None:
    """The packaged file outside tasks/ and the task modules that registers ``task``."""
    others = [name for name in catalog.files if name.endswith(".py") and name not in catalog.read]
    return _read_ids(catalog.source, others)[0].get(task)


def describe(catalog: TaskCatalog) -> list[str]:
    """One stderr line listing the payload's tasks and where each is registered."""
    if not catalog.ids:
        return []
    return ["payload tasks: " + ", ".join(f"{task_id} ({path})"
                                          for task_id, path in sorted(catalog.ids.items()))]


def relative_names(arcnames: Iterable[str], prefix: str) -> list[str]:
    """Packed member names relative to the payload's src/training directory."""
    return [name[len(prefix) + 1:] for name in arcnames if name.startswith(prefix + "/")]
