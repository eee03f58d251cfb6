"""Run code under each rsl-rl version that Isaac Lab images ship (see lib_versions).

- 2.3.3 (Isaac Lab 2.2) and 3.0.1 (Isaac Lab 2.3): ``.ci/deps/rsl_rl-<v>``;
- 5.5.1 (Isaac Lab 3.0): the venv's own rsl-rl-lib, nothing prefixed.

Fixtures:

- ``rslrl_version``: parametrized over :data:`RSL_RL_VERSIONS` (ids ``rsl_rl-2.3.3`` ...);
- ``rslrl_env``: the environment dict for a subprocess under ``rslrl_version``.

Helpers: :func:`env_for_version` (same dict for a version you name) and :func:`run_python`
(run a script or ``-c`` code under a version, output captured, text mode).
"""

from __future__ import annotations

import pytest

from support.lib_versions import RSL_RL

RSL_RL_VERSIONS = RSL_RL.versions
VENV_VERSION = RSL_RL.venv_version
env_for_version = RSL_RL.env
run_python = RSL_RL.run_python


@pytest.fixture(params=RSL_RL_VERSIONS, ids=lambda version: f"rsl_rl-{version}")
def rslrl_version(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def rslrl_env(rslrl_version: str) -> dict[str, str]:
    return env_for_version(rslrl_version)
