"""Run code under each version of an RL library that Isaac Lab images ship.

One Python process can import only one version of a package, so a test that needs a given
version runs its code in a subprocess whose PYTHONPATH starts with that version's directory
``.ci/deps/<package>-<version>`` (``pip install --no-deps --target``, made by
``scripts/setup.sh``; they share the venv's torch and other dependencies). The version installed
in the venv itself needs no directory.

:data:`RSL_RL` and :data:`SKRL` describe the two libraries; ``tests/support/rslrl_versions.py``
and ``tests/support/skrl_versions.py`` give each its fixtures.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPS_DIR = REPO_ROOT / ".ci" / "deps"


@dataclass(frozen=True)
class LibraryVersions:
    package: str  # import name; also the prefix of its .ci/deps directories
    versions: tuple[str, ...]
    venv_version: str  # the one installed in the venv itself

    def env(self, version: str, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a subprocess that must import ``version`` of this library."""
        env = dict(os.environ if base is None else base)
        env["GIT_PYTHON_REFRESH"] = "quiet"  # rsl_rl.runners imports GitPython
        # src: the project; tests: the shared test helpers (pytest's own pythonpath setting).
        path = [str(REPO_ROOT / "src"), str(REPO_ROOT / "tests")]
        if version != self.venv_version:
            target = DEPS_DIR / f"{self.package}-{version}"
            if not (target / self.package).is_dir():
                pytest.fail(f"{target} is missing: run scripts/setup.sh to install "
                            f"{self.package} {version}")
            path.insert(0, str(target))
        if env.get("PYTHONPATH"):
            path.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(path)
        return env

    def run_python(
        self, version: str, *args: str, cwd: Path | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """``python *args`` under ``version`` (e.g. ``run_python("1.4.3", "-c", code)``)."""
        return subprocess.run(
            [sys.executable, *args],
            env=self.env(version),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


RSL_RL = LibraryVersions("rsl_rl", ("2.3.3", "3.0.1", "5.5.1"), venv_version="5.5.1")
SKRL = LibraryVersions("skrl", ("1.4.3", "2.1.1"), venv_version="2.1.1")
