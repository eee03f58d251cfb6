"""Fault injection: real training (gymnasium HalfCheetah-v5, 4 envs, CPU) tracked by a real
`mlflow server` on loopback, hit by what a cluster deals out: a SIGKILL (OOM kill, lost node),
a SIGTERM (preemption: Kubernetes stops the pod), a 20 s tracking outage, and a corrupt
checkpoint in the store; and a SIGKILL at the worst moment for the metrics. Each retry is a
fresh `python -m training.launch` with the same WORKFLOW_ID and an empty output directory, as
a rescheduled pod would run it.

The random fault points come from the `rng` fixture: RESILIENCE_SEED=<printed seed> replays them.
"""

from __future__ import annotations

import signal
import time
from itertools import pairwise
from pathlib import Path

import pytest
from faults import (
    EXIT_RETRYABLE,
    PROGRESS,
    RESUMED,
    RUN_STARTED,
    SKIPPED,
    STOP_REQUESTED,
    STOPPED,
    TRAINING_DONE,
    StoredCheckpoints,
    audit_checkpoints,
    expected_saves,
    find_line,
    first_progress,
    last_progress,
    runs_of_workflow,
)
from mlflow import MlflowClient
from runtime.launcher_runs import artifact_names, metric_steps
from support.mlflow_server import MlflowServer
from support.streamed import StreamedProcess, wait_until

pytestmark = pytest.mark.slow

ITERATIONS = 30
SAVE_INTERVAL = 5
ATTEMPT_TIMEOUT_S = 240  # one attempt with start-up; about 15 s on two idle cores
STOP_GRACE_S = 25  # the contract's default: inside Kubernetes' 30 s termination grace
# A request that reached the server before the client was killed may still be being written;
# the store is read after this pause so that it shows what the next attempt will see.
SETTLE_S = 2.0


def the_only_run(client: MlflowClient, experiment_name: str, workflow_id: str):
    runs = runs_of_workflow(client, experiment_name, workflow_id)
    assert len(runs) == 1, f"expected one run tagged workflow_id={workflow_id}, got " + ", ".join(
        f"{run.info.run_id} ({run.info.status})" for run in runs)
    return runs[0]


def wait_for_stored(client: MlflowClient, run_id: str, iteration: int,
                    poll_s: float = 0.2) -> None:
    """Until model_<iteration>.pt and its sidecar (written after it) are in the store."""
    wait_until(
        lambda: f"model_{iteration}.sha256" in artifact_names(client, run_id, "checkpoints"),
        ATTEMPT_TIMEOUT_S, f"model_{iteration}.pt uploaded to run {run_id}", poll_s)


def kill(attempt: StreamedProcess) -> None:
    """SIGKILL the attempt's process group, then give the server a moment (see SETTLE_S)."""
    attempt.kill_group()
    assert attempt.finish(30) == -signal.SIGKILL
    time.sleep(SETTLE_S)


def assert_completed(client: MlflowClient, run_id: str, iterations: int) -> StoredCheckpoints:
    """Everything a finished run must show: final checkpoint at the last iteration, every
    save intact in the store, a metric at every step."""
    stored = audit_checkpoints(client, run_id)
    assert stored.final_iteration == iterations, stored.final_problem
    assert not stored.corrupt, stored.corrupt
    missing = expected_saves(iterations, SAVE_INTERVAL) - stored.intact
    assert not missing, f"checkpoints not in the store: {sorted(missing)}"
    assert set(metric_steps(client, run_id, "Perf/total_fps")) == set(range(iterations))
    return stored


