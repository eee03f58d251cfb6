# Shared fixtures live in tests/support/ so each area owns its own module.
import os
from pathlib import Path

import pytest
from support.telemetry import TELEMETRY_OFF

for _name, _value in TELEMETRY_OFF.items():  # before any test imports MLflow or onnxruntime
    os.environ.setdefault(_name, _value)

pytest_plugins = ["support.mlflow_server", "support.rslrl_versions"]


@pytest.fixture(autouse=True)
def _user_cache_in_tmp(tmp_path_factory: pytest.TempPathFactory,
                       monkeypatch: pytest.MonkeyPatch) -> Path:
    """The client caches compiled templates under $XDG_CACHE_HOME: never the developer's."""
    cache = tmp_path_factory.getbasetemp() / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache
