"""The launcher end to end: real training (gymnasium MuJoCo task through the RSL-RL backend),
real MLflow (a `mlflow server` on 127.0.0.1), run as a subprocess exactly as the container
runs it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path

import mlflow
import pytest
from launcher_runs import (
    TASK,
    artifact_names,
    assert_clean_failure,
    launcher_command,
    launcher_env,
    metric_steps,
    run_id_from,
    run_launcher,
    train_args,
)
from mlflow import MlflowClient
from support.mlflow_server import MlflowServer, free_port, not_mlflow_server
from support.telemetry import TELEMETRY_OFF

pytestmark = pytest.mark.slow

PER_ITERATION_METRICS = (
    "Train/mean_reward", "Train/mean_episode_length", "Loss/learning_rate",
    "Policy/mean_noise_std", "Perf/total_fps", "Perf/iteration_time",
)


def _client(uri: str) -> MlflowClient:
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient()


def _wait_for_artifact(client: MlflowClient, experiment: str, name: str,
                       process: subprocess.Popen, timeout_s: float = 120) -> str:
    """Poll the store until a run of `experiment` has checkpoints/<name>; return its run id."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        found = client.get_experiment_by_name(experiment)
        for run in client.search_runs([found.experiment_id]) if found else []:
            if name in artifact_names(client, run.info.run_id, "checkpoints"):
                return run.info.run_id
        time.sleep(0.3)
    raise AssertionError(f"checkpoints/{name} did not reach the store while training ran")


