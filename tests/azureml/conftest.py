"""The Azure tests: one loopback Azure ML service (tests/support/azure_service.py) and one
real `mlflow server` behind it per session; a socket guard in this process and in the processes
the tests start that refuses any connection outside 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from support import loopback
from support.azure_service import (
    AZURITE_BIN,
    AzureService,
    assert_loopback_credential_environment,
)
from support.mlflow_server import MlflowServer

pytest.importorskip("azure.ai.ml", reason="the azure extra is not installed (scripts/setup.sh)")
pytest.importorskip("azureml.mlflow", reason="azureml-mlflow is not installed (scripts/setup.sh)")
if not AZURITE_BIN.exists():
    pytest.skip(f"Azurite is not installed at {AZURITE_BIN} (scripts/setup.sh, needs npm)",
                allow_module_level=True)


@pytest.fixture(scope="session", autouse=True)
def _loopback_guard() -> Iterator[None]:
    loopback.install_guard()
    yield
    assert not loopback.refused, f"connections outside 127.0.0.1 were attempted: {loopback.refused}"


@pytest.fixture(scope="session")
def azure_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureService]:
    root = tmp_path_factory.mktemp("azure")
    server = MlflowServer(root / "mlflow-server").start()
    service = AzureService(root / "service", server.url)
    try:
        yield service
    finally:
        service.close()
        server.stop()
    # Azurite is node code, out of the socket guard's reach: its telemetry must not have run.
    assert not service.azurite.telemetry_id.exists(), "Azurite's telemetry was on"


@pytest.fixture
def azure_env(azure_service: AzureService, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process pointed at the service with a workload identity; nothing else of the
    developer's Azure settings (az login, a service principal) can take part."""
    for name in list(os.environ):
        if name.startswith(("AZURE_", "AZUREML_", "MLFLOW_")) or name in ("IDENTITY_ENDPOINT",
                                                                          "MSI_ENDPOINT"):
            monkeypatch.delenv(name)
    env = azure_service.environment()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert_loopback_credential_environment(os.environ)
    # A process resolves a workspace once (training.azure caches it): each test starts afresh.
    from training import azure

    azure.resolve_workspace.cache_clear()
    return env
