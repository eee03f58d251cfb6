"""The Isaac Sim app's lifetime: started once, early; closed last, keeping the exit code.

Inside an Isaac Lab image (``isaaclab`` importable) the launcher starts the app right after the
dependency check, as Isaac Lab's own train scripts start ``AppLauncher`` before anything else:
``isaaclab_tasks``, ``omni`` and payload task packages may only be imported once it is up.
Outside one there is no app and :data:`NO_APP` stands in.

What Isaac Sim does to a process, read from each release's sources (the ``isaaclab`` wheels on
PyPI; facts also in shared/docs/isaaclab.md), and what this module does about it:

- **Closing the app ends the process with status 0.** 2.2/2.3: the kit files
  (``isaaclab/apps/isaaclab.python*.kit``) set fast shutdown, so ``SimulationApp.close()`` exits
  the process at once with 0. 3.0: ``isaaclab/app/app_launcher.py``'s ``_LaunchedApp.close``
  unwinds ``launch_simulation`` with ``SystemExit(0)``, whose ``finally`` calls
  ``isaaclab_physx/app/kit_launcher.py``'s ``KitLauncher.close(0)``: Kit exits 0 from inside its
  close; and ``KitLauncher.__init__`` registers an ``atexit`` hook that closes Kit with 0 (1 only
  when ``sys.last_exc`` is set) when the interpreter exits, so even ``sys.exit(5)`` ends as 0.
  Hence :meth:`App.exit` flushes Python's and C's stdio and ends the process itself with
  ``os._exit(code)`` for every non-zero code (no close, no atexit hook). For 0 it closes the app
  as upstream does (its own exit is 0 too), with a watchdog so a hanging close cannot hold the
  pod forever.
- **Signal handlers.** 2.2/2.3: ``AppLauncher.__init__`` (``isaaclab/app/app_launcher.py``)
  installs ``_abort_signal_handle_callback`` (closes the app: exit 0) for SIGTERM, SIGABRT and
  SIGSEGV, over any handler installed before it; Isaac Sim's ``SimulationApp`` installs a SIGINT
  handler that shuts down and exits 0. 3.0: ``KitLauncher.__init__`` resets SIGINT to Python's
  ``default_int_handler`` (KeyboardInterrupt) and leaves SIGTERM alone. :func:`start_app` calls
  ``reinstall_signals`` right after the app is up, so the launcher's own graceful stop wins on
  every release.
- **Cameras.** 2.x ``AppLauncher._resolve_camera_settings`` reads the launcher argument
  ``enable_cameras`` and, when that is not True, the ``ENABLE_CAMERAS`` variable (0 or 1, anything
  else raises); 3.0 ``KitLauncher._resolve_camera_settings`` reads only the argument. We pass the
  argument and, on 2.x, set the variable to the same 0/1.
- **TF32.** Upstream's rsl-rl train scripts allow TF32 for CUDA matmul and cuDNN (3.0:
  ``isaaclab_rl/entrypoints/backends/train_rsl_rl.py`` through ``scoped_torch_backend_flags``,
  also ``cudnn.deterministic=False``; 2.x ``scripts/reinforcement_learning/rsl_rl/train.py``);
  :func:`start_app` sets the same once the app is up.

Standard library only at import: this module is imported before the dependency check.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
import platform
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# How long a close with code 0 may take before the process ends with 0 anyway.
APP_CLOSE_TIMEOUT_S = 60.0
RELEASES = ("2.2", "2.3", "3.0")


@dataclass
class App:
    """A started Isaac Sim app (``handle`` is the AppLauncher), or none (``release`` None)."""

    release: str | None = None  # Isaac Lab release: "2.2", "2.3", "3.0"; None: no app
    handle: Any = None

    @property
    def started(self) -> bool:
        return self.release is not None

    def versions(self) -> dict[str, str]:
        """Tags for the run: the Isaac Lab release and package versions, Isaac Sim's and
        Python's (empty where there is no app or no such package)."""
        return {"isaaclab_release": self.release or "",
                "isaaclab_version": _version_of("isaaclab") if self.started else "",
                "isaacsim_version": _version_of("isaacsim") if self.started else "",
                "python_version": platform.python_version()}

    def exit(self, code: int) -> int:
        """End the launcher with ``code``. Without an app: flush and return it (the caller
        exits). With one: never returns (see module doc)."""
        flush_stdio()
        if not self.started:
            return code
        if code == 0:
            _close_app_with_watchdog(self.handle)
        os._exit(code)


