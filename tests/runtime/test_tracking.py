"""Metric names, batching through a background thread, and tracking URI resolution, against
a real sqlite store and a real `mlflow server`."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric
from support.mlflow_server import MlflowServer, ServerRun

from training.config import parse_config
from training.store import within
from training.tracking import (
    MetricLogger,
    flatten_metrics,
    resolve_tracking_target,
    sanitize_metric_name,
)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Loss/value_function", "Loss/value_function"),
        ("Episode/rew (track_lin_vel)", "Episode/rew _track_lin_vel_"),
        ("Episode_Reward/feet_air_time%", "Episode_Reward/feet_air_time_"),
        ("Metrics//base_velocity/", "Metrics/base_velocity"),
        ("a/../b", "a/b"),
    ],
)
def test_metric_names_become_valid_for_mlflow(raw: str, clean: str) -> None:
    assert sanitize_metric_name(raw) == clean


def test_list_valued_metrics_are_expanded_not_dropped() -> None:
    import torch

    flat = dict(flatten_metrics({"Episode/x": [1, 2], "Episode/t": torch.tensor([3.0, 4.0]),
                                 "Train/mean_reward": torch.tensor(5.0), "note": "text"}))
    assert flat == {"Episode/x/0": 1.0, "Episode/x/1": 2.0, "Episode/t/0": 3.0,
                    "Episode/t/1": 4.0, "Train/mean_reward": 5.0}


def test_tracking_uri_order_env_then_local_sqlite(tmp_path: Path) -> None:
    env = {"TASK": "Ant-v5", "TRAINING_OUTPUT_DIR": str(tmp_path / "out")}
    local = resolve_tracking_target(parse_config([], env))
    assert local.source == "local"
    assert local.uri == f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}"
    assert local.artifact_location == (tmp_path / "out" / "mlartifacts").as_uri()
    given = resolve_tracking_target(parse_config([], env | {"MLFLOW_TRACKING_URI": "http://x:1"}))
    assert (given.uri, given.source) == ("http://x:1", "MLFLOW_TRACKING_URI")


def _logged(client: MlflowClient, run_id: str, name: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, name))


def test_metric_logger_sends_every_step_in_batches(mlflow_server: MlflowServer) -> None:
    mlflow.set_tracking_uri(mlflow_server.url)
    client = MlflowClient()
    run_id = client.create_run(client.create_experiment("metric-logger")).info.run_id
    logger = MetricLogger(client, run_id, flush_interval_s=0.1)
    for step in range(30):
        logger.log(step, {"Train/mean_reward": float(step), "Loss/surrogate": -step / 10})
    assert logger.close(within(30)) == 0
    assert _logged(client, run_id, "Train/mean_reward") == [(s, float(s)) for s in range(30)]
    assert len(_logged(client, run_id, "Loss/surrogate")) == 30


def test_metric_values_are_stored_as_mlflows_own_client_stores_them(
        mlflow_server: MlflowServer) -> None:
    """The logger posts log-batch itself to a plain MLflow server (training.metric_batches):
    what lands in the store must be what MlflowClient.log_batch stores for the same values, a
    NaN loss and infinities included, at the same steps and timestamps."""
    client = MlflowClient(mlflow_server.url)
    run_id = client.create_run(client.create_experiment("same-as-client")).info.run_id
    values = {"nan": math.nan, "inf": math.inf, "minus_inf": -math.inf, "tiny": 5e-324,
              "big": 1.5e300, "negative": -2.25, "int": 3}
    logger = MetricLogger(client, run_id, flush_interval_s=60)
    before_ms = int(time.time() * 1000)
    logger.log(7, {f"ours/{name}": value for name, value in values.items()})
    assert logger.close(within(30)) == 0 and logger.stored == len(values)
    client.log_batch(run_id, metrics=[Metric(f"client/{name}", value, before_ms, 7)
                                      for name, value in values.items()])
    for name in values:
        [ours] = client.get_metric_history(run_id, f"ours/{name}")
        [theirs] = client.get_metric_history(run_id, f"client/{name}")
        assert ours.step == theirs.step == 7
        assert ours.timestamp >= before_ms
        assert (math.isnan(ours.value) and math.isnan(theirs.value)
                or ours.value == theirs.value), name


@pytest.mark.slow
def test_metric_logger_keeps_metrics_through_an_outage(run_on_own_server: ServerRun) -> None:
    client, run_id = run_on_own_server.client, run_on_own_server.run_id
    logger = MetricLogger(client, run_id, flush_interval_s=0.1)
    run_on_own_server.server.stop()
    for step in range(5):
        logger.log(step, {"Train/mean_reward": float(step)})
    run_on_own_server.server.start()
    assert logger.close(within(60)) == 0
    assert [s for s, _ in _logged(client, run_id, "Train/mean_reward")] == list(range(5))
    assert logger.failed_batches >= 1  # it did see the outage


def test_waiting_for_sent_metrics_returns_once_they_are_in_the_store(
        mlflow_server: MlflowServer) -> None:
    # A checkpoint upload waits like this first: once it returns True, a kill loses no metric
    # of an iteration before the checkpoint. The flush interval is long on purpose: the wait
    # itself must make the sender go now.
    client = MlflowClient(mlflow_server.url)
    run_id = client.create_run(client.create_experiment("sent-through")).info.run_id
    logger = MetricLogger(client, run_id, flush_interval_s=60)
    for step in range(5):
        logger.log(step, {"Train/mean_reward": float(step)})
    assert logger.wait_handled_through(4, timeout_s=30)
    steps = [m.step for m in client.get_metric_history(run_id, "Train/mean_reward")]
    assert sorted(steps) == [0, 1, 2, 3, 4]
    assert not logger.wait_handled_through(5, timeout_s=0.5)  # step 5 was never logged
    logger.close(within(10))


def test_every_value_is_stored_or_counted_lost(mlflow_server: MlflowServer) -> None:
    """A batch the store does not answer goes back to a buffer that filled up meanwhile: no
    value may vanish uncounted (the old buffer pushed the newest out and reported 0 lost)."""
    from support.store_proxy import StoreProxy

    with StoreProxy(mlflow_server.url) as proxy:
        client = MlflowClient(proxy.url)
        run_id = client.create_run(client.create_experiment("accounting")).info.run_id
        proxy.fail("/runs/log-batch", "hang", seconds=1.5)
        logger = MetricLogger(client, run_id, flush_interval_s=0.05, max_buffered=10)
        logger.log(0, {f"m{i}": float(i) for i in range(10)})  # fills the buffer
        time.sleep(0.5)  # the sender took those 10 and waits for the store
        logger.log(1, {f"m{i}": float(i) for i in range(5)})  # room again while in flight
        unconfirmed = logger.close(within(1))
        assert logger.stored + unconfirmed == 15 and logger.stored == 0


def test_a_full_buffer_counts_what_it_loses_and_says_why(mlflow_server: MlflowServer) -> None:
    from support.store_proxy import StoreProxy

    with StoreProxy(mlflow_server.url) as proxy:
        client = MlflowClient(proxy.url)
        run_id = client.create_run(client.create_experiment("full-buffer")).info.run_id
        proxy.fail("/runs/log-batch", "drop")
        logger = MetricLogger(client, run_id, flush_interval_s=5, max_buffered=8)
        for step in range(4):
            logger.log(step, {"a": 1.0, "b": 2.0, "c": 3.0})  # 12 values into room for 8
        assert logger.lost == 4 and "buffer of 8 values was full" in logger.summary()
        proxy.heal()
        assert logger.close(within(30)) == 4  # the 8 that fit reach the store once it answers
        assert logger.stored == 8
        assert logger.handled_through == 3  # lost values are accounted for, not waited on


_HEADER_PROBES = """
import importlib.abc, sys
sys.path.insert(0, sys.argv[1])
searched = []

class Spy(importlib.abc.MetaPathFinder):  # sees every module Python searches for
    def find_spec(self, name, path=None, target=None):
        searched.append(name)
        return None

from mlflow.tracking.request_header.registry import resolve_request_headers
from training.tracking import TrackingTarget, use_tracking_target
use_tracking_target(TrackingTarget(uri="http://127.0.0.1:9", source="test"))
sys.meta_path.insert(0, Spy())
for _ in range(3):
    resolve_request_headers()  # what MLflow does before every request
import IPython
print(sorted(set(searched)), IPython.installed)
"""


def test_requests_to_the_store_search_for_no_databricks_module(tmp_path: Path) -> None:
    """MLflow asks on every request whether it runs in Databricks, by importing modules that
    are not there (11 failed imports, each a search of every sys.path folder). Once the
    launcher has pointed MLflow at its store, none is searched for; a probed module that is
    installed (here a stand-in IPython) still imports."""
    package = tmp_path / "IPython"
    package.mkdir()
    (package / "__init__.py").write_text("installed = True\ndef get_ipython():\n    return None\n")
    result = subprocess.run([sys.executable, "-c", _HEADER_PROBES, str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[0] == "['IPython'] True", result.stdout
