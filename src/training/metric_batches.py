"""How a batch of metric values reaches the tracking store: the one place that knows how MLflow
sends ``log-batch``, and the one module that reaches past MLflow's public client.

A value travels as a plain tuple ``(name, value, timestamp_ms, step)`` from the training
thread to the metric sender (training.tracking.MetricLogger): no MLflow entity per value.

Against a plain MLflow server (``http(s)://``, MLflow's own ``RestStore``) the sender posts the
``/api/2.0/mlflow/runs/log-batch`` request itself, as the store's own endpoint call does
(``RestStore._call_endpoint`` -> ``rest_utils.call_endpoint``: the same host, credentials, TLS
settings, session, retries, headers and error types as the client's), with a body made once by
``json.dumps``. ``MlflowClient.log_batch`` would build the same request at about 50 us of CPU
per value (a new ``Metric`` per value, the active LoggedModel looked up per value, a protobuf
message, ``MessageToDict``, then an indented dump by the pure-Python JSON encoder); this path
costs a few us per value, so 60 metrics an iteration stay far below 1 % of an iteration
(bench/tracking_cost.py). Every other store (the
local sqlite store, Azure ML's and Databricks' REST stores, which subclass MLflow's and may
change the request) goes through ``MlflowClient.log_batch`` as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

Value = tuple[str, float, int, int]  # (metric name, value, timestamp in ms, step)
Sender = Callable[[Sequence[Value]], None]

# How protobuf's JSON mapping (what MLflow's client sends) writes doubles JSON cannot hold.
_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def sender_for(client: Any, run_id: str) -> Sender:
    """A function that stores one batch of values in run_id, raising the store's error."""
    store = _plain_rest_store(client)
    if store is None:
        return _client_sender(client, run_id)
    return _rest_sender(store, run_id)


def _plain_rest_store(client: Any) -> Any | None:
    """The client's store when it is MLflow's own RestStore (not a subclass), else None."""
    try:
        from mlflow.store.tracking.rest_store import RestStore

        store = client._tracking_client.store
    except (ImportError, AttributeError):  # another MLflow layout: use the public client
        return None
    return store if type(store) is RestStore and hasattr(store, "_call_endpoint") else None


def _client_sender(client: Any, run_id: str) -> Sender:
    from mlflow.entities import Metric

    def send(batch: Sequence[Value]) -> None:
        client.log_batch(run_id, metrics=[Metric(*value) for value in batch], synchronous=True)

    return send


def _rest_sender(store: Any, run_id: str) -> Sender:
    from mlflow.protos.service_pb2 import LogBatch

    try:
        from mlflow.utils.rest_utils import http_request_safe

        endpoint, method = store._METHOD_TO_INFO[LogBatch]
    except (ImportError, AttributeError, KeyError):  # another MLflow layout
        def send_through_store(batch: Sequence[Value]) -> None:
            store._call_endpoint(LogBatch, log_batch_json(run_id, batch))

        return send_through_store

    def send(batch: Sequence[Value]) -> None:
        # What RestStore._call_endpoint does for LogBatch (rest_utils.call_endpoint: the
        # store's host and credentials, http_request's session, retries and headers, the
        # response verified), less its json.loads of the body that requests then dumps again:
        # two passes over every value.
        http_request_safe(store.get_host_creds(), endpoint, method,
                          data=log_batch_json(run_id, batch),
                          extra_headers={"Content-Type": "application/json"})

    return send


def log_batch_json(run_id: str, batch: Sequence[Value]) -> str:
    """The body of a log-batch request, as MLflow's client writes it (field names of its
    protobuf; NaN and infinities as protobuf's JSON strings), compact."""
    import json

    metrics = [{"key": name, "value": _json_double(value), "timestamp": timestamp, "step": step}
               for name, value, timestamp, step in batch]
    return json.dumps({"run_id": run_id, "metrics": metrics}, separators=(",", ":"))


def _json_double(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else _NON_FINITE[value]
