"""SIGTERM / SIGINT: the launcher saves at the next iteration boundary, stores that checkpoint
within the grace and exits 75 (retryable); a second signal exits at once. Real launcher
processes and signals, real training, a real `mlflow server` on 127.0.0.1."""

from __future__ import annotations

import hashlib
import re
import signal
import time
import uuid
from pathlib import Path

import mlflow
import pytest
from launcher_runs import (
    artifact_names,
    background_launcher,
    launcher_env,
    metric_steps,
    train_args,
)
from mlflow import MlflowClient
from support.mlflow_server import MlflowServer
from support.store_proxy import StoreProxy
from support.streamed import wait_until

pytestmark = pytest.mark.slow

# Long enough never to finish by itself; the save interval is never reached.
LONG_RUN = train_args(1000, "--save-interval", "500")
RUN_STARTED = re.compile(r"^run (\w+): ")


def _env(server: MlflowServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    return launcher_env(server.url, tmp_path / "out", WORKFLOW_ID=f"wf-{uuid.uuid4().hex[:8]}",
                        EXPERIMENT_NAME=f"stop-{uuid.uuid4().hex[:8]}", **extra)


def test_sigterm_stores_the_current_iteration_and_exits_75(mlflow_server: MlflowServer,
                                                           tmp_path: Path) -> None:
    mlflow.set_tracking_uri(mlflow_server.url)
    client = MlflowClient()
    with background_launcher(_env(mlflow_server, tmp_path), *LONG_RUN, cwd=tmp_path) as launcher:
        run_id = launcher.wait_for(RUN_STARTED, 120)[1]
        launcher.wait_for("^it 3/", 120)
        launcher.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert launcher.finish(120) == 75, launcher.output
        seconds_to_exit = time.monotonic() - signalled
    assert "stop requested (SIGTERM): saving at the next iteration boundary" in launcher.output
    stopped = re.search(r"^stopped at iteration (\d+): model_(\d+)\.pt stored; exiting 75 "
                        r"\(retryable\)$", launcher.output, re.MULTILINE)
    assert stopped and stopped[1] == stopped[2], launcher.output
    iteration = int(stopped[1])
    assert 3 <= iteration < 500 and seconds_to_exit < 25

    assert {f"model_{iteration}.pt", f"model_{iteration}.sha256"} <= artifact_names(
        client, run_id, "checkpoints")
    stored = Path(client.download_artifacts(run_id, f"checkpoints/model_{iteration}.pt",
                                            str(tmp_path / "stored")))
    sidecar = Path(client.download_artifacts(run_id, f"checkpoints/model_{iteration}.sha256",
                                             str(tmp_path / "stored")))
    local = tmp_path / "out" / "runs" / run_id / f"model_{iteration}.pt"
    assert stored.read_bytes() == local.read_bytes()
    assert sidecar.read_text().split()[0] == hashlib.sha256(stored.read_bytes()).hexdigest()
    assert client.get_run(run_id).info.status == "KILLED"
    assert metric_steps(client, run_id, "Train/mean_reward") == list(range(iteration))


def test_signal_before_training_exits_75_with_nothing_to_save(mlflow_server: MlflowServer,
                                                              tmp_path: Path) -> None:
    """SIGINT while the auto-resume look-up waits for a slow store: nothing was trained and no
    run was started, so none is left behind. (A signal once the run exists:
    tests/runtime/test_run_end.py, which checks that run ends KILLED.)"""
    with StoreProxy(mlflow_server.url) as proxy:
        env = _env(mlflow_server, tmp_path, MLFLOW_TRACKING_URI=proxy.url)
        proxy.fail("/experiments/get-by-name", "hang", seconds=20)
        with background_launcher(env, *LONG_RUN, cwd=tmp_path) as launcher:
            wait_until(lambda: proxy.requests_to("/experiments/get-by-name") >= 1, 120,
                       "the auto-resume look-up")
            launcher.process.send_signal(signal.SIGINT)
            assert launcher.finish(60) == 75, launcher.output
    assert "stop requested (SIGINT): training has not started, nothing to save" in launcher.output
    assert "stopped before training started; exiting 75 (retryable)" in launcher.output
    assert "it 1/" not in launcher.output and "Traceback" not in launcher.output
    client = MlflowClient(mlflow_server.url)
    experiment = client.get_experiment_by_name(env["EXPERIMENT_NAME"])
    assert experiment is None or client.search_runs([experiment.experiment_id]) == []


def test_grace_running_out_during_an_outage_still_exits_75_in_time(
    restartable_mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    env = _env(restartable_mlflow_server, tmp_path, STOP_GRACE_S="5")
    with background_launcher(env, *LONG_RUN, cwd=tmp_path) as launcher:
        launcher.wait_for("^it 2/", 120)
        restartable_mlflow_server.stop()
        launcher.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert launcher.finish(120) == 75, launcher.output
        seconds_to_exit = time.monotonic() - signalled
    not_stored = re.search(r"^stopped at iteration (\d+): model_\1\.pt NOT stored \(.+\), kept "
                           r"at (\S+); exiting 75 \(retryable\)$", launcher.output, re.MULTILINE)
    assert not_stored, launcher.output
    assert Path(not_stored[2]).is_file()
    assert seconds_to_exit < 5 + 3  # the grace, and the time to the iteration boundary


def test_second_signal_exits_at_once(restartable_mlflow_server: MlflowServer,
                                     tmp_path: Path) -> None:
    """The first SIGTERM waits (here for uploads to a store that is down); a SIGINT then
    ends the launcher at once."""
    env = _env(restartable_mlflow_server, tmp_path, STOP_GRACE_S="120")
    with background_launcher(env, *LONG_RUN, cwd=tmp_path) as launcher:
        launcher.wait_for("^it 2/", 120)
        restartable_mlflow_server.stop()
        launcher.process.send_signal(signal.SIGTERM)
        launcher.wait_for(r"^stop requested \(SIGTERM\)", 120)
        time.sleep(1)
        launcher.process.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        assert launcher.finish(30) == 128 + signal.SIGINT, launcher.output
        assert time.monotonic() - signalled < 3
    assert "second SIGINT: exiting now without waiting (exit 130)" in launcher.output
