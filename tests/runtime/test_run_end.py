"""The end of a run has one owner (training.session.TrackedRun): on every path the MLflow run
ends (never left RUNNING), and the exit code follows the store's answer: 75 when it did not
answer (the task is rescheduled), 5 when it refused. Real launcher processes and signals, real
training, a real `mlflow server` behind a loopback proxy that makes chosen requests fail
(tests/support/store_proxy.py)."""

from __future__ import annotations

import re
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from launcher_runs import (
    assert_clean_failure,
    background_launcher,
    launcher_env,
    run_launcher,
    train_args,
)
from mlflow import MlflowClient
from support.mlflow_server import MlflowServer
from support.store_proxy import StoreProxy
from support.streamed import wait_until

pytestmark = pytest.mark.slow

LONG_RUN = train_args(1000, "--save-interval", "500")


@pytest.fixture
def proxy(mlflow_server: MlflowServer) -> Iterator[StoreProxy]:
    with StoreProxy(mlflow_server.url) as proxy:
        yield proxy


def _env(proxy: StoreProxy, tmp_path: Path, **extra: str) -> dict[str, str]:
    settings = {"EXPERIMENT_NAME": f"end-{uuid.uuid4().hex[:8]}",
                "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
    return launcher_env(proxy.url, tmp_path / "out", **(settings | extra))


def _statuses(server: MlflowServer, experiment_name: str) -> list[str]:
    client = MlflowClient(server.url)
    experiment = client.get_experiment_by_name(experiment_name)
    assert experiment is not None, f"no experiment {experiment_name}"
    return [run.info.status for run in client.search_runs([experiment.experiment_id])]


@pytest.mark.parametrize("path", ["/runs/log-batch", "/runs/set-tag"],
                         ids=["logging-params", "tagging-the-resume-uri"])
def test_a_store_that_stops_answering_once_the_run_started_is_retryable(
        proxy: StoreProxy, mlflow_server: MlflowServer, tmp_path: Path, path: str) -> None:
    """The run started; then the params (first call after the start) or the resume-URI tag
    (the last call) meet a store that does not answer: exit 75 with one line, not 5 with a
    traceback, and the run is ended, not left RUNNING."""
    env = _env(proxy, tmp_path)
    proxy.fail(path, "drop")
    result = run_launcher(env, *train_args(2), cwd=tmp_path)
    assert_clean_failure(result, 75, "the store did not answer: exiting 75 (retryable)")
    assert _statuses(mlflow_server, env["EXPERIMENT_NAME"]) == ["FAILED"]


def test_finishing_an_earlier_attempt_that_the_store_refuses_is_exit_5(
        proxy: StoreProxy, mlflow_server: MlflowServer, tmp_path: Path) -> None:
    """A rescheduled task whose earlier attempt already trained to the end only finishes that
    run; a store that refuses it (403) fails for good: 5, not 75 (a retry cannot help)."""
    env = _env(proxy, tmp_path, WORKFLOW_ID=f"wf-{uuid.uuid4().hex[:8]}")
    first = run_launcher(env, *train_args(2), cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    proxy.fail("/runs/set-tag", "refuse")
    again = run_launcher(env, *train_args(2), cwd=tmp_path)
    assert "nothing to do" in again.stdout
    assert_clean_failure(again, 5, "cannot finish run", "PERMISSION_DENIED")


def test_a_signal_while_the_run_starts_ends_it_killed(
        proxy: StoreProxy, mlflow_server: MlflowServer, tmp_path: Path) -> None:
    """The MLflow run exists and the launcher is logging its params (the store is slow) when
    SIGINT comes: nothing was trained, exit 75, and the run ends KILLED for the retry."""
    env = _env(proxy, tmp_path)
    proxy.fail("/runs/log-batch", "hang", seconds=20)
    with background_launcher(env, *LONG_RUN, cwd=tmp_path) as launcher:
        wait_until(lambda: proxy.requests_to("/runs/log-batch") >= 1, 120,
                   "the launcher logging its params")
        launcher.process.send_signal(signal.SIGINT)
        assert launcher.finish(60) == 75, launcher.output
    assert "stopped before training started; exiting 75 (retryable)" in launcher.output
    assert "it 1/" not in launcher.output and "Traceback" not in launcher.output
    assert _statuses(mlflow_server, env["EXPERIMENT_NAME"]) == ["KILLED"]


def test_an_upload_still_running_when_the_grace_ends_is_reported_as_such(
        proxy: StoreProxy, mlflow_server: MlflowServer, tmp_path: Path) -> None:
    """SIGTERM; the checkpoint saved at the boundary cannot be uploaded within the grace
    because the store does not answer that request: the report says it was still uploading
    (it may yet land), not that it is missing; exit 75 in time and the run KILLED."""
    env = _env(proxy, tmp_path, STOP_GRACE_S="6")
    with background_launcher(env, *LONG_RUN, cwd=tmp_path) as launcher:
        launcher.wait_for("^it 3/", 120)
        proxy.fail(r"/artifacts/.*model_\d+\.pt$", "hang", seconds=30)
        launcher.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert launcher.finish(60) == 75, launcher.output
    stopped = next((index for index, line in enumerate(launcher.lines) if re.fullmatch(
        r"stopped at iteration (\d+): model_\1\.pt still uploading when the grace ended \(may "
        r"reach the store\), kept at \S+; exiting 75 \(retryable\)", line)), None)
    assert stopped is not None, launcher.output
    assert launcher.arrival[stopped] - signalled < 6, launcher.output  # within the grace
    assert "the stop grace of 6 s ran out" not in launcher.output  # no watchdog needed
    assert _statuses(mlflow_server, env["EXPERIMENT_NAME"]) == ["KILLED"]


def test_the_grace_running_out_in_a_hanging_call_still_ends_the_run_killed(
        proxy: StoreProxy, mlflow_server: MlflowServer, tmp_path: Path) -> None:
    """Training is over and the launcher waits on a store call that hangs (tagging the run)
    when SIGTERM comes: the watchdog ends the process at the grace with 75, and ends the run
    KILLED first instead of leaving it RUNNING."""
    env = _env(proxy, tmp_path, STOP_GRACE_S="8")
    proxy.fail("/runs/set-tag", "hang", seconds=60)
    with background_launcher(env, *train_args(3), cwd=tmp_path) as launcher:
        launcher.wait_for("^training done at iteration 3", 120)
        wait_until(lambda: proxy.requests_to("/runs/set-tag") >= 1, 60, "the resume-URI tag")
        launcher.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert launcher.finish(60) == 75, launcher.output
        assert time.monotonic() - signalled < 8 + 2
    assert "the stop grace of 8 s ran out: exiting 75 (retryable) now" in launcher.output
    assert _statuses(mlflow_server, env["EXPERIMENT_NAME"]) == ["KILLED"]


def test_an_unreadable_final_checkpoint_is_exit_7_with_the_run_ended(
        mlflow_server: MlflowServer, tmp_path: Path) -> None:
    """The highest-iteration file in the run's directory is what gets stored as final; when it
    turns out unreadable (here: a truncated model_999.pt dropped there while training ran), the
    launcher says so in one line and exits 7 (checkpoint unusable), not 5 with a traceback,
    and still closes the metric sender and ends the run."""
    env = launcher_env(mlflow_server.url, tmp_path / "out",
                       EXPERIMENT_NAME=f"end-{uuid.uuid4().hex[:8]}")
    with background_launcher(env, *train_args(40), cwd=tmp_path) as launcher:
        run_id = launcher.wait_for(r"^run (\w+): ", 120)[1]
        launcher.wait_for("^it 2/", 120)
        (tmp_path / "out" / "runs" / run_id / "model_999.pt").write_bytes(b"PK\x03\x04 cut")
        assert launcher.finish(300) == 7, launcher.output
    errors = [line for line in launcher.lines if line.startswith("error: ")]
    assert len(errors) == 1 and "model_999.pt is not a readable checkpoint" in errors[0]
    assert "Traceback" not in launcher.output
    assert _statuses(mlflow_server, env["EXPERIMENT_NAME"]) == ["FAILED"]
    steps = {m.step for m in MlflowClient(mlflow_server.url).get_metric_history(
        run_id, "Train/mean_reward")}
    assert steps == set(range(40))  # the metrics were flushed on the way out


def test_a_signal_while_the_end_of_the_run_waits_for_the_store_cuts_the_wait_to_the_grace(
        proxy: StoreProxy, mlflow_server: MlflowServer, tmp_path: Path) -> None:
    """Training is over and the checkpoint uploads keep failing (the store does not answer
    them), which the end of a run would wait out for CHECKPOINT_UPLOAD_TIMEOUT_S (300 s). A
    SIGTERM then cuts every wait to the grace: one clear line, exit 75, the run KILLED, all
    before the watchdog would have to step in."""
    env = _env(proxy, tmp_path, STOP_GRACE_S="8")
    proxy.fail(r"/artifacts/.*model_\d+\.pt$", "drop")
    with background_launcher(env, *train_args(3), cwd=tmp_path) as launcher:
        launcher.wait_for("^it 3/", 120)
        launcher.wait_for("^warning: upload of model_3.pt failed", 60)
        launcher.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert launcher.finish(60) == 75, launcher.output
        assert time.monotonic() - signalled < 8 + 2
    assert "the stop grace of 8 s ran out" not in launcher.output
    errors = [line for line in launcher.lines if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(
        "error: the final checkpoint could not be stored"), launcher.output
    assert errors[0].endswith("exiting 75 (retryable)")
    assert _statuses(mlflow_server, env["EXPERIMENT_NAME"]) == ["KILLED"]
