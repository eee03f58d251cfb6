"""Run code under each rsl-rl version that Isaac Lab images ship.

One Python process can import only one ``rsl_rl``, so a test that needs a given version runs
its code in a subprocess whose PYTHONPATH starts with that version's directory:

- 2.3.3 (Isaac Lab 2.2) and 3.0.1 (Isaac Lab 2.3): ``.ci/deps/rsl_rl-<v>`` (``pip --target``,
  made by ``scripts/setup.sh``), sharing the venv's torch and other dependencies;
- 5.5.1 (Isaac Lab 3.0): the venv's own rsl-rl-lib, nothing prefixed.

Fixtures:

- ``rslrl_version``: parametrized over :data:`RSL_RL_VERSIONS` (ids ``rsl_rl-2.3.3`` ...);
- ``rslrl_env``: the environment dict for a subprocess under ``rslrl_version``.

Helpers: :func:`env_for_version` (same dict for a version you name) and :func:`run_python`
(run a script or ``-c`` code under a version, output captured, text mode).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPS_DIR = REPO_ROOT / ".ci" / "deps"
RSL_RL_VERSIONS = ("2.3.3", "3.0.1", "5.5.1")
VENV_VERSION = "5.5.1"  # the one installed in the venv itself


def env_for_version(version: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a subprocess that must import rsl-rl ``version``."""
    env = dict(os.environ if base is None else base)
    env["GIT_PYTHON_REFRESH"] = "quiet"  # rsl_rl.runners imports GitPython
    # src: the project; tests: the shared test helpers (pytest's own pythonpath setting).
    path = [str(REPO_ROOT / "src"), str(REPO_ROOT / "tests")]
    if version != VENV_VERSION:
        target = DEPS_DIR / f"rsl_rl-{version}"
        if not (target / "rsl_rl").is_dir():
            pytest.fail(f"{target} is missing: run scripts/setup.sh to install rsl-rl {version}")
        path.insert(0, str(target))
    if env.get("PYTHONPATH"):
        path.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(path)
    return env


def run_python(
    version: str, *args: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python *args`` under rsl-rl ``version`` (e.g. ``run_python("2.3.3", "-c", code)``)."""
    return subprocess.run(
        [sys.executable, *args],
        env=env_for_version(version),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(params=RSL_RL_VERSIONS, ids=lambda version: f"rsl_rl-{version}")
def rslrl_version(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def rslrl_env(rslrl_version: str) -> dict[str, str]:
    return env_for_version(rslrl_version)
