"""Stand-in for ``isaaclab.app`` of Isaac Lab 3.0 and the Kit app it starts.

Imitates, line by line, what matters to a training process (paths inside the ``isaaclab``
3.0.0 wheel): ``isaaclab/app/app_launcher.py`` (the deprecated ``AppLauncher`` adapter),
``isaaclab/app/sim_launcher.py`` (``launch_simulation``) and
``isaaclab_physx/app/kit_launcher.py`` (``KitLauncher``); nothing renders or simulates.
"""

import atexit
import contextlib
import logging
import os
import signal
import sys

# isaaclab/app/__init__.pyi exports these from sim_launcher.py; they only walk a cfg (no Kit),
# so the wheel's own run here. isaaclab_tasks/utils/hydra.py:39 imports validate_launch at
# import time, and `import isaaclab_tasks` walks its packages into it.
from isaaclab.app.sim_launcher import Scan, scan, validate_launch  # noqa: E402, F401

logger = logging.getLogger(__name__)


def _log(message):
    # Not upstream: lets tests see what the app was started with.
    print(f"[isaacsim-standin 3.0] {message}", file=sys.__stderr__, flush=True)


_KIT_APPS = []  # stands in for omni.kit.app.get_app()


class _KitApp:
    """omni.kit.app's app: close(exit_code) ends the process with that code (kit_launcher.py:
    "Kit exits 0 from inside close()", i.e. with the code it is given, 0 by default)."""

    def __init__(self):
        self._running = True

    def is_running(self):
        return self._running

    def update(self):
        return None

    def close(self, exit_code=0):
        _log(f"Kit close(exit_code={exit_code}): exit {exit_code}")
        self._running = False
        os._exit(exit_code)


class KitLauncher:
    """isaaclab_physx/app/kit_launcher.py"""

    def __init__(self, launcher_args):
        # _resolve_headless_settings: HEADLESS in {0, 1}; headless when asked or by env
        headless_env = int(os.environ.get("HEADLESS", 0))
        if headless_env not in {0, 1}:
            raise ValueError(f"Invalid value for environment variable `HEADLESS`: {headless_env}. "
                             "Expected: 0 or 1.")
        # ... and headless anyway when no Kit visualizer ('--viz kit') was asked for: always here
        self._headless = True
        # _resolve_camera_settings: only the launcher argument (no ENABLE_CAMERAS variable)
        self._enable_cameras = bool(launcher_args.get("enable_cameras", False))
        self.device = launcher_args.get("device")
        self._app = _KitApp()  # _create_app
        _KIT_APPS.append(self._app)  # the process's one Kit app (omni.kit.app.get_app())
        _log(f"app started: headless={self._headless} enable_cameras={self._enable_cameras} "
             f"device={self.device}")
        # __init__, end: "Kit exits 0 from inside close() and from its own SIGINT handler: close
        # with the real status at exit, and let Ctrl-C unwind user code. Other signals keep
        # their default action." -> an atexit hook closing Kit with 0 (1 when sys.last_exc is
        # set, which Python 3.12 sets only for an uncaught exception), and SIGINT reset to
        # Python's default handler (KeyboardInterrupt). SIGTERM is not touched.
        atexit.register(lambda: self._app.close(
            exit_code=1 if getattr(sys, "last_exc", None) is not None else 0))
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def close(self, exit_code=0):
        # close(): SIGINT to SIG_DFL meanwhile, update(), then Kit's close(exit_code=...)
        if self._app is not None:
            previous_handler = signal.signal(signal.SIGINT, signal.SIG_DFL)
            try:
                self._app.update()
                self._app.close(exit_code=exit_code)
            finally:
                signal.signal(signal.SIGINT, previous_handler)


@contextlib.contextmanager
def launch_simulation(cfg, launcher_args=None):
    """isaaclab/app/sim_launcher.py: start the launchers; on the way out close them with the
    status of the block (SystemExit's code, 130 for KeyboardInterrupt, 1 for an exception)."""
    args = {} if launcher_args is None else launcher_args
    launchers = [KitLauncher(args)]  # require_kit=True: Kit is the one runtime here
    exit_code = 0
    try:
        yield None
    except KeyboardInterrupt:
        exit_code = 130
        raise
    except SystemExit as exc:
        exit_code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        raise
    except Exception:
        exit_code = 1
        raise
    finally:
        for launcher in reversed(launchers):
            launcher.close(exit_code)


# app_launcher.py: "Runtimes the adapter started; held for the process"
_RUNTIME = contextlib.ExitStack()


class _LaunchedApp:
    """app_launcher.py: the running Kit app; close() unwinds the launch as sys.exit(code)."""

    def __init__(self, app):
        self._app = app

    def close(self, *args, exit_code=0, **kwargs):
        _RUNTIME.__exit__(SystemExit, SystemExit(exit_code), None)

    def is_exiting(self):
        return not self._app.is_running()

    def __getattr__(self, name):
        return getattr(self._app, name)


class AppLauncher:
    """app_launcher.py: the deprecated adapter over launch_simulation."""

    def __init__(self, launcher_args=None, **kwargs):
        logger.warning("AppLauncher is deprecated; use isaaclab.app.launch_simulation.")
        # a Namespace's vars, or a copy of the dict; kwargs merged, require_kit=True
        if launcher_args is None or isinstance(launcher_args, dict):
            args = dict(launcher_args or {})
        else:
            args = vars(launcher_args)
        args.update(kwargs, require_kit=True)
        _RUNTIME.enter_context(launch_simulation(None, args))
        # upstream: `import omni.kit.app; self.app = _LaunchedApp(omni.kit.app.get_app())`
        self.app = _LaunchedApp(_KIT_APPS[-1])