NO_APP = App()


def _version_of(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:  # 2.x images install isaaclab from source
        module = sys.modules.get(package)
        return str(getattr(module, "__version__", ""))


def flush_stdio() -> None:
    """Python's streams, then C's (Kit and native libraries write through C stdio)."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: nothing left to save
            pass
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no libc symbol table (not Linux): Python's flush suffices
        pass


def _close_app_with_watchdog(launcher: Any) -> None:
    """Close the app as upstream does (the process then ends with 0 from inside close); a
    close that hangs or returns still ends the process with 0."""
    watchdog = threading.Timer(APP_CLOSE_TIMEOUT_S, os._exit, args=(0,))
    watchdog.daemon = True
    watchdog.start()
    try:
        launcher.app.close()
    except BaseException:  # noqa: BLE001 -- 3.0 unwinds as SystemExit(0); any error: still 0
        pass
    flush_stdio()


def isaaclab_release() -> str:
    """The Isaac Lab release of the importable ``isaaclab``: "2.2", "2.3" or "3.0".

    3.0 is the release whose ``isaaclab/app`` has ``sim_launcher.py`` (its kit launcher
    moved to ``isaaclab_physx``); 2.x ``isaaclab.__version__`` is the extension version from
    ``source/isaaclab/config/extension.toml`` (2.2.0: 0.44.9, 2.3.2: 0.54.2), and 2.3 starts
    at 0.46 (2.2.x ship 0.44/0.45)."""
    spec = importlib.util.find_spec("isaaclab")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("isaaclab is not importable")
    package_dir = list(spec.submodule_search_locations)[0]
    if os.path.exists(os.path.join(package_dir, "app", "sim_launcher.py")):
        return "3.0"
    import isaaclab

    parts = str(getattr(isaaclab, "__version__", "0.0")).split(".")
    major, minor = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    if major >= 3:
        return "3.0"
    return "2.3" if major == 0 and minor >= 46 else "2.2"


def launcher_kwargs(release: str, config: Any) -> dict[str, Any]:
    """AppLauncher's keyword arguments for ``release`` (accepted by all three).

    One rank of several is ``distributed``, as Isaac Lab's train scripts' ``--distributed``
    makes it: 2.x's ``AppLauncher._resolve_device_settings`` then puts the app on
    ``cuda:<LOCAL_RANK>`` with ``multi_gpu`` off and caps each process's CPU threads (Kit's
    ``carb.tasking`` ``threadCount``, ``PXR_WORK_THREAD_LIMIT``) at its share of the node's
    cores; 3.0's ``sim_launcher._resolve_distributed_device`` picks the same GPU."""
    from training.distributed import this_rank

    return {"headless": True, "device": config.device or "cuda:0",
            "enable_cameras": bool(config.enable_cameras),
            "distributed": this_rank().distributed}


def start_app(config: Any, reinstall_signals: Callable[[], None]) -> App:
    """The Isaac Sim app when this is an Isaac Lab image, else :data:`NO_APP`."""
    if importlib.util.find_spec("isaaclab") is None:
        return NO_APP
    release = isaaclab_release()
    if release != "3.0":  # 2.x also reads the variable; it must be 0 or 1 (see module doc)
        os.environ["ENABLE_CAMERAS"] = "1" if config.enable_cameras else "0"
    from isaaclab.app import AppLauncher

    launcher = AppLauncher(**launcher_kwargs(release, config))
    reinstall_signals()  # over AppLauncher's SIGTERM and Isaac Sim's SIGINT (module doc)
    _allow_tf32()
    return App(release=release, handle=launcher)


def _allow_tf32() -> None:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.deterministic = False
