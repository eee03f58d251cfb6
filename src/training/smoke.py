"""Smoke test (--run-smoke-test, RUN_AZURE_SMOKE_TEST=1): connectivity checks that run before
training, not instead of it. Each check is one row of a table; the first failure stops the
rest (they depend on it) and the launcher exits 4 before training.

Checks: an Azure token and the workspace (when an Azure ML workspace is set, with the same
credential chain as training), an MLflow round trip (a run with a metric and an artifact that
is downloaded back and compared byte for byte), and the GPUs torch sees (reported; none is not
a failure, local runs train on CPU).
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from training import azure
from training.config import RunConfig
from training.tracking import (
    TrackingTarget,
    experiment_id_for,
    first_line,
    resolve_tracking_target,
    use_tracking_target,
)


class SmokeFailed(Exception):
    """The smoke test failed (exit 4); nothing was trained."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # "ok", "FAILED", "skipped", "not run"
    detail: str


def run_smoke_test(config: RunConfig) -> tuple[bool, list[CheckResult]]:
    checks: list[tuple[str, Callable[[], str | None]]] = []
    if config.azure_workspace is not None:
        checks.append(("Azure credential", _azure_token))
        checks.append(("Azure ML workspace", lambda: _azure_workspace(config)))
    checks.append(("MLflow round trip", lambda: _mlflow_round_trip(config)))
    checks.append(("GPUs", _gpus))

    results: list[CheckResult] = []
    if config.azure_workspace is None:
        results.append(CheckResult("Azure credential / workspace", "skipped",
                                   "no Azure ML workspace set (AZURE_SUBSCRIPTION_ID, "
                                   "AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE_NAME)"))
    failed = False
    for name, check in checks:
        if failed:
            results.append(CheckResult(name, "not run", "an earlier check failed"))
            continue
        try:
            results.append(CheckResult(name, "ok", check() or ""))
        except Exception as error:  # every failure becomes a row, never a traceback
            failed = True
            results.append(CheckResult(name, "FAILED", first_line(error)))
    return not failed, results


def format_table(results: list[CheckResult]) -> str:
    name_width = max(len(r.name) for r in results)
    status_width = max(len(r.status) for r in results)
    lines = ["smoke test:"]
    for r in results:
        lines.append(f"  {r.name:<{name_width}}  {r.status:<{status_width}}  {r.detail}")
    return "\n".join(lines)


def _azure_token() -> str:
    credential = azure.build_credential()
    token = azure.acquire_token(credential)
    return f"{type(credential).__name__}: token acquired (expires at unix time {token.expires_on})"


def _azure_workspace(config: RunConfig) -> str:
    # The one workspace request of the process: the round trip below and the launcher's
    # tracking target reuse its answer (azure.resolve_workspace is cached).
    assert config.azure_workspace is not None
    workspace = azure.resolve_workspace(config.azure_workspace)
    return f"{workspace.name} ({workspace.location})"


def _mlflow_round_trip(config: RunConfig) -> str:
    from mlflow import MlflowClient
    from mlflow.entities import RunStatus

    target: TrackingTarget = resolve_tracking_target(config)
    use_tracking_target(target)
    client = MlflowClient()
    experiment_id = experiment_id_for(config.experiment_name, target)
    run = client.create_run(experiment_id, run_name="smoke-test", tags={"smoke_test": "1"})
    run_id = run.info.run_id
    payload = secrets.token_hex(32)
    succeeded = False
    try:
        client.log_metric(run_id, "smoke_test/round_trip", 1.0)
        client.log_text(run_id, payload, "smoke_test/round_trip.txt")
        with tempfile.TemporaryDirectory() as scratch:
            local = client.download_artifacts(run_id, "smoke_test/round_trip.txt", scratch)
            echoed = Path(local).read_text()
        if echoed != payload:
            raise RuntimeError("the artifact downloaded back differs from the one uploaded")
        succeeded = True
    finally:
        client.set_terminated(
            run_id, RunStatus.to_string(RunStatus.FINISHED if succeeded else RunStatus.FAILED))
    return f"{target.uri} ({target.source}): run {run_id}, metric and artifact identical"


def _gpus() -> str:
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return "none visible to torch (training runs on CPU)"
    names = [torch.cuda.get_device_name(i) for i in range(count)]
    return f"{count}: " + ", ".join(names)
