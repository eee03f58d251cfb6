"""Checkpoints in and out: fetch the one to start from, upload each save while training runs,
and store the final one with its checkpoint.json.

Incoming: a checkpoint URI is `runs:/`, `models:/`, `mlflow-artifacts:/` (anything MLflow can
download) or a local path; a directory resolves to its highest-iteration `model_<it>.pt`.
Outgoing: every save goes to the run's `checkpoints/` artifacts (plus `<name>.sha256`) from a
worker thread with a bounded queue and retries; the highest iteration goes to
`checkpoints/final/` with `checkpoint.json`.
"""

from __future__ import annotations

import hashlib
import json
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlflow import MlflowClient

from training.tracking import first_line

CHECKPOINT_FILE = re.compile(r"^model_(\d+)\.pt$")
FINAL_ARTIFACT_PATH = "checkpoints/final"
MANIFEST_NAME = "checkpoint.json"
# Looks like "scheme:/..." (but not a Windows drive such as C:\).
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")


class CheckpointUnavailable(Exception):
    """The checkpoint URI cannot be fetched or holds no checkpoint (exit code 7)."""


def resume_uri(run_id: str) -> str:
    return f"runs:/{run_id}/{FINAL_ARTIFACT_PATH}"


def checkpoint_iteration(path: Path) -> int | None:
    match = CHECKPOINT_FILE.match(path.name)
    return int(match.group(1)) if match else None


def highest_iteration_checkpoint(directory: Path) -> Path | None:
    """The model_<it>.pt with the highest <it> anywhere under directory (file times are not
    looked at: a copied or re-downloaded file can be newer than a later iteration)."""
    found = [(checkpoint_iteration(p), p) for p in directory.rglob("model_*.pt") if p.is_file()]
    found = [(it, p) for it, p in found if it is not None]
    return max(found, key=lambda pair: pair[0])[1] if found else None


def fetch_checkpoint(uri: str, download_dir: Path) -> Path:
    """A local checkpoint file for uri; downloads through MLflow when uri has a scheme."""
    if uri.startswith("file://"):
        uri = uri.removeprefix("file://")
    if _URI_SCHEME.match(uri):
        import mlflow

        download_dir.mkdir(parents=True, exist_ok=True)
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri,
                                                             dst_path=str(download_dir)))
        except Exception as error:  # MLflow raises many types: all mean "cannot fetch"
            raise CheckpointUnavailable(
                f"cannot fetch checkpoint {uri}: {first_line(error)}"
            ) from error
    else:
        local = Path(uri).expanduser()
        if not local.exists():
            raise CheckpointUnavailable(f"cannot fetch checkpoint {uri}: no such file or directory")
    checkpoint = local if local.is_file() else highest_iteration_checkpoint(local)
    if checkpoint is None:
        names = sorted(p.name for p in local.rglob("*") if p.is_file())[:10]
        raise CheckpointUnavailable(
            f"no checkpoint in {uri}: expected a model_<iteration>.pt file, found "
            + (", ".join(names) if names else "nothing")
        )
    verify_sidecar_digest(checkpoint)
    return checkpoint


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sidecar_digest(checkpoint: Path) -> None:
    """When a `<name>.sha256` (written by our uploads) or a checkpoint.json lies next to the
    file, its bytes must match: a truncated download is caught before loading."""
    expected = None
    sidecar = checkpoint.with_name(checkpoint.name + ".sha256")
    manifest = checkpoint.with_name(MANIFEST_NAME)
    if sidecar.is_file():
        expected = sidecar.read_text().split()[0]
    elif manifest.is_file():
        data = json.loads(manifest.read_text())
        if data.get("file") == checkpoint.name:
            expected = data.get("sha256")
    if expected and sha256_of(checkpoint) != expected:
        raise CheckpointUnavailable(
            f"checkpoint {checkpoint.name} is corrupt: its sha256 does not match the recorded "
            f"{expected[:12]}..."
        )


@dataclass
class UploadReport:
    uploaded: list[int] = field(default_factory=list)  # iterations now in the store
    not_uploaded: dict[int, str] = field(default_factory=dict)  # iteration -> local path

    def summary(self) -> str:
        text = f"{len(self.uploaded)} checkpoint(s) uploaded"
        if self.not_uploaded:
            missing = ", ".join(f"{path} (iteration {it})"
                                for it, path in sorted(self.not_uploaded.items()))
            text += f"; NOT in the store (kept on disk): {missing}"
        return text


