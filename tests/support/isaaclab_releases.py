"""Run code against each Isaac Lab release's real sources (the PyPI wheels in ``.ci/deps``).

| release | wheel                | rsl-rl its image ships | packages on sys.path              |
|---------|----------------------|------------------------|-----------------------------------|
| 2.2     | isaaclab 2.2.0       | 2.3.3                  | ``isaaclab/source/<pkg>``         |
| 2.3     | isaaclab 2.3.2.post1 | 3.0.1                  | ``isaaclab/source/<pkg>``         |
| 3.0     | isaaclab 3.0.0       | 5.5.1                  | the wheel's top level             |

(2.x images install those ``source/<pkg>`` trees in editable mode; the 2.x wheel's own
top-level ``isaaclab`` is a pip bootstrap that imports ``isaacsim``.)

:func:`env_for_release` gives a subprocess environment with that release's ``isaaclab``,
``isaaclab_rl``, ``isaaclab_tasks`` and ``isaaclab_assets`` (the robots' cfgs, which task
cfg modules import) importable, the matching rsl-rl
(``support.rslrl_versions.env_for_version``) and, with ``standin=True``, Isaac Sim's app played
by ``support/isaacsim_standin`` (its ``sitecustomize`` answers for ``isaaclab.app`` only).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support.lib_versions import DEPS_DIR
from support.rslrl_versions import env_for_version

STANDIN_DIR = Path(__file__).resolve().parent / "isaacsim_standin"
WHEEL_VERSIONS = {"2.2": "2.2.0", "2.3": "2.3.2.post1", "3.0": "3.0.0"}
RSL_RL_FOR_RELEASE = {"2.2": "2.3.3", "2.3": "3.0.1", "3.0": "5.5.1"}
RELEASES = tuple(WHEEL_VERSIONS)
PACKAGES = ("isaaclab", "isaaclab_rl", "isaaclab_tasks", "isaaclab_assets", "isaaclab_contrib")


def wheel_dir(release: str) -> Path:
    target = DEPS_DIR / f"isaaclab-{WHEEL_VERSIONS[release]}"
    if not (target / "isaaclab").is_dir():
        pytest.fail(f"{target} is missing: run scripts/setup.sh to install the isaaclab wheels")
    return target


def source_paths(release: str) -> list[Path]:
    """Where ``import isaaclab`` (and isaaclab_rl, isaaclab_tasks) find this release's code."""
    root = wheel_dir(release)
    if release == "3.0":
        return [root]
    return [root / "isaaclab" / "source" / package for package in PACKAGES]


def package_dir(release: str, package: str) -> Path:
    """The directory of ``package`` (e.g. "isaaclab_tasks") in this release's sources."""
    for path in source_paths(release):
        if (path / package).is_dir():
            return path / package
    raise FileNotFoundError(f"{package} is not in isaaclab {WHEEL_VERSIONS[release]}")


def env_for_release(release: str, base: dict[str, str] | None = None, *,
                    standin: bool = True) -> dict[str, str]:
    env = env_for_version(RSL_RL_FOR_RELEASE[release], base)
    front = [str(path) for path in source_paths(release)]
    if standin:
        front.insert(0, str(STANDIN_DIR))
        env["ISAACLAB_STANDIN_RELEASE"] = release
    env["PYTHONPATH"] = os.pathsep.join([*front, env["PYTHONPATH"]])
    return env
