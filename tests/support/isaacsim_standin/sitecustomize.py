"""Stand-in for Isaac Sim's app in test subprocesses: ``isaaclab.app`` only, per release.

Put this directory first on PYTHONPATH and name the release in ``ISAACLAB_STANDIN_RELEASE``
("2.2", "2.3" or "3.0"); the rest of ``isaaclab`` (and ``isaaclab_rl``, ``isaaclab_tasks``) is
that release's real wheel from ``.ci/deps`` (see ``support.isaaclab_releases``). Python imports
``sitecustomize`` at start-up; this one adds a meta-path finder that answers for the module
``isaaclab.app`` alone, with ``app_2x.py`` (2.2 and 2.3: the same ``app_launcher.py`` apart from
logging and pytest argv clean-up) or ``app_30.py``. Every other import is left to Python.
"""

import importlib.abc
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_MODULES = {"2.2": "app_2x.py", "2.3": "app_2x.py", "3.0": "app_30.py"}


class _IsaacLabAppFinder(importlib.abc.MetaPathFinder):
    def __init__(self, release: str) -> None:
        self.release = release

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "isaaclab.app":
            return None
        location = os.path.join(_HERE, _MODULES[self.release])
        # A package over the wheel's own isaaclab/app/ directory: its pure-Python submodules
        # (3.0's sim_launcher.py: scan, validate_launch) import as they are, only the package
        # module (what starts Kit) is ours.
        isaaclab = importlib.util.find_spec("isaaclab")
        real_app = [os.path.join(entry, "app") for entry in
                    (isaaclab.submodule_search_locations if isaaclab else [])]
        return importlib.util.spec_from_file_location(
            fullname, location, submodule_search_locations=real_app)


_release = os.environ.get("ISAACLAB_STANDIN_RELEASE", "")
if _release in _MODULES:
    sys.meta_path.insert(0, _IsaacLabAppFinder(_release))
