"""Checkpoint URIs in, uploads out: real files, a real sqlite store and a real server."""

from __future__ import annotations

import os
import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from support.mlflow_server import MlflowServer, ServerRun, SqliteStore

from training.checkpoints import (
    CheckpointUnavailable,
    CheckpointUploader,
    fetch_checkpoint,
    highest_iteration_checkpoint,
    sha256_of,
    upload_final,
    write_manifest,
)
from training.store import within


def _files(directory: Path, *names: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_bytes(name.encode() * 100)


def test_directory_resolves_to_highest_iteration_not_newest_file(tmp_path: Path) -> None:
    _files(tmp_path, "model_100.pt", "model_20.pt", "model_3.pt", "notes.txt")
    # model_20.pt is the newest file on disk; 100 is still the highest iteration.
    os.utime(tmp_path / "model_20.pt", (time.time() + 100, time.time() + 100))
    assert highest_iteration_checkpoint(tmp_path) == tmp_path / "model_100.pt"
    assert fetch_checkpoint(str(tmp_path), tmp_path / "dl") == tmp_path / "model_100.pt"


def test_missing_path_and_empty_directory_are_unavailable(tmp_path: Path) -> None:
    with pytest.raises(CheckpointUnavailable, match="no such file"):
        fetch_checkpoint(str(tmp_path / "absent.pt"), tmp_path / "dl")
    _files(tmp_path / "empty", "readme.md")
    with pytest.raises(CheckpointUnavailable, match="found readme.md"):
        fetch_checkpoint(str(tmp_path / "empty"), tmp_path / "dl")


def test_a_download_that_does_not_match_its_sha256_is_refused(tmp_path: Path) -> None:
    _files(tmp_path, "model_4.pt")
    (tmp_path / "model_4.sha256").write_text(f"{'0' * 64}  model_4.pt\n")
    with pytest.raises(CheckpointUnavailable, match="corrupt"):
        fetch_checkpoint(str(tmp_path / "model_4.pt"), tmp_path / "dl")


def test_uploads_and_final_round_trip_through_runs_and_models_uris(
    sqlite_store: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(sqlite_store.root)  # the sqlite store's default artifact root is ./mlruns
    mlflow.set_tracking_uri(sqlite_store.uri)
    mlflow.set_registry_uri(sqlite_store.uri)
    client = MlflowClient()
    run_id = client.create_run(client.create_experiment("uploads")).info.run_id
    saves = tmp_path / "saves"
    _files(saves, "model_2.pt", "model_4.pt")
    uploader = CheckpointUploader(client, run_id)
    uploader.submit(2, saves / "model_2.pt")
    uploader.submit(4, saves / "model_4.pt")
    report = uploader.close(within(60))
    assert report.uploaded == [2, 4] and report.not_uploaded == {}
    manifest = write_manifest(saves / "model_4.pt", file="model_4.pt", iteration=4,
                              sha256=sha256_of(saves / "model_4.pt"))
    upload_final(client, run_id, saves / "model_4.pt", manifest, within(30))

    fetched = fetch_checkpoint(f"runs:/{run_id}/checkpoints/final", tmp_path / "a")
    assert fetched.name == "model_4.pt"
    assert fetched.read_bytes() == (saves / "model_4.pt").read_bytes()
    assert (fetched.parent / "checkpoint.json").is_file()
    # The whole checkpoints/ folder resolves to its highest iteration too.
    assert fetch_checkpoint(f"runs:/{run_id}/checkpoints", tmp_path / "b").name == "model_4.pt"


def test_unreachable_tracking_server_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = MlflowServer(tmp_path / "gone")  # never started: nothing listens on its port
    mlflow.set_tracking_uri(server.url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(CheckpointUnavailable, match="cannot fetch checkpoint runs:/abc"):
        fetch_checkpoint("runs:/abc/checkpoints/final", tmp_path / "dl")


@pytest.mark.slow
def test_uploads_during_an_outage_reach_the_store_when_it_returns(
    run_on_own_server: ServerRun, tmp_path: Path
) -> None:
    _files(tmp_path / "saves", "model_1.pt", "model_2.pt")
    uploader = CheckpointUploader(run_on_own_server.client, run_on_own_server.run_id,
                                  backoff_s=0.2)
    run_on_own_server.server.stop()
    uploader.submit(1, tmp_path / "saves" / "model_1.pt")  # fails its retries: set aside
    uploader.submit(2, tmp_path / "saves" / "model_2.pt")
    time.sleep(2)
    run_on_own_server.server.start()
    report = uploader.close(within(120))
    assert report.not_uploaded == {}, report.summary()
    stored = {Path(f.path).name for f in
              run_on_own_server.client.list_artifacts(run_on_own_server.run_id, "checkpoints")}
    assert {"model_1.pt", "model_2.pt", "model_1.sha256"} <= stored


@pytest.mark.slow
def test_report_names_checkpoints_that_never_reached_the_store(
    run_on_own_server: ServerRun, tmp_path: Path
) -> None:
    run_on_own_server.server.stop()
    _files(tmp_path / "saves", "model_3.pt")
    uploader = CheckpointUploader(run_on_own_server.client, run_on_own_server.run_id,
                                  backoff_s=0.1)
    uploader.submit(3, tmp_path / "saves" / "model_3.pt")
    report = uploader.close(within(20))
    assert report.uploaded == []
    assert report.not_uploaded == {3: str(tmp_path / "saves" / "model_3.pt")}
    assert "model_3.pt (iteration 3)" in report.summary()


@pytest.mark.slow
def test_a_checkpoint_waits_for_the_metrics_before_it(mlflow_server: MlflowServer,
                                                      tmp_path: Path) -> None:
    """The metrics of iterations 0-2 cannot be stored (their requests get no answer) while
    uploads would work: model_3.pt must not reach the store ahead of them; once the metrics
    go through, it follows. (The old wait gave up after 10 s and uploaded anyway.)"""
    from support.store_proxy import StoreProxy

    from training.tracking import MetricLogger

    with StoreProxy(mlflow_server.url) as proxy:
        client = MlflowClient(proxy.url)
        run_id = client.create_run(client.create_experiment("metrics-first")).info.run_id
        proxy.fail("/runs/log-batch", "drop")
        metrics = MetricLogger(client, run_id, flush_interval_s=0.1)
        uploader = CheckpointUploader(
            client, run_id, backoff_s=0.2,
            ready=lambda it: metrics.wait_handled_through(it - 1, timeout_s=0.5))
        for step in range(3):
            metrics.log(step, {"Train/mean_reward": float(step)})
        _files(tmp_path / "saves", "model_3.pt")
        uploader.submit(3, tmp_path / "saves" / "model_3.pt")
        time.sleep(3)
        names = {Path(f.path).name for f in client.list_artifacts(run_id, "checkpoints")}
        assert "model_3.pt" not in names
        proxy.heal()
        report = uploader.close(within(60))
        assert report.uploaded == [3], report.summary()
        assert metrics.close(within(30)) == 0
    steps = [m.step for m in MlflowClient(mlflow_server.url).get_metric_history(
        run_id, "Train/mean_reward")]
    assert sorted(steps) == [0, 1, 2]
