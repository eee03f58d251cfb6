"""Auto-resume: a rerun with the same workflow id continues the earlier attempt's MLflow run
from its highest intact checkpoint. Real launcher processes, real training, a real `mlflow
server` on 127.0.0.1; each test has its own workflow id and experiment."""

from __future__ import annotations

import uuid
from pathlib import Path

import mlflow
import numpy as np
import pytest
from launcher_runs import (
    artifact_names,
    assert_clean_failure,
    launcher_env,
    metric_steps,
    run_id_from,
    run_launcher,
    train_args,
)
from mlflow import MlflowClient
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from support.mlflow_server import MlflowServer

from training.checkpoints import upload_checkpoint
from training.config import ConfigError, parse_config


def test_auto_resume_and_stop_grace_settings() -> None:
    task = {"TASK": "Ant-v5"}
    defaults = parse_config([], task | {"AUTO_RESUME": "", "STOP_GRACE_S": ""})
    assert defaults.auto_resume is True and defaults.stop_grace_s == 25
    for text, expected in [("true", True), ("FALSE", False), ("1", True), ("0", False),
                           ("Yes", True), ("no", False)]:
        assert parse_config([], task | {"AUTO_RESUME": text}).auto_resume is expected, text
    assert parse_config(["--no-auto-resume"], task | {"AUTO_RESUME": "true"}).auto_resume is False
    assert parse_config(["--auto-resume"], task | {"AUTO_RESUME": "false"}).auto_resume is True
    assert parse_config([], task | {"STOP_GRACE_S": "7.5"}).stop_grace_s == 7.5
    for variable, text, message in [("AUTO_RESUME", "maybe", "AUTO_RESUME must be true or false"),
                                    ("STOP_GRACE_S", "0", "more than 0 seconds"),
                                    ("STOP_GRACE_S", "soon", "must be a number of seconds")]:
        with pytest.raises(ConfigError, match=message):
            parse_config([], task | {variable: text})


def test_bad_auto_resume_value_exits_2(tmp_path: Path) -> None:
    env = launcher_env(None, tmp_path / "out", AUTO_RESUME="sometimes")
    result = run_launcher(env, *train_args(2), cwd=tmp_path)
    assert_clean_failure(result, 2, "AUTO_RESUME must be true or false", "'sometimes'")


def _client(server: MlflowServer) -> MlflowClient:
    mlflow.set_tracking_uri(server.url)
    return MlflowClient()