def test_sigkill_then_retry_resumes_from_the_last_uploaded_checkpoint(
        mlflow_server: MlflowServer, start_attempt, rng, workflow_id, experiment_name):
    client = MlflowClient(mlflow_server.url)
    first = start_attempt(mlflow_server.url, ITERATIONS, SAVE_INTERVAL)
    run_id = first.wait_for(RUN_STARTED, ATTEMPT_TIMEOUT_S).group(1)
    wait_for_stored(client, run_id, SAVE_INTERVAL)
    earliest = last_progress(first.lines) + 1
    kill_at = rng.randint(earliest, max(earliest, ITERATIONS - 2))
    print(f"SIGKILL at iteration {kill_at}")
    first.wait_for(rf"^it {kill_at}/{ITERATIONS}\b", ATTEMPT_TIMEOUT_S)
    kill(first)
    killed_at = last_progress(first.lines)  # a line or two may have come before the kill landed
    last_uploaded = audit_checkpoints(client, run_id).highest_intact()

    second = start_attempt(mlflow_server.url, ITERATIONS, SAVE_INTERVAL)
    assert second.finish(ATTEMPT_TIMEOUT_S) == 0, second.tail()
    resumed = find_line(second.lines, RESUMED)
    assert resumed, f"no auto-resume line:\n{second.tail()}"
    assert resumed.group(1, 2) == (workflow_id, run_id)
    resumed_from = int(resumed.group(3))
    print(f"killed at {killed_at}, last uploaded {last_uploaded}, resumed from {resumed_from}")
    assert resumed_from == last_uploaded, "not the highest intact checkpoint in the store"
    assert SAVE_INTERVAL <= resumed_from <= killed_at
    assert first_progress(second.lines) == resumed_from + 1

    run = the_only_run(client, experiment_name, workflow_id)
    assert (run.info.run_id, run.info.status) == (run_id, "FINISHED")
    assert run.data.tags.get("attempts") == "2"
    assert_completed(client, run_id, ITERATIONS)


def test_sigkill_just_after_a_checkpoint_upload_leaves_no_gap_in_the_metrics(
        mlflow_server: MlflowServer, start_attempt):
    """The worst moment for the metrics: model_N has just reached the store, and the metrics
    of the iterations before N may still wait in the launcher's buffer (sent every second).
    The retry resumes from model_N and logs from step N on, so those must not be lost."""
    client = MlflowClient(mlflow_server.url)
    first = start_attempt(mlflow_server.url, ITERATIONS, SAVE_INTERVAL)
    run_id = first.wait_for(RUN_STARTED, ATTEMPT_TIMEOUT_S).group(1)
    wait_for_stored(client, run_id, 2 * SAVE_INTERVAL, poll_s=0.05)
    kill(first)

    second = start_attempt(mlflow_server.url, ITERATIONS, SAVE_INTERVAL)
    assert second.finish(ATTEMPT_TIMEOUT_S) == 0, second.tail()
    resumed = find_line(second.lines, RESUMED)
    assert resumed and int(resumed.group(3)) >= 2 * SAVE_INTERVAL, second.tail()
    missing = set(range(ITERATIONS)) - set(metric_steps(client, run_id, "Perf/total_fps"))
    assert not missing, (f"metric steps never logged: {sorted(missing)} (the retry resumed "
                         f"from model_{resumed.group(3)}.pt)")


def test_sigterm_stores_the_current_iteration_and_the_retry_loses_none(
        mlflow_server: MlflowServer, start_attempt, rng, workflow_id, experiment_name):
    client = MlflowClient(mlflow_server.url)
    first = start_attempt(mlflow_server.url, ITERATIONS, SAVE_INTERVAL)
    run_id = first.wait_for(RUN_STARTED, ATTEMPT_TIMEOUT_S).group(1)
    stop_at = rng.randint(SAVE_INTERVAL + 1, ITERATIONS - 5)
    print(f"SIGTERM at iteration {stop_at}")
    first.wait_for(rf"^it {stop_at}/{ITERATIONS}\b", ATTEMPT_TIMEOUT_S)
    first.signal_process(signal.SIGTERM)
    signalled = time.monotonic()
    code = first.finish(STOP_GRACE_S + 30)
    took_s = time.monotonic() - signalled
    assert code == EXIT_RETRYABLE, first.tail()
    assert find_line(first.lines, STOP_REQUESTED), first.tail()
    stopped = find_line(first.lines, STOPPED)
    assert stopped, first.tail()
    stopped_at = int(stopped.group(1))
    assert int(stopped.group(2)) == stopped_at
    assert stopped_at == last_progress(first.lines) >= stop_at, "not the iteration it was at"
    assert took_s < STOP_GRACE_S, f"exited {took_s:.1f} s after SIGTERM"
    assert stopped_at in audit_checkpoints(client, run_id).intact

    second = start_attempt(mlflow_server.url, ITERATIONS, SAVE_INTERVAL)
    assert second.finish(ATTEMPT_TIMEOUT_S) == 0, second.tail()
    resumed = find_line(second.lines, RESUMED)
    assert resumed, f"no auto-resume line:\n{second.tail()}"
    assert resumed.group(2) == run_id and int(resumed.group(3)) == stopped_at
    assert first_progress(second.lines) == stopped_at + 1
    assert the_only_run(client, experiment_name, workflow_id).info.run_id == run_id
    assert_completed(client, run_id, ITERATIONS)
    # Each iteration ran exactly once over both attempts: none lost, none redone.
    assert metric_steps(client, run_id, "Perf/total_fps") == list(range(ITERATIONS))


