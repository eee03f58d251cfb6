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

import functools
import re
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from training.config import RunConfig

# MLflow accepts alphanumerics, "_", "-", ".", " ", ":" and "/" in metric names.
_INVALID_NAME_CHARACTERS = re.compile(r"[^\w\-. :/]")
MAX_METRICS_PER_BATCH = 1000  # MLflow's log_batch limit


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


def use_tracking_target(target: TrackingTarget) -> None:
    mlflow.set_tracking_uri(target.uri)
    # Azure ML serves its model registry at the tracking URI; so does a plain MLflow store.
    mlflow.set_registry_uri(target.uri)


def experiment_id_for(name: str, target: TrackingTarget) -> str:
    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=target.artifact_location)


def sanitize_metric_name(name: str) -> str:
    """A name MLflow accepts: invalid characters become "_", empty path segments go away."""
    return _sanitize_cached(name)


@functools.lru_cache(maxsize=4096)  # called per metric per iteration: names repeat
def _sanitize_cached(name: str) -> str:
    cleaned = _INVALID_NAME_CHARACTERS.sub("_", name)
    segments = [s for s in cleaned.split("/") if s.strip() not in ("", ".", "..")]
    return "/".join(segments) or "_"


def flatten_metrics(metrics: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
    """(valid name, float) pairs. A list or tensor with several values becomes name/0, name/1,
    ... rather than being dropped (the original silently dropped them)."""
    for name, value in metrics.items():
        clean = sanitize_metric_name(str(name))
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
    """Collects metrics on the training thread (cheap: a list append) and sends them from a
    background thread with MlflowClient.log_batch. When the store is down, metrics wait in a
    bounded buffer and are sent once it is back; only overflow is dropped, and counted."""

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        *,
        flush_interval_s: float = 1.0,
        max_buffered: int = 500_000,
    ) -> None:
        self._client = client
        self._run_id = run_id
        self._flush_interval_s = flush_interval_s
        self._pending: deque[Metric] = deque(maxlen=max_buffered)
        self._lock = threading.Lock()
        self._sent = threading.Condition(self._lock)  # notified when _sent_through grows
        self._logged_through = -1  # highest step logged
        self._sent_through = -1  # every metric of steps <= this is in the store
        self._stop = threading.Event()
        self._flush_now = threading.Event()  # wakes the sender early (close, a waiter)
        self.dropped = 0
        self.failed_batches = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="mlflow-metrics", daemon=True)
        self._thread.start()

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        timestamp = int(time.time() * 1000)
        batch = [Metric(name, value, timestamp, step) for name, value in flatten_metrics(metrics)]
        with self._lock:
            overflow = len(self._pending) + len(batch) - (self._pending.maxlen or 0)
            if overflow > 0:
                self.dropped += overflow
            self._pending.extend(batch)
            self._logged_through = max(self._logged_through, step)

    def wait_sent_through(self, step: int, timeout_s: float) -> bool:
        """Wait (at most timeout_s) until every metric of steps <= step is in the store. The
        checkpoint uploader calls it before storing model_<step + 1>.pt, so that a run killed
        after a checkpoint reached the store has no metric gap before it once resumed."""
        self._flush_now.set()
        with self._sent:
            return self._sent.wait_for(lambda: self._sent_through >= step, timeout_s)

    def close(self, timeout_s: float = 60.0) -> int:
        """Send what is buffered (for at most timeout_s); return how many metrics were not."""
        self._stop.set()
        self._flush_now.set()
        self._thread.join(timeout_s)
        with self._lock:
            return len(self._pending) + self.dropped

    def _run(self) -> None:
        backoff_s = self._flush_interval_s
        while True:
            self._flush_now.wait(backoff_s)
            self._flush_now.clear()
            stopping = self._stop.is_set()
            if self._send_pending():
                if stopping:
                    return
                backoff_s = self._flush_interval_s
                continue
            # The store refused: wait longer each time. Once closing, the event no longer
            # waits, so sleep; close() stops waiting for this thread after its timeout.
            backoff_s = min(backoff_s * 2, 5.0 if stopping else 30.0)
            if stopping:
                time.sleep(backoff_s)

    def _send_pending(self) -> bool:
        """Send everything buffered; False when the store refused (metrics kept for later)."""
        while True:
            with self._lock:
                batch = [self._pending.popleft()
                         for _ in range(min(MAX_METRICS_PER_BATCH, len(self._pending)))]
            if not batch:
                return True
            try:
                self._client.log_batch(self._run_id, metrics=batch, synchronous=True)
            except Exception as error:  # network or server errors: keep the metrics, retry
                with self._lock:
                    self._pending.extendleft(reversed(batch))
                self.failed_batches += 1
                self.last_error = first_line(error)
                return False
            with self._sent:  # steps arrive in order: all before the first pending one are in
                self._sent_through = (self._pending[0].step - 1 if self._pending
                                      else self._logged_through)
                self._sent.notify_all()


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


def log_params_once(client: MlflowClient, run_id: str, params: Mapping[str, str]) -> None:
    """Log the params the run does not have yet. MLflow refuses to change a param, and a
    continued run keeps its first attempt's values (its tags show the latest)."""
    existing = client.get_run(run_id).data.params
    new = [Param(key, value) for key, value in params.items() if value and key not in existing]
    if new:
        client.log_batch(run_id, params=new)


def end_run(run_id: str, status: str, attempts: int = 5) -> bool:
    """End the run as FINISHED, FAILED or KILLED (stopped, to be resumed), retrying while the
    store is unreachable, so a run is never left RUNNING because of a short outage. Returns
    False if it could not."""
    try:
        mlflow.end_run(status=status)  # also stops the system-metrics thread
        return True
    except Exception:
        pass  # the fluent run is already popped; set the status directly, with retries
    delay_s = 1.0
    for attempt in range(attempts):
        try:
            MlflowClient().set_terminated(run_id, status)
            return True
        except Exception:
            if attempt < attempts - 1:
                time.sleep(delay_s)
                delay_s *= 2
    return False


def store_unreachable(error: BaseException) -> bool:
    """Whether error, or one it was raised from, says the tracking store did not answer
    (connection refused or reset, a timeout, retries on 5xx answers used up), as opposed to an
    answer that refuses the request (no permission, not an MLflow server): only the first is
    worth running the task again for. MLflow wraps the requests error, so the chain is read."""
    import requests  # MLflow's own HTTP client

    no_answer = (ConnectionError, TimeoutError, requests.exceptions.ConnectionError,
                 requests.exceptions.Timeout, requests.exceptions.RetryError)
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, no_answer):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def log_dir_for(config: RunConfig, run_id: str) -> Path:
    """Where the backend writes this run's files (model_<it>.pt, its own logs)."""
    return config.output_dir / "runs" / run_id