def retry(action: Callable[[], None], *, attempts: int, backoff_s: float,
          deadline: float | None = None) -> str | None:
    """Run action until it succeeds; None on success, else the last error's first line.
    The wait doubles after each failure (backoff_s, 2*backoff_s, ... capped at 30 s)."""
    error_text = "not attempted"
    delay_s = backoff_s
    for attempt in range(attempts):
        try:
            action()
            return None
        except Exception as error:  # network and server errors: retried, then reported
            error_text = first_line(error)
        out_of_time = deadline is not None and time.monotonic() + delay_s > deadline
        if attempt == attempts - 1 or out_of_time:
            break
        time.sleep(delay_s)
        delay_s = min(delay_s * 2, 30.0)
    return error_text


def upload_checkpoint(client: MlflowClient, run_id: str, path: Path, artifact_path: str) -> None:
    """The file and its `<name>.sha256` (so a later resume can verify the bytes)."""
    digest = sha256_of(path)
    client.log_artifact(run_id, str(path), artifact_path)
    client.log_text(run_id, f"{digest}  {path.name}\n", f"{artifact_path}/{path.name}.sha256")


class CheckpointUploader:
    """Uploads each saved checkpoint to `checkpoints/` from a worker thread.

    submit() never blocks training: when the queue is full, or an upload keeps failing after
    its retries, the checkpoint is set aside and tried again when close() drains; close()
    waits at most its timeout and reports exactly which checkpoints did not reach the store.
    """

    def __init__(self, client: MlflowClient, run_id: str, *, queue_size: int = 8,
                 attempts: int = 4, backoff_s: float = 1.0) -> None:
        self._client = client
        self._run_id = run_id
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._queue: queue.Queue[tuple[int, Path] | None] = queue.Queue(maxsize=queue_size)
        self._set_aside: list[tuple[int, Path]] = []
        self._lock = threading.Lock()
        self._submitted: dict[int, Path] = {}
        self._uploaded: set[int] = set()
        self._deadline: float | None = None
        self.failures = 0  # failed attempts, for the log
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._work, name="checkpoint-uploads", daemon=True)
        self._thread.start()

    def submit(self, iteration: int, path: Path) -> None:
        with self._lock:
            self._submitted[iteration] = path
        try:
            self._queue.put_nowait((iteration, path))
        except queue.Full:
            with self._lock:
                self._set_aside.append((iteration, path))

    def close(self, timeout_s: float) -> UploadReport:
        self._deadline = time.monotonic() + timeout_s
        try:  # the sentinel wakes the worker, which drains the queue before it
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            pass
        self._thread.join(max(0.0, self._deadline - time.monotonic()))
        with self._lock:
            return UploadReport(
                uploaded=sorted(self._uploaded),
                not_uploaded={it: str(p) for it, p in self._submitted.items()
                              if it not in self._uploaded},
            )

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            self._upload(*job)
        # Closing: what was set aside (queue full, or failed during an outage) gets another
        # round now that training is over and the store may be back.
        with self._lock:
            retry_jobs, self._set_aside = self._set_aside, []
        for iteration, path in retry_jobs:
            self._upload(iteration, path, final_round=True)

    def _upload(self, iteration: int, path: Path, final_round: bool = False) -> None:
        error = retry(
            lambda: upload_checkpoint(self._client, self._run_id, path, "checkpoints"),
            attempts=self._attempts,
            backoff_s=self._backoff_s,
            deadline=self._deadline,
        )
        with self._lock:
            if error is None:
                self._uploaded.add(iteration)
                return
            self.failures += 1
            self.last_error = error
            if not final_round:
                self._set_aside.append((iteration, path))
        print(f"warning: upload of {path.name} failed ({error}); "
              + ("gave up" if final_round else "will retry at the end"), flush=True)


def write_manifest(path: Path, **fields: object) -> Path:
    """checkpoint.json next to the final checkpoint: what a later resume/registration reads."""
    manifest = path.with_name(MANIFEST_NAME)
    manifest.write_text(json.dumps(fields, indent=2, sort_keys=True) + "\n")
    return manifest


def upload_final(client: MlflowClient, run_id: str, checkpoint: Path, manifest: Path,
                 timeout_s: float) -> str | None:
    """checkpoint + checkpoint.json to checkpoints/final; None on success, else the error."""
    def action() -> None:
        upload_checkpoint(client, run_id, checkpoint, FINAL_ARTIFACT_PATH)
        client.log_artifact(run_id, str(manifest), FINAL_ARTIFACT_PATH)

    return retry(action, attempts=8, backoff_s=1.0, deadline=time.monotonic() + timeout_s)