OUTAGE_S = 20
OUTAGE_ITERATIONS = 120  # about 35 s of training on two cores: the outage falls mid-run
# An iteration takes about 0.3 s on two idle cores (seconds when the machine is busy);
# training that waited on the store would pause until it came back, half the outage or more.
MAX_PAUSE_S = OUTAGE_S / 2


def test_training_continues_through_a_tracking_outage_and_stores_every_checkpoint(
        restartable_mlflow_server: MlflowServer, start_attempt):
    server = restartable_mlflow_server
    attempt = start_attempt(server.url, OUTAGE_ITERATIONS, SAVE_INTERVAL)
    run_id = attempt.wait_for(RUN_STARTED, ATTEMPT_TIMEOUT_S).group(1)
    attempt.wait_for(rf"^it 3/{OUTAGE_ITERATIONS}\b", ATTEMPT_TIMEOUT_S)

    server.stop()
    went_down, first_outage_line = time.monotonic(), len(attempt.lines)
    time.sleep(OUTAGE_S)
    assert attempt.process.poll() is None, (
        "training ended during the outage; raise OUTAGE_ITERATIONS:\n" + attempt.tail())
    last_outage_line = len(attempt.lines)
    server.start()

    progress_times = [went_down] + [
        at for at, line in zip(attempt.arrival[first_outage_line:last_outage_line],
                               attempt.lines[first_outage_line:last_outage_line], strict=True)
        if PROGRESS.match(line)]
    longest_pause = max(b - a for a, b in pairwise(progress_times))
    print(f"{len(progress_times) - 1} iterations during the {OUTAGE_S} s outage, "
          f"longest pause {longest_pause:.1f} s")
    assert len(progress_times) - 1 >= 2, attempt.tail()
    assert longest_pause < MAX_PAUSE_S

    assert attempt.finish(ATTEMPT_TIMEOUT_S + 300) == 0, attempt.tail()
    done = find_line(attempt.lines, TRAINING_DONE)
    assert done and int(done.group(1)) == OUTAGE_ITERATIONS, attempt.tail()
    assert "NOT in the store" not in done.group(2), done.group(0)
    assert_completed(MlflowClient(server.url), run_id, OUTAGE_ITERATIONS)


def stored_artifact(server: MlflowServer, run_id: str, artifact_path: str) -> Path:
    """The file behind a run's artifact on the server's disk (--artifacts-destination)."""
    found = list((server.root / "artifacts").glob(f"*/{run_id}/artifacts/{artifact_path}"))
    assert len(found) == 1, f"{artifact_path} of run {run_id} on the server's disk: {found}"
    return found[0]


def test_a_truncated_checkpoint_in_the_store_is_skipped_for_the_previous_one(
        mlflow_server: MlflowServer, start_attempt, workflow_id, experiment_name):
    client = MlflowClient(mlflow_server.url)
    first = start_attempt(mlflow_server.url, ITERATIONS, SAVE_INTERVAL)
    run_id = first.wait_for(RUN_STARTED, ATTEMPT_TIMEOUT_S).group(1)
    wait_for_stored(client, run_id, 2 * SAVE_INTERVAL)
    kill(first)
    intact = audit_checkpoints(client, run_id).intact
    newest, previous = sorted(intact)[-1], sorted(intact)[-2]
    checkpoint = stored_artifact(mlflow_server, run_id, f"checkpoints/model_{newest}.pt")
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])

    second = start_attempt(mlflow_server.url, ITERATIONS, SAVE_INTERVAL)
    assert second.finish(ATTEMPT_TIMEOUT_S) == 0, second.tail()
    skipped = [m for line in second.lines if (m := SKIPPED.search(line))]
    assert [m.group(1, 3) for m in skipped if m.group(1) == str(newest)] == \
        [(str(newest), str(previous))], second.tail()
    resumed = find_line(second.lines, RESUMED)
    assert resumed, f"no auto-resume line:\n{second.tail()}"
    assert resumed.group(2) == run_id and int(resumed.group(3)) == previous
    assert the_only_run(client, experiment_name, workflow_id).info.run_id == run_id
    assert_completed(client, run_id, ITERATIONS)
