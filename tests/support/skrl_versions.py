"""Run code under each skrl version that Isaac Lab images ship (see lib_versions).

- 1.4.3 (Isaac Lab 2.2 and 2.3): ``.ci/deps/skrl-1.4.3``;
- 2.1.1 (Isaac Lab 3.0): the venv's own skrl, nothing prefixed.

Helpers: :data:`SKRL_VERSIONS`, :func:`env_for_version`, :func:`run_python` (as in
rslrl_versions).
"""

from __future__ import annotations

from support.lib_versions import SKRL

SKRL_VERSIONS = SKRL.versions
VENV_VERSION = SKRL.venv_version
env_for_version = SKRL.env
run_python = SKRL.run_python
