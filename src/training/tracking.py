"""MLflow tracking: where to log, the run's lifecycle, and metrics that never stall training.

Tracking URI, in this order:
1. the Azure ML workspace's MLflow URI when AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP and
   AZUREML_WORKSPACE_NAME are all set, or MLFLOW_TRACKING_URI is an `azureml://` workspace URI
   (training.azure: credential, workspace request, limits);
2. MLFLOW_TRACKING_URI (new experiments' artifacts under MLFLOW_ARTIFACT_LOCATION when set);
3. a local sqlite store `$TRAINING_OUTPUT_DIR/mlflow.db` with artifacts in
   `$TRAINING_OUTPUT_DIR/mlartifacts`.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Param
from mlflow.exceptions import MlflowException

from training import metric_batches
from training.config import RunConfig
from training.store import Backoff, retry, unreachable
from training.store import first_line as first_line  # re-exported for smoke and registry

# MLflow accepts alphanumerics, "_", "-", ".", " ", ":" and "/" in metric names.
_INVALID_NAME_CHARACTERS = re.compile(r"[^\w\-. :/]")
MAX_METRICS_PER_BATCH = 1000  # MLflow's log_batch limit
# How often the metric sender posts what is buffered. Each request costs MLflow's client a few
# ms of CPU whatever its size (headers, its Databricks context checks), so fewer requests are
# what keeps tracking cheap; nothing waits for the interval: a checkpoint upload and the end of
# the run make the sender go at once (bench/tracking_cost.py, bench/RESULTS.md).
FLUSH_INTERVAL_S = 5.0
# The first wait before sending again to a store that did not answer (then doubling to 30 s).
RETRY_FIRST_S = 1.0
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@")
# What MLflow's Databricks request-header provider tries to import on every request, to learn
# whether it runs in a Databricks notebook, job or cluster (mlflow/utils/databricks_utils.py:
# `from dbruntime.databricks_repl_context import get_context`, IPython, pyspark): 11 failed
# imports a request, each a search of every sys.path folder (Python does not remember a failed
# import), 1.1 ms of CPU a request with this venv's 6 folders, more in an image whose sys.path
# lists many extension folders.
_DATABRICKS_PROBES = ("dbruntime", "IPython", "pyspark")


class TrackingError(Exception):
    """The tracking store cannot be resolved or reached."""


@dataclass(frozen=True)
class TrackingTarget:
    uri: str
    source: str  # "azureml", "MLFLOW_TRACKING_URI" or "local"
    artifact_location: str | None = None  # for experiments this run creates; None: the store's


def resolve_tracking_target(config: RunConfig) -> TrackingTarget:
    # Azure ML: the three workspace variables, or an azureml:// MLFLOW_TRACKING_URI; both go
    # through the workspace request, which gives azureml-mlflow our credential (training.azure).
    from training import azure  # light: the Azure SDKs are imported only when used

    workspace = config.azure_workspace or azure.workspace_from_tracking_uri(
        config.mlflow_tracking_uri or "")
    if workspace is not None:
        try:
            resolved = azure.resolve_workspace(workspace)
        except azure.AzureError as error:
            raise TrackingError(str(error)) from error
        return TrackingTarget(uri=resolved.tracking_uri, source="azureml")
    if config.mlflow_tracking_uri:
        return TrackingTarget(uri=config.mlflow_tracking_uri, source="MLFLOW_TRACKING_URI",
                              artifact_location=config.mlflow_artifact_location)
    output_dir = config.output_dir.resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    return TrackingTarget(
        uri=f"sqlite:///{output_dir / 'mlflow.db'}",
        source="local",
        artifact_location=(output_dir / "mlartifacts").as_uri(),
    )


def connect(config: RunConfig) -> TrackingTarget:
    """Resolve the tracking target and point MLflow (tracking and registry) at it."""
    target = resolve_tracking_target(config)
    use_tracking_target(target)
    print(f"tracking: {redact(target.uri)} (from {target.source})", flush=True)
    return target


def use_tracking_target(target: TrackingTarget) -> None:
    skip_databricks_probes()
    mlflow.set_tracking_uri(target.uri)
    # Azure ML serves its model registry at the tracking URI; so does a plain MLflow store.
    mlflow.set_registry_uri(target.uri)


def skip_databricks_probes() -> None:
    """Modules of _DATABRICKS_PROBES that are not installed fail to import at once: a None in
    sys.modules is Python's own "not importable" mark, no search. Installed ones are left as
    they are; this process never runs inside Databricks."""
    for name in _DATABRICKS_PROBES:
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            sys.modules[name] = None  # type: ignore[assignment]


def experiment_id_for(name: str, target: TrackingTarget) -> str:
    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=target.artifact_location)
    except MlflowException:
        # The tasks of a sweep start side by side: a sibling may have created it meanwhile.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def sanitize_metric_name(name: str) -> str:
    """A name MLflow accepts: invalid characters become "_", empty path segments go away."""
    clean = _CLEAN_NAMES.get(name)
    if clean is None:
        clean = _sanitize(name)
        if len(_CLEAN_NAMES) < 10_000:  # names repeat every iteration; bounded all the same
            _CLEAN_NAMES[name] = clean
    return clean


_CLEAN_NAMES: dict[str, str] = {}  # a plain dict: one lookup per value on the training thread


def _sanitize(name: str) -> str:
    cleaned = _INVALID_NAME_CHARACTERS.sub("_", name)
    segments = [s for s in cleaned.split("/") if s.strip() not in ("", ".", "..")]
    return "/".join(segments) or "_"


def flatten_metrics(metrics: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
    """(valid name, float) pairs. A list or tensor with several values becomes name/0, name/1,
    ... rather than being dropped (the original silently dropped them)."""
    for name, value in metrics.items():
        clean = _CLEAN_NAMES.get(name) or sanitize_metric_name(str(name))
        if type(value) is float:  # what both backends report: the common case first
            yield clean, value
            continue
        if hasattr(value, "tolist"):  # torch tensor / numpy array / numpy scalar
            value = value.tolist()
        if isinstance(value, (list, tuple)):
            for index, item in enumerate(_flat_values(value)):
                yield f"{clean}/{index}", item
        elif isinstance(value, (int, float, bool)):
            yield clean, float(value)


def _flat_values(values: list | tuple) -> Iterator[float]:
    for item in values:
        if isinstance(item, (list, tuple)):
            yield from _flat_values(item)
        elif isinstance(item, (int, float, bool)):
            yield float(item)


class MetricLogger:
    """Collects metrics on the training thread (cheap: a tuple per value appended to a deque
    under a lock; no I/O) and sends them from a background thread in log-batch requests
    (training.metric_batches: at most one a flush interval, or sooner when asked).

    Every value logged ends in exactly one of two counts: ``stored`` (the store confirmed the
    batch) or ``lost`` (with ``lost_reasons``): a batch the store refused (retrying cannot help),
    or values that did not fit the bounded buffer while the store was away. While the store does
    not answer, batches wait in the buffer and go out once it is back (waits of
    RETRY_FIRST_S, or flush_interval_s when shorter, doubling to 30 s). ``handled_through`` is
    the highest step whose metrics are all stored or counted lost: the checkpoint uploader waits
    for it, so a checkpoint never reaches the store ahead of the metrics before it.
    """

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        *,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        max_buffered: int = 500_000,
        batch_size: int = MAX_METRICS_PER_BATCH,
    ) -> None:
        self._send = metric_batches.sender_for(client, run_id)
        self._flush_interval_s = flush_interval_s
        self._max_buffered = max_buffered
        self._batch_size = batch_size
        self._pending: deque[metric_batches.Value] = deque()
        self._in_flight: list[metric_batches.Value] = []  # taken from _pending, not confirmed
        self._lock = threading.Lock()
        self._handled = threading.Condition(self._lock)  # notified when handled_through grows
        self._logged_through = -1  # highest step logged
        self.handled_through = -1
        self.stored = 0
        self.lost = 0
        self.lost_reasons: dict[str, int] = {}
        self.failed_batches = 0  # tries the store did not answer
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._flush_now = threading.Event()  # wakes the sender early (close, a waiter)
        self._thread = threading.Thread(target=self._run, name="mlflow-metrics", daemon=True)
        self._thread.start()

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        timestamp = int(time.time() * 1000)
        batch = [(name, value, timestamp, step) for name, value in flatten_metrics(metrics)]
        with self._lock:
            room = max(0, self._max_buffered - len(self._pending))
            if len(batch) > room:
                self._lose(len(batch) - room, f"the buffer of {self._max_buffered} values was "
                           "full while the store did not answer")
                batch = batch[:room]
            self._pending.extend(batch)
            self._logged_through = max(self._logged_through, step)
            self._advance()

    def wait_handled_through(self, step: int, timeout_s: float) -> bool:
        """Wait (at most timeout_s) until every metric of steps <= step is stored or counted
        lost. The checkpoint uploader asks this before storing model_<step + 1>.pt."""
        self._flush_now.set()
        with self._handled:
            return self._handled.wait_for(lambda: self.handled_through >= step, timeout_s)

    def close(self, deadline: Callable[[], float]) -> int:
        """Send what is buffered until deadline(); return how many values are not confirmed
        stored (lost, still buffered, or in a request the store had not answered)."""
        self._stop.set()
        self._flush_now.set()
        while self._thread.is_alive() and time.monotonic() < deadline():
            self._thread.join(min(0.2, max(0.0, deadline() - time.monotonic())))
        with self._lock:
            return self.lost + len(self._pending) + len(self._in_flight)

    def summary(self) -> str:
        """Why values were lost, for the run's closing lines."""
        reasons = "; ".join(f"{count} {why}" for why, count in self.lost_reasons.items())
        return reasons or (self.last_error or "")

    def _lose(self, count: int, reason: str) -> None:
        self.lost += count
        self.lost_reasons[reason] = self.lost_reasons.get(reason, 0) + count

    def _advance(self) -> None:
        """handled_through: just below the oldest value not yet stored or lost (steps arrive
        in order), else everything logged. Called with the lock held."""
        oldest = self._in_flight or self._pending
        self.handled_through = oldest[0][3] - 1 if oldest else self._logged_through
        self._handled.notify_all()

    def _run(self) -> None:
        backoff = Backoff(min(RETRY_FIRST_S, self._flush_interval_s), 30.0)
        wait_s = self._flush_interval_s
        while True:
            self._flush_now.wait(wait_s)
            self._flush_now.clear()
            stopping = self._stop.is_set()
            if self._send_pending():
                if stopping:
                    return
                backoff.succeeded()
                wait_s = self._flush_interval_s
            else:  # the store did not answer: wait longer each time, at most 5 s once closing
                wait_s = min(backoff.failed(), 5.0 if stopping else 30.0)

    def _send_pending(self) -> bool:
        """Send everything buffered; False when the store did not answer (values kept)."""
        while True:
            with self._lock:
                count = min(self._batch_size, len(self._pending))
                self._in_flight = [self._pending.popleft() for _ in range(count)]
            batch = self._in_flight
            if not batch:
                return True
            try:
                self._send(batch)
            except Exception as error:  # MLflow raises many types
                self.last_error = first_line(error)
                with self._lock:
                    self._in_flight = []
                    if unreachable(error):
                        self._pending.extendleft(reversed(batch))
                        self.failed_batches += 1
                        return False
                    self._lose(len(batch), f"refused by the store ({self.last_error})")
                    self._advance()
                continue
            with self._lock:
                self.stored += len(batch)
                self._in_flight = []
                self._advance()


