"""Azure ML tracking end to end against the loopback Azure ML service (tests/support/
azure_service.py): the real azure-identity, azure-ai-ml, azureml-mlflow and azure-storage-blob,
a workload identity token, the workspace request, MLflow calls answered by a real mlflow
server, artifacts uploaded to and downloaded from Azurite through SAS URLs. No packet leaves
127.0.0.1 (conftest's socket guard, here and in every launcher the tests start)."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from resilience.faults import RESUMED, RUN_STARTED, audit_checkpoints, find_line
from runtime.launcher_runs import (
    assert_clean_failure,
    background_launcher,
    launcher_env,
    metric_steps,
    run_id_from,
    run_launcher,
    train_args,
)
from support.azure_service import (
    WORKSPACE_NAME,
    WORKSPACE_SCOPE,
    AzureService,
    child_env,
)
from support.streamed import wait_until

from training import azure
from training.config import parse_config
from training.registry import register_final_checkpoint
from training.smoke import run_smoke_test
from training.tracking import resolve_tracking_target, use_tracking_target

pytestmark = pytest.mark.slow  # a real mlflow server and Azurite behind the service

LAUNCH_TIMEOUT_S = 240


def _workspace_requests(service: AzureService) -> list:
    """The management-plane workspace GETs the service answered (not the MLflow calls)."""
    return [r for r in service.requests
            if r.method == "GET" and r.path.lower() == WORKSPACE_SCOPE.lower()]


def _launch_env(service: AzureService, tmp_path: Path, *, drop: tuple[str, ...] = (),
                **extra: str) -> dict[str, str]:
    base = launcher_env(None, tmp_path / "out", **{**service.environment(), **extra})
    for name in drop:
        base.pop(name, None)
    return child_env(base, tmp_path / "guard.log")


def _assert_stayed_on_loopback(tmp_path: Path, service: AzureService) -> None:
    log = tmp_path / "guard.log"
    assert not log.exists() or not log.read_text(), f"refused connects: {log.read_text()}"
    assert not service.proxy.refused, service.proxy.refused


# --------------------------------------------------------------------------- smoke test


def test_smoke_test_passes_and_fetches_the_workspace_once(azure_env, azure_service) -> None:
    config = parse_config(["--task", "InvertedPendulum-v5"], azure_env)
    before = len(_workspace_requests(azure_service))
    passed, results = run_smoke_test(config)
    # The launcher resolves its tracking target after the smoke test: still the same answer.
    target = resolve_tracking_target(config)
    assert len(_workspace_requests(azure_service)) - before == 1
    assert passed, results
    rows = {r.name: r for r in results}
    assert rows["Azure credential"].detail.startswith("WorkloadIdentityCredential: token")
    assert rows["Azure ML workspace"].detail == f"{WORKSPACE_NAME} (loopback)"
    assert "azureml://127.0.0.1:" in rows["MLflow round trip"].detail
    assert target.source == "azureml" and target.uri.startswith("azureml://127.0.0.1:")


# --------------------------------------------------------------------------- credentials


@pytest.mark.parametrize("case", ["no token file variable", "token file missing",
                                  "exchange refused", "tracking URI, no token file variable"])
def test_a_credential_failure_is_one_line_naming_the_cause(
        case: str, azure_service: AzureService, tmp_path: Path) -> None:
    drop: tuple[str, ...] = ()
    extra: dict[str, str] = {}
    expected = "AZURE_FEDERATED_TOKEN_FILE is not set"
    if case == "token file missing":
        extra["AZURE_FEDERATED_TOKEN_FILE"] = str(tmp_path / "no-such-token")
        expected = f"AZURE_FEDERATED_TOKEN_FILE={tmp_path / 'no-such-token'} does not exist"
    elif case == "exchange refused":
        azure_service.state.token_refusal = (400, {
            "error": "invalid_request",
            "error_description": "AADSTS70021: No matching federated identity record found "
                                 "for presented assertion.\r\nTrace ID: 1\r\nCorrelation ID: 2"})
        expected = ("the workload identity exchange answered AADSTS70021: No matching "
                    "federated identity record found for presented assertion.")
    elif case == "tracking URI, no token file variable":
        # An azureml:// MLFLOW_TRACKING_URI without the workspace variables: azureml-mlflow
        # would build its own chain, ending in browser and device code sign-in.
        drop = ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME")
        extra["MLFLOW_TRACKING_URI"] = (f"azureml://127.0.0.1:{azure_service.port}"
                                        f"/mlflow/v2.0{WORKSPACE_SCOPE}")
    if "no token file variable" in case:
        drop += ("AZURE_FEDERATED_TOKEN_FILE",)
    env = _launch_env(azure_service, tmp_path, drop=drop, **extra)
    asked_before = len(azure_service.requests_to("/devicecode"))
    try:
        result = run_launcher(env, *train_args(2), cwd=tmp_path, timeout=LAUNCH_TIMEOUT_S)
    finally:
        azure_service.state.token_refusal = None
    assert_clean_failure(result, 5, expected)
    # azure.identity's multi-line warning block stays off stderr: the error line is all.
    assert result.stderr.strip().splitlines() == [
        line for line in result.stderr.strip().splitlines() if line.startswith("error: ")]
    # Nothing waited on a person: no device code was asked for, no browser sign-in started.
    assert len(azure_service.requests_to("/devicecode")) == asked_before
    assert "To sign in" not in result.stdout + result.stderr
    _assert_stayed_on_loopback(tmp_path, azure_service)


# --------------------------------------------------------------------------- registration


def test_registration_stores_the_runs_artifact_location_and_fits_tags(azure_env) -> None:
    target = resolve_tracking_target(parse_config(["--task", "InvertedPendulum-v5"], azure_env))
    use_tracking_target(target)
    client = MlflowClient()
    experiment_id = client.create_experiment(f"registration-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment_id)
    run_id = run.info.run_id
    client.log_text(run_id, '{"iteration": 1}', "checkpoints/final/checkpoint.json")
    name = f"model-{uuid.uuid4().hex[:8]}"
    version = register_final_checkpoint(name, run_id, {"checkpoint_uri": "x" * 1500})

    stored = client.get_model_version(name, str(version))
    assert stored.source == f"{run.info.artifact_uri}/checkpoints/final"
    assert stored.source.startswith(f"azureml://127.0.0.1:{target.uri.split(':')[2]}")
    assert len(stored.tags["checkpoint_uri"]) == azure.AZUREML_LIMITS.max_tag_value_length
    assert azure.limits_for(target.uri).max_metrics_per_batch == 250
    assert azure.limits_for("http://127.0.0.1:5000") == azure.MLFLOW_LIMITS


# --------------------------------------------------------------------------- training


def _attempt(service: AzureService, tmp_path: Path, name: str, **settings: str):
    folder = tmp_path / name
    folder.mkdir()
    return folder, _launch_env(service, folder, PYTHONUNBUFFERED="1", **settings)


def test_training_tracked_in_azure_ml_uploads_registers_and_fetches_back(
        azure_service: AzureService, azure_env, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    model = f"pendulum-{tag}"
    folder, env = _attempt(azure_service, tmp_path, "attempt-1", WORKFLOW_ID=f"wf-{tag}",
                           EXPERIMENT_NAME=f"azure-{tag}", REGISTER_CHECKPOINT=model)
    workspace_gets = len(_workspace_requests(azure_service))
    result = run_launcher(env, *train_args(4, "--save-interval", "2", "--run-smoke-test"),
                          cwd=folder, timeout=LAUNCH_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "tracking: azureml://127.0.0.1:" in result.stdout
    assert re.search(r"Azure ML workspace +ok +mlw-loopback", result.stdout), result.stdout
    # The smoke test and the launcher share the process's one workspace request.
    assert len(_workspace_requests(azure_service)) - workspace_gets == 1
    run_id = run_id_from(result.stdout)
    use_tracking_target(resolve_tracking_target(parse_config(["--task", "x"], azure_env)))
    client = MlflowClient()

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith(f"azureml://127.0.0.1:{azure_service.port}/")
    assert set(metric_steps(client, run_id, "Perf/total_fps")) == set(range(4))
    # Every checkpoint and the final one are blobs in the (emulated) storage account, intact.
    blobs = azure_service.blob_names(run_id)
    assert {"checkpoints/model_2.pt", "checkpoints/model_2.sha256",
            "checkpoints/final/checkpoint.json"} <= blobs, blobs
    stored = audit_checkpoints(client, run_id)
    assert stored.final_iteration == 4, stored.final_problem
    assert not stored.corrupt and 2 in stored.intact, stored

    # Registered in the workspace's registry, with the run's artifact location as source.
    (version,) = client.search_model_versions(f"name='{model}'")
    assert version.run_id == run_id
    assert version.source == f"{run.info.artifact_uri}/checkpoints/final"
    assert run.data.tags["registered_model"] == f"{model}/{version.version}"

    # runs:/ and models:/ URIs fetch back through the service and the blob store.
    by_run = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/checkpoints/final",
                                                      dst_path=str(tmp_path / "by-run")))
    by_model = Path(mlflow.artifacts.download_artifacts(f"models:/{model}/{version.version}",
                                                        dst_path=str(tmp_path / "by-model")))
    assert (by_run / "checkpoint.json").read_bytes() == (by_model / "checkpoint.json").read_bytes()
    assert json.loads((by_run / "checkpoint.json").read_text())["iteration"] == 4
    _assert_stayed_on_loopback(folder, azure_service)


def test_auto_resume_after_sigkill_continues_the_azure_ml_run(
        azure_service: AzureService, azure_env, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    settings = dict(WORKFLOW_ID=f"wf-{tag}", EXPERIMENT_NAME=f"azure-resume-{tag}")
    args = train_args(4, "--save-interval", "2")
    # First attempt: SIGKILL (an OOM kill, a lost node) once model_2.pt is in the blob store.
    first_dir, first_env = _attempt(azure_service, tmp_path, "attempt-1", **settings)
    with background_launcher(first_env, *args, cwd=first_dir) as first:
        run_id = first.wait_for(RUN_STARTED, LAUNCH_TIMEOUT_S).group(1)
        wait_until(lambda: "checkpoints/model_2.sha256" in azure_service.blob_names(run_id),
                   LAUNCH_TIMEOUT_S, "model_2.pt in the blob store", 0.3)
        first.kill_group()
        first.finish(30)

    # Second attempt, same WORKFLOW_ID, empty disk: continues the run and finishes it.
    second_dir, second_env = _attempt(azure_service, tmp_path, "attempt-2", **settings)
    second = run_launcher(second_env, *args, cwd=second_dir, timeout=LAUNCH_TIMEOUT_S)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    resumed = find_line(second.stdout.splitlines(), RESUMED)
    assert resumed and resumed.group(2) == run_id and int(resumed.group(3)) >= 2
    use_tracking_target(resolve_tracking_target(parse_config(["--task", "x"], azure_env)))
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags.get("attempts") == "2"
    _assert_stayed_on_loopback(second_dir, azure_service)
