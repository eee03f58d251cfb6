"""Checkpoint uploads through a tracking outage: retried while training goes on (not only at
the end), never blocking the training thread. A real `mlflow server` on 127.0.0.1 that the
tests stop and start again; real files; real training for the launcher test."""

from __future__ import annotations

import hashlib
import re
import signal
import time
from pathlib import Path

import mlflow
import pytest
from launcher_runs import (
    artifact_names,
    background_launcher,
    launcher_env,
    run_launcher,
    train_args,
)
from support.mlflow_server import MlflowServer, ServerRun
from support.streamed import StreamedProcess, wait_until

from training.checkpoints import CheckpointUploader
from training.store import within

pytestmark = pytest.mark.slow

OUTAGE_S = 8


def _iterations_done(launcher: StreamedProcess) -> int:
    progress = [line for line in launcher.lines if line.startswith("it ")]
    return int(progress[-1].split()[1].split("/")[0])


def test_uploads_failing_in_an_outage_are_retried_before_close(run_on_own_server: ServerRun,
                                                               tmp_path: Path) -> None:
    client, run_id, server = run_on_own_server.client, run_on_own_server.run_id, \
        run_on_own_server.server
    files = {}
    for iteration in (1, 2):
        files[iteration] = tmp_path / f"model_{iteration}.pt"
        files[iteration].write_bytes(bytes([iteration]) * 100_000)
    uploader = CheckpointUploader(client, run_id)  # the launcher's defaults: 1 s doubling to 30 s
    server.stop()
    submit_s = []
    for iteration, path in files.items():  # the second while the worker is trying the first
        started = time.perf_counter()
        uploader.submit(iteration, path)
        submit_s.append(time.perf_counter() - started)
        time.sleep(0.5)
    time.sleep(OUTAGE_S)
    server.start()

    def stored() -> set[str]:
        return artifact_names(client, run_id, "checkpoints") if server.healthy() else set()

    # No close(): the worker retries by itself, as it does while training goes on.
    wait_until(lambda: {"model_1.pt", "model_2.pt", "model_1.sha256",
                         "model_2.sha256"} <= stored(), 60, "both checkpoints stored")
    report = uploader.close(within(10))
    assert report.uploaded == [1, 2] and report.not_uploaded == {}
    assert uploader.failures >= 2  # it did fail during the outage
    print(f"\nsubmit() during the outage: {', '.join(f'{t * 1000:.2f} ms' for t in submit_s)}")
    assert max(submit_s) < 0.05, submit_s
    sidecar = Path(client.download_artifacts(run_id, "checkpoints/model_2.sha256",
                                             str(tmp_path / "dl")))
    assert sidecar.read_text().split()[0] == hashlib.sha256(files[2].read_bytes()).hexdigest()


def test_training_goes_on_through_an_outage_and_every_checkpoint_reaches_the_store(
    restartable_mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    server = restartable_mlflow_server
    mlflow.set_tracking_uri(server.url)
    client = mlflow.MlflowClient()
    env = launcher_env(server.url, tmp_path / "out")
    with background_launcher(env, *train_args(1000, "--save-interval", "2"),
                            cwd=tmp_path) as launcher:
        run_id = launcher.wait_for(r"^run (\w+): ", 120)[1]
        saves = tmp_path / "out" / "runs" / run_id
        launcher.wait_for("^it 2/", 120)
        server.stop()
        outage_started = time.monotonic()
        # The store stays down for OUTAGE_S, and at least until training has done two more
        # iterations without it (a CPU shared with other work can make iterations slow).
        launcher.wait_for(f"^it {_iterations_done(launcher) + 2}/", 90)
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_started)))
        outage_s = time.monotonic() - outage_started
        server.start()
        saved_by_then = {p.name for p in saves.glob("model_*.pt")}

        # Everything saved up to the end of the outage reaches the store while training runs.
        seconds = wait_until(lambda: saved_by_then <= artifact_names(client, run_id,
                                                                      "checkpoints"),
                              60, f"{sorted(saved_by_then)} in the store")
        assert launcher.process.poll() is None, "training ended before the uploads caught up"
        launcher.process.send_signal(signal.SIGTERM)
        assert launcher.finish(120) == 75, launcher.output
    print(f"\noutage {outage_s:.1f} s (and the server's restart); {len(saved_by_then)} "
          f"checkpoints stored {seconds:.1f} s after the restart")
    assert "warning: upload of model_" in launcher.output
    assert "checkpoint uploads recovered" in launcher.output
    assert "NOT in the store" not in launcher.output
    assert {p.name for p in saves.glob("model_*.pt")} <= artifact_names(client, run_id,
                                                                        "checkpoints")


def test_a_store_down_at_the_end_is_retried_and_the_retry_stores_the_final(
    restartable_mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    """The store goes down mid-run and is still down when the final checkpoint is to be
    stored: exit 75 (the file would go with the pod), and the rescheduled attempt, on a fresh
    disk, resumes from the last stored checkpoint and stores the final one."""
    server = restartable_mlflow_server
    mlflow.set_tracking_uri(server.url)
    client = mlflow.MlflowClient()
    workflow = {"WORKFLOW_ID": "wf-end-outage", "EXPERIMENT_NAME": "end-outage",
                "CHECKPOINT_UPLOAD_TIMEOUT_S": "3"}
    args = train_args(12, "--save-interval", "2")
    with background_launcher(launcher_env(server.url, tmp_path / "pod-1", **workflow), *args,
                             cwd=tmp_path) as first:
        run_id = first.wait_for(r"^run (\w+): ", 120)[1]
        wait_until(lambda: "model_2.sha256" in artifact_names(client, run_id, "checkpoints"),
                   60, "model_2.pt stored")
        server.stop()
        assert first.finish(180) == 75, first.output
    assert re.search(r"^error: the final checkpoint could not be stored \(.+\); it is kept at "
                     r".+; the store did not answer: exiting 75 \(retryable\)$", first.output,
                     re.MULTILINE), first.output

    server.start()
    retry = run_launcher(launcher_env(server.url, tmp_path / "pod-2", **workflow), *args,
                         cwd=tmp_path)
    assert retry.returncode == 0, retry.stdout + retry.stderr
    resumed = re.search(rf"^auto-resume: workflow wf-end-outage: resuming run {run_id} from "
                        r"model_(\d+)\.pt", retry.stdout, re.MULTILINE)
    assert resumed and int(resumed[1]) >= 2, retry.stdout
    assert "training done at iteration 12" in retry.stdout
    assert {"model_12.pt", "checkpoint.json"} <= artifact_names(client, run_id,
                                                                "checkpoints/final")
    assert client.get_run(run_id).info.status == "FINISHED"