def start_run(config: RunConfig, experiment_id: str, tags: Mapping[str, str],
              continue_run_id: str | None = None) -> str:
    """Start a run (or continue an earlier one: back to RUNNING, same metric history) with
    MLflow's own system-metrics logging (psutil); return its id."""
    tags = {key: value for key, value in tags.items() if value}
    if continue_run_id is not None:
        run = mlflow.start_run(run_id=continue_run_id, tags=tags, log_system_metrics=True)
    else:
        run = mlflow.start_run(experiment_id=experiment_id,
                               run_name=f"{config.task}-{config.checkpoint_mode}",
                               tags=tags, log_system_metrics=True)
    return run.info.run_id


def log_params_once(client: MlflowClient, run_id: str, params: Mapping[str, str], *,
                    continued: bool = True) -> None:
    """Log the params the run does not have yet. MLflow refuses to change a param, and a
    continued run keeps its first attempt's values (its tags show the latest). A run just
    created (continued False) has none: no need to ask the store."""
    existing = client.get_run(run_id).data.params if continued else {}
    new = [Param(key, value) for key, value in params.items() if value and key not in existing]
    if new:
        client.log_batch(run_id, params=new)


def end_run(run_id: str, status: str, deadline: Callable[[], float]) -> bool:
    """End the run as FINISHED, FAILED or KILLED (stopped, to be resumed), retrying while the
    store does not answer until deadline(). Returns False if it could not."""
    active = mlflow.active_run()  # per thread: the watchdog's last words see none
    if active is not None and active.info.run_id == run_id:
        try:
            mlflow.end_run(status=status)  # also stops the system-metrics thread
            return True
        except Exception:
            pass  # the fluent run is already popped; set the status directly, with retries
    try:
        retry(lambda: MlflowClient().set_terminated(run_id, status), deadline=deadline,
              only_unreachable=True)
    except Exception:
        return False
    return True


def redact(uri: str) -> str:
    """A URI fit to print or record: user and password (or token) become ***."""
    return _USERINFO.sub(r"\1***@", uri)


def log_dir_for(config: RunConfig, run_id: str) -> Path:
    """Where the backend writes this run's files (model_<it>.pt, its own logs)."""
    return config.output_dir / "runs" / run_id
