"""`-b skrl` through the real launcher, with the guarantees RSL-RL has: metrics and checkpoint
uploads to a real `mlflow server`, auto-resume into the same run after a SIGKILL, registration,
a graceful SIGTERM stop (exit 75, checkpoint stored) and cross-library checkpoints refused
with exit 7. skrl 2.1.1 (the venv's); both skrl versions train in test_skrl_backend.py."""

from __future__ import annotations

import re
import signal
import uuid
from pathlib import Path

import pytest
from launcher_runs import (
    artifact_names,
    assert_clean_failure,
    background_launcher,
    launcher_env,
    metric_steps,
    run_id_from,
    run_launcher,
    train_args,
)
from mlflow import MlflowClient
from support.mlflow_server import MlflowServer
from support.streamed import wait_until

pytestmark = pytest.mark.slow

SKRL = ("--backend", "skrl")
VALUE_LOSS = "Loss / Value loss"  # one of skrl's own tracked names, logged as it is


def _env(server: MlflowServer, out: Path, **extra: str) -> dict[str, str]:
    return launcher_env(server.url, out, EXPERIMENT_NAME=f"skrl-{uuid.uuid4().hex[:8]}", **extra)


def test_a_killed_skrl_run_resumes_in_the_same_run_and_registers(
        mlflow_server: MlflowServer, tmp_path: Path) -> None:
    client = MlflowClient(mlflow_server.url)
    env = _env(mlflow_server, tmp_path / "pod-1", WORKFLOW_ID=f"wf-{uuid.uuid4().hex[:8]}",
               OMP_NUM_THREADS="2")  # the user's thread count, not the CPU default of one
    args = train_args(6, *SKRL, "--save-interval", "2", num_envs=4)
    with background_launcher(env, *args, cwd=tmp_path) as first:
        run_id = first.wait_for(r"^run (\w+): ", 120)[1]
        wait_until(lambda: "model_2.sha256" in artifact_names(client, run_id, "checkpoints"),
                   120, "model_2.pt stored")
        first.kill_group()  # an OOM kill: nothing runs on the way out
    retry_env = dict(env, TRAINING_OUTPUT_DIR=str(tmp_path / "pod-2"))
    name = f"skrl-model-{uuid.uuid4().hex[:6]}"
    retry = run_launcher(retry_env, *args, "--register-checkpoint", name, cwd=tmp_path)
    assert retry.returncode == 0, retry.stdout + retry.stderr
    resumed = re.search(rf"^auto-resume: workflow \S+: resuming run {run_id} from model_(\d+)\.pt",
                        retry.stdout, re.MULTILINE)
    assert resumed and int(resumed[1]) >= 2, retry.stdout
    assert run_id_from(retry.stdout) == run_id
    assert "model_6.pt" in artifact_names(client, run_id, "checkpoints/final")
    assert set(metric_steps(client, run_id, VALUE_LOSS)) == set(range(6))
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["attempts"] == "2"
    assert run.data.params["backend"] == "skrl" and run.data.params["skrl_version"]
    assert run.data.params["torch_threads"] == "2"
    assert run.data.tags["registered_model"] == f"{name}/1"


def test_sigterm_stops_a_skrl_run_with_its_checkpoint_stored(mlflow_server: MlflowServer,
                                                             tmp_path: Path) -> None:
    client = MlflowClient(mlflow_server.url)
    env = _env(mlflow_server, tmp_path / "out")
    with background_launcher(env, *train_args(1000, *SKRL, "--save-interval", "500",
                                              num_envs=4), cwd=tmp_path) as launcher:
        run_id = launcher.wait_for(r"^run (\w+): ", 120)[1]
        launcher.wait_for("^it 3/", 120)
        launcher.process.send_signal(signal.SIGTERM)
        assert launcher.finish(120) == 75, launcher.output
    stopped = re.search(r"^stopped at iteration (\d+): model_\1\.pt stored; exiting 75 "
                        r"\(retryable\)$", launcher.output, re.MULTILINE)
    assert stopped, launcher.output
    assert {f"model_{stopped[1]}.pt", f"model_{stopped[1]}.sha256"} <= artifact_names(
        client, run_id, "checkpoints")
    assert client.get_run(run_id).info.status == "KILLED"


def test_an_rsl_rl_checkpoint_given_to_skrl_is_exit_7_naming_both(mlflow_server: MlflowServer,
                                                                  tmp_path: Path) -> None:
    env = _env(mlflow_server, tmp_path / "out")
    first = run_launcher(env, *train_args(2, num_envs=4), cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    uri = f"runs:/{run_id_from(first.stdout)}/checkpoints/final"
    refused = run_launcher(env, *train_args(2, *SKRL, "--checkpoint-mode", "warm-start",
                                            "--checkpoint-uri", uri, num_envs=4), cwd=tmp_path)
    assert_clean_failure(refused, 7, "rsl-rl", "skrl")
    assert "it 1/" not in refused.stdout