def _workflow_env(server: MlflowServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A workflow id and an experiment of the test's own, on the shared server."""
    tag = uuid.uuid4().hex[:8]
    return launcher_env(server.url, tmp_path / "out", WORKFLOW_ID=f"wf-{tag}",
                        EXPERIMENT_NAME=f"auto-resume-{tag}", **extra)


def _runs_of(client: MlflowClient, env: dict[str, str]) -> list:
    experiment = client.get_experiment_by_name(env["EXPERIMENT_NAME"])
    return client.search_runs([experiment.experiment_id])


@pytest.mark.slow
def test_rerun_continues_the_same_run_from_the_highest_intact_checkpoint(
    mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    client = _client(mlflow_server)
    env = _workflow_env(mlflow_server, tmp_path)
    first = run_launcher(env, *train_args(4, "--save-interval", "2"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    run_id = run_id_from(first.stdout)
    saves = tmp_path / "out" / "runs" / run_id

    # A newer run of another workflow in the same experiment holds a good checkpoint: it must
    # not be taken (newest first would pick it if the workflow id were not looked at).
    experiment_id = client.get_run(run_id).info.experiment_id
    other_id = client.create_run(experiment_id,
                                 tags={"workflow_id": "another-workflow"}).info.run_id
    upload_checkpoint(client, other_id, saves / "model_4.pt", "checkpoints")
    # The workflow's highest checkpoint is truncated in the store (its sidecar is not).
    truncated = tmp_path / "truncated" / "model_4.pt"
    truncated.parent.mkdir()
    truncated.write_bytes((saves / "model_4.pt").read_bytes()[:1000])
    client.log_artifact(run_id, str(truncated), "checkpoints")

    # The rerun asks for a warm start from elsewhere: auto-resume overrides it.
    requested = {"CHECKPOINT_MODE": "warm-start",
                 "CHECKPOINT_URI": f"runs:/{other_id}/checkpoints/model_4.pt"}
    rerun = run_launcher(env | requested, *train_args(8, "--save-interval", "2"), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert ("auto-resume: skipping model_4.pt (sha256 does not match its .sha256 sidecar: "
            "truncated or corrupt); falling back to model_2.pt") in rerun.stdout
    assert (f"auto-resume: workflow {env['WORKFLOW_ID']}: resuming run {run_id} from "
            "model_2.pt (iteration 2)") in rerun.stdout
    assert "auto-resume: not using the requested warm-start" in rerun.stdout
    assert "it 3/8" in rerun.stdout and "it 2/8" not in rerun.stdout
    assert run_id_from(rerun.stdout) == run_id

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["attempts"] == "2"
    # Steps go on in the same run; iterations 2 and 3 (after the last intact checkpoint) ran
    # twice, so their steps are there twice.
    assert metric_steps(client, run_id, "Train/mean_reward") == [0, 1, 2, 2, 3, 3, 4, 5, 6, 7]
    assert "model_8.pt" in artifact_names(client, run_id, "checkpoints/final")
    assert client.get_run(other_id).data.metrics == {}
    assert len(_runs_of(client, env)) == 2  # no new run


@pytest.mark.slow
def test_rerun_of_a_finished_attempt_completes_its_run_without_training(
    mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    """The earlier process trained to the end but died before storing checkpoints/final,
    exporting the policy, registering it and ending the run: the rerun does them all,
    without training, and the registered version loads as a pyfunc model."""
    client = _client(mlflow_server)
    env = _workflow_env(mlflow_server, tmp_path)
    first = run_launcher(env, *train_args(2), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    run_id = run_id_from(first.stdout)
    get_artifact_repository(client.get_run(run_id).info.artifact_uri).delete_artifacts(
        "checkpoints/final")
    client.delete_tag(run_id, "policy_export")
    client.update_run(run_id, status="RUNNING")

    model = f"policy-{env['WORKFLOW_ID']}"
    rerun = run_launcher(env, *train_args(2, "--register-checkpoint", model), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "nothing to do: the checkpoint is already at iteration 2 of 2" in rerun.stdout
    assert "it 1/" not in rerun.stdout
    assert f"as model {model!r} version 1" in rerun.stdout
    # It died before its policy export too: the rerun exports it.
    assert f"policy exported: runs:/{run_id}/policy" in rerun.stdout, rerun.stderr[-3000:]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["attempts"] == "2"
    assert run.data.tags["registered_model"] == f"{model}/1"
    assert run.data.tags["policy_export"] == "policy/"
    assert {"policy.onnx", "policy_jit.pt", "policy.json", "MLmodel"} <= artifact_names(
        client, run_id, "policy")
    assert {"model_2.pt", "checkpoint.json", "MLmodel"} <= artifact_names(client, run_id,
                                                                         "checkpoints/final")
    mlflow.set_registry_uri(mlflow_server.url)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{model}/1")
    assert pyfunc.predict(np.zeros((3, 4), dtype=np.float32)).shape == (3, 1)
    assert len(_runs_of(client, env)) == 1


@pytest.mark.slow
def test_auto_resume_false_starts_a_new_run(mlflow_server: MlflowServer,
                                            tmp_path: Path) -> None:
    client = _client(mlflow_server)
    env = _workflow_env(mlflow_server, tmp_path)
    first = run_launcher(env, *train_args(2), cwd=tmp_path)
    assert first.returncode == 0, first.stderr

    fresh = run_launcher(env | {"AUTO_RESUME": "false"}, *train_args(2), cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert "auto-resume" not in fresh.stdout
    fresh_id = run_id_from(fresh.stdout)
    assert fresh_id != run_id_from(first.stdout)
    assert metric_steps(client, fresh_id, "Train/mean_reward") == [0, 1]
    assert client.get_run(fresh_id).data.tags["attempts"] == "1"


@pytest.mark.slow
def test_unreachable_store_exits_75_instead_of_starting_over(tmp_path: Path) -> None:
    nowhere = MlflowServer(tmp_path / "none").url  # nothing listens on that port
    env = launcher_env(nowhere, tmp_path / "out", WORKFLOW_ID="wf-unreachable",
                       AUTO_RESUME_LOOKUP_TIMEOUT_S="3", MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
    result = run_launcher(env, *train_args(2), cwd=tmp_path)
    assert_clean_failure(result, 75, "the tracking store did not answer for 3 s",
                         "not starting a second run of workflow wf-unreachable")
    assert "it 1/" not in result.stdout


@pytest.mark.slow
def test_unverifiable_and_unloadable_checkpoints_are_skipped_naming_why(
    mlflow_server: MlflowServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No candidate is usable: the rerun will train as requested, in the earlier run."""
    from training.backends.rsl_rl import inspect_checkpoint
    from training.resume import find_resume_point

    client = _client(mlflow_server)
    env = _workflow_env(mlflow_server, tmp_path)
    experiment_id = client.create_experiment(env["EXPERIMENT_NAME"])
    run_id = client.create_run(experiment_id, tags={"workflow_id": env["WORKFLOW_ID"]}).info.run_id
    files = tmp_path / "files"
    files.mkdir()
    (files / "model_3.pt").write_bytes(b"uploaded, but the process died before its sidecar")
    client.log_artifact(run_id, str(files / "model_3.pt"), "checkpoints")
    (files / "model_1.pt").write_bytes(b"intact bytes, but no checkpoint")
    upload_checkpoint(client, run_id, files / "model_1.pt", "checkpoints")

    config = parse_config(["--task", "InvertedPendulum-v5"], env)
    point = find_resume_point(config, env["WORKFLOW_ID"], tmp_path / "downloads",
                              inspect_checkpoint)
    assert point is not None and point.run_id == run_id
    assert point.checkpoint is None and point.attempt == 2
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("auto-resume: skipping model_3.pt (no .sha256 sidecar: its upload did "
                        "not complete, cannot verify); falling back to model_1.pt")
    assert lines[1].startswith("auto-resume: skipping model_1.pt (unreadable: ")
    assert lines[1].endswith("); no earlier checkpoint")
    assert f"run {run_id} holds no usable checkpoint" in lines[2]