def test_train_streams_metrics_and_checkpoints_and_stores_the_final(
    mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    client = _client(mlflow_server.url)
    env = launcher_env(mlflow_server.url, tmp_path / "out", WORKFLOW_ID="wf-123",
                       PAYLOAD_SHA256="ab" * 32, MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL="1")
    process = subprocess.Popen(launcher_command(*train_args(20, "--save-interval", "2")),
                               env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        # An intermediate checkpoint is in the store while training is still running.
        _wait_for_artifact(client, f"isaaclab-{TASK}", "model_2.pt", process)
        assert process.poll() is None
        stdout, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 0, stdout + stderr
    run_id = run_id_from(stdout)
    assert "it 20/20 | reward " in stdout and " steps/s" in stdout
    assert f"--checkpoint-uri runs:/{run_id}/checkpoints/final" in stdout

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    for name in PER_ITERATION_METRICS:
        assert metric_steps(client, run_id, name) == list(range(20)), name
    assert any(k.startswith("Loss/") and k != "Loss/learning_rate" for k in run.data.metrics)
    assert any(k.startswith("system/") for k in run.data.metrics)  # MLflow's system metrics
    assert run.data.params["num_envs"] == "8" and run.data.params["max_iterations"] == "20"
    assert run.data.params["rsl_rl_version"] == "5.5.1"
    assert run.data.params["torch_threads"] == "1"  # on the CPU; torch's default: one a core
    assert run.data.tags["workflow_id"] == "wf-123"
    assert run.data.tags["payload_sha256"] == "ab" * 32
    assert run.data.tags["resume_uri"] == f"runs:/{run_id}/checkpoints/final"

    assert {f"model_{i}.pt" for i in range(2, 21, 2)} <= artifact_names(client, run_id,
                                                                      "checkpoints")
    assert "model_2.sha256" in artifact_names(client, run_id, "checkpoints")
    final_dir = Path(mlflow.artifacts.download_artifacts(
        f"runs:/{run_id}/checkpoints/final", dst_path=str(tmp_path / "final")))
    manifest = json.loads((final_dir / "checkpoint.json").read_text())
    checkpoint = final_dir / "model_20.pt"
    assert manifest["iteration"] == 20 and manifest["file"] == "model_20.pt"
    assert manifest["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert (manifest["run_id"], manifest["task"], manifest["backend"]) == (run_id, TASK, "rsl_rl")
    assert manifest["rsl_rl_version"] == "5.5.1"


def test_a_training_run_reports_to_no_one_and_leaves_no_machine_id(
        mlflow_server: MlflowServer, tmp_path: Path) -> None:
    """Every run checks its exported policy.onnx in onnxruntime, which since 1.29 also sends
    usage events from Linux (mobile.events.data.microsoft.com) and keeps a device id and an
    event cache under ~/.cache/Microsoft/DeveloperTools/.onnxruntime; MLflow 3 would keep an
    installation id under ~/.config/mlflow. The launcher turns both off itself, so nothing
    lands in HOME, whatever the user's shell holds (here: none of the opt-outs, and no
    PYTEST_CURRENT_TEST, which MLflow takes for a CI). Fails on the code before
    ORT_DISABLE_TELEMETRY, which left the onnxruntime device id."""
    home = tmp_path / "home"
    home.mkdir()
    env = launcher_env(mlflow_server.url, tmp_path / "out", HOME=str(home))
    for name in (*TELEMETRY_OFF, "PYTEST_CURRENT_TEST", "XDG_CACHE_HOME", "XDG_CONFIG_HOME"):
        env.pop(name, None)
    result = run_launcher(env, *train_args(1), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "policy exported: runs:/" in result.stdout  # onnxruntime did run
    assert sorted(str(path.relative_to(home)) for path in home.rglob("*")
                  if path.is_file()) == []


def test_registering_twice_gives_versions_1_and_2(mlflow_server: MlflowServer,
                                                  tmp_path: Path) -> None:
    client = _client(mlflow_server.url)
    # Two separate submissions of the same workflow id: not a retry, so no auto-resume.
    env = launcher_env(mlflow_server.url, tmp_path / "out", WORKFLOW_ID="wf-reg",
                       AUTO_RESUME="false")
    run_ids = []
    for _ in range(2):
        result = run_launcher(env, *train_args(2, "--register-checkpoint", "pendulum-policy"),
                              cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        run_ids.append(run_id_from(result.stdout))
    assert "as model 'pendulum-policy' version 2" in result.stdout
    versions = sorted(client.search_model_versions("name='pendulum-policy'"),
                      key=lambda v: int(v.version))
    assert [v.version for v in versions] == ["1", "2"]
    assert [v.run_id for v in versions] == run_ids
    latest = versions[1]
    assert latest.tags["task"] == TASK and latest.tags["iteration"] == "2"
    assert latest.tags["workflow_id"] == "wf-reg" and len(latest.tags["sha256"]) == 64
    assert latest.tags["checkpoint_mode"] == "from-scratch"


def test_failed_registration_exits_6_and_keeps_the_checkpoint(mlflow_server: MlflowServer,
                                                              tmp_path: Path) -> None:
    client = _client(mlflow_server.url)
    env = launcher_env(mlflow_server.url, tmp_path / "out")
    result = run_launcher(env, *train_args(2, "--register-checkpoint", "team/policy"),
                          cwd=tmp_path)
    assert result.returncode == 6, result.stderr
    assert "Traceback" not in result.stderr
    run_id = run_id_from(result.stdout)
    assert f"the checkpoint is kept at runs:/{run_id}/checkpoints/final" in result.stderr
    assert client.get_run(run_id).info.status == "FAILED"
    assert "model_2.pt" in artifact_names(client, run_id, "checkpoints/final")


def test_smoke_test_runs_before_training_and_training_follows(mlflow_server: MlflowServer,
                                                              tmp_path: Path) -> None:
    env = launcher_env(mlflow_server.url, tmp_path / "out", RUN_AZURE_SMOKE_TEST="1")
    result = run_launcher(env, *train_args(2), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    table, _, training = result.stdout.partition("tracking: ")
    assert "smoke test:" in table
    assert "MLflow round trip" in table and "metric and artifact identical" in table
    assert "GPUs" in table and "FAILED" not in table
    assert "it 2/2" in training


def test_failed_smoke_test_exits_4_before_training(tmp_path: Path) -> None:
    unreachable = MlflowServer(tmp_path / "none").url  # nothing listens there
    env = launcher_env(unreachable, tmp_path / "out")
    result = run_launcher(env, *train_args(2, "--run-smoke-test"), cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    assert "MLflow round trip" in result.stdout and "FAILED" in result.stdout
    assert "not run" in result.stdout  # the GPU row after it
    assert "it 1/" not in result.stdout
    assert "error: smoke test failed" in result.stderr


def test_tracking_outage_mid_training(restartable_mlflow_server: MlflowServer,
                                      tmp_path: Path) -> None:
    """The server is killed after the first checkpoint and restarted later: training goes on,
    and the checkpoints saved during the outage reach the store once it is back."""
    server = restartable_mlflow_server
    client = _client(server.url)
    env = launcher_env(server.url, tmp_path / "out")
    process = subprocess.Popen(launcher_command(*train_args(50, "--save-interval", "2")),
                               env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        run_id = _wait_for_artifact(client, f"isaaclab-{TASK}", "model_2.pt", process)
        server.stop()
        time.sleep(3)
        assert process.poll() is None, "training ended before the outage"
        server.start()
        stdout, stderr = process.communicate(timeout=400)
    finally:
        process.kill()
    assert process.returncode == 0, stdout + stderr
    assert "NOT in the store" not in stdout
    saved = {p.name for p in (tmp_path / "out" / "runs" / run_id).glob("model_*.pt")}
    assert saved == {f"model_{i}.pt" for i in range(2, 51, 2)}
    assert saved <= artifact_names(client, run_id, "checkpoints")
    assert "model_50.pt" in artifact_names(client, run_id, "checkpoints/final")
    assert metric_steps(client, run_id, "Train/mean_reward") == list(range(50))
    assert client.get_run(run_id).info.status == "FINISHED"


def test_a_store_that_does_not_answer_at_start_is_retryable(tmp_path: Path) -> None:
    """No server on the port (a tracking server restarting, say): exit 75, so the workflow
    template reschedules the task instead of failing the workflow."""
    env = launcher_env(f"http://127.0.0.1:{free_port()}", tmp_path / "out",
                       MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    result = run_launcher(env, *train_args(2), cwd=tmp_path)
    assert_clean_failure(result, 75, "cannot start an MLflow run",
                         "the store did not answer: exiting 75 (retryable)")
    assert "it 1/" not in result.stdout


@pytest.mark.parametrize("workflow_id", ["", "wf-refused"],
                         ids=["at-run-start", "at-auto-resume-look-up"])
def test_a_store_that_refuses_fails_for_good(tmp_path: Path, workflow_id: str) -> None:
    """Something answers on the port but it is not an MLflow server (a wrong URI): running
    the task again cannot help, so exit 5 at once, not 75, whether the auto-resume look-up
    (WORKFLOW_ID set) or the run's start meets it first."""
    with not_mlflow_server() as url:
        env = launcher_env(url, tmp_path / "out", MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
                           WORKFLOW_ID=workflow_id)
        started = time.monotonic()
        result = run_launcher(env, *train_args(2), cwd=tmp_path)
    assert_clean_failure(result, 5, "refused the look-up" if workflow_id else
                         "cannot start an MLflow run", "404")
    assert "retryable" not in result.stderr and "trying again" not in result.stdout
    assert time.monotonic() - started < 60  # no look-up retries for a refusal
