"""Stand-in for ``isaaclab.app`` of Isaac Lab 2.2 / 2.3 and the Isaac Sim app it starts.

Imitates, line by line, what matters to a training process (paths inside the ``isaaclab``
2.2.0 / 2.3.2.post1 wheels, under ``isaaclab/source/isaaclab/isaaclab/app/app_launcher.py``
unless named otherwise); nothing renders or simulates.
"""

import os
import signal
import sys

RELEASE = os.environ.get("ISAACLAB_STANDIN_RELEASE", "2.2")


def _log(message):
    # Not upstream: lets tests see what the app was started with.
    print(f"[isaacsim-standin {RELEASE}] {message}", file=sys.__stderr__, flush=True)


class SimulationApp:
    """Isaac Sim's ``isaacsim/simulation_app/simulation_app.py`` (not in the wheels; its
    behaviour per shared/docs/isaaclab.md and Isaac Lab issue #6573)."""

    def __init__(self, config, experience=""):
        self.config = dict(config)
        self._running = True
        # SimulationApp.__init__ installs a SIGINT handler that shuts the app down and
        # exits the process with status 0.
        signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum, frame):
        _log("SIGINT: Isaac Sim shuts down, exit 0")
        self.close()
        sys.exit(0)

    def is_running(self):
        return self._running

    def update(self):
        return None

    def close(self):
        # isaaclab/apps/isaaclab.python.kit (line ~167, inherited by the headless kit files)
        # sets `fastShutdown = true`: SimulationApp.close() then ends the process at once with
        # status 0, without Python's exit handlers or buffered-stream flushes.
        _log("close(): fast shutdown, exit 0")
        self._running = False
        os._exit(0)


class AppLauncher:
    # _APPLAUNCHER_CFG_INFO defaults used by __init__'s resolution steps
    _DEFAULTS = {"headless": False, "livestream": -1, "enable_cameras": False, "xr": False,
                 "device": "cuda:0", "experience": ""}

    def __init__(self, launcher_args=None, **kwargs):
        # __init__: launcher_args None -> {}, a Namespace -> its __dict__
        if launcher_args is None:
            launcher_args = {}
        elif not isinstance(launcher_args, dict):
            launcher_args = launcher_args.__dict__
        # __init__: kwargs and launcher_args must not share a key (ValueError), then merged.
        # Other keys are accepted: only SimulationApp's own (_SIM_APP_CFG_TYPES) reach it.
        if kwargs:
            overlap = set(kwargs) & set(launcher_args)
            if overlap:
                raise ValueError(f"Input `launcher_args` and `kwargs` both provided common "
                                 f"attributes: {overlap}.")
            launcher_args.update(kwargs)
        self._config_resolution(launcher_args)
        # _create_app: stdout goes to /dev/null while SimulationApp starts, then is reset to
        # sys.__stdout__ (whatever sys.stdout was before is dropped).
        self._app = SimulationApp({"headless": self._headless})
        sys.stdout = sys.__stdout__
        _log(f"app started: headless={self._headless} enable_cameras={self._enable_cameras} "
             f"device={self._device}")
        # __init__, end: "Set up signal handlers for graceful shutdown": SIGTERM, SIGABRT and
        # SIGSEGV -> _abort_signal_handle_callback, replacing any handler installed before.
        signal.signal(signal.SIGTERM, self._abort_signal_handle_callback)
        signal.signal(signal.SIGABRT, self._abort_signal_handle_callback)
        signal.signal(signal.SIGSEGV, self._abort_signal_handle_callback)

    @property
    def app(self):
        return self._app

    def _config_resolution(self, launcher_args):
        # _resolve_livestream_settings: LIVESTREAM must be an int in {0, 1, 2}
        livestream = int(os.environ.get("LIVESTREAM", 0))
        if livestream not in {0, 1, 2}:
            raise ValueError(f"Invalid value for environment variable `LIVESTREAM`: {livestream} .")
        # _resolve_headless_settings: HEADLESS in {0, 1}; headless=True supersedes it
        headless_env = int(os.environ.get("HEADLESS", 0))
        if headless_env not in {0, 1}:
            raise ValueError(f"Invalid value for environment variable `HEADLESS`: {headless_env} .")
        headless_arg = launcher_args.pop("headless", self._DEFAULTS["headless"])
        forced = headless_arg is True or livestream in {1, 2}
        self._headless = True if forced else bool(headless_env)
        # _resolve_camera_settings: ENABLE_CAMERAS in {0, 1}; the argument wins only when True
        cameras_env = int(os.environ.get("ENABLE_CAMERAS", 0))
        if cameras_env not in {0, 1}:
            raise ValueError(f"Invalid value for environment variable `ENABLE_CAMERAS`: "
                             f"{cameras_env} .")
        cameras_arg = launcher_args.get("enable_cameras", self._DEFAULTS["enable_cameras"])
        self._enable_cameras = True if cameras_arg is True else bool(cameras_env)
        # _resolve_device_settings: "cuda", "cuda:<id>" or "cpu", else ValueError
        device = launcher_args.get("device", self._DEFAULTS["device"])
        if "cuda" not in device and "cpu" not in device:
            raise ValueError(f"Invalid value for input keyword argument `device`: {device}.")
        self._device = device

    def _abort_signal_handle_callback(self, signal, frame):
        # "Handle the abort/segmentation/kill signals.": close the app (fast shutdown: exit 0)
        _log("SIGTERM/SIGABRT/SIGSEGV: AppLauncher closes the app")
        self._app.close()
