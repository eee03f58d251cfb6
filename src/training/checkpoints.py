"""Checkpoints in and out: fetch the one to start from, upload each save while training runs,
and store the final one with its checkpoint.json.

Incoming: a checkpoint URI is `runs:/`, `models:/`, `mlflow-artifacts:/` (anything MLflow can
download) or a local path; a directory resolves to its highest-iteration `model_<it>.pt`.
Outgoing: every save goes to the run's `checkpoints/` artifacts (plus `model_<N>.sha256`, written
after the file, so a sidecar means the upload completed) from a worker thread that retries
through outages while training goes on; the highest iteration goes to `checkpoints/final/`
with `checkpoint.json`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlflow import MlflowClient

from training.store import Backoff, first_line, retry

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


def sidecar_of(checkpoint: Path) -> Path:
    """Where `model_<N>.sha256` lies next to `model_<N>.pt` (text: `<hex>  model_<N>.pt`).
    Not `model_<N>.pt.sha256`: azureml-mlflow lists artifacts by bare name prefix, so a name
    that extends the checkpoint's would make the checkpoint look like a directory there."""
    return checkpoint.with_suffix(".sha256")


def recorded_sha256(checkpoint: Path) -> str | None:
    """The sha256 recorded for the file by its `.sha256` sidecar (written by our uploads)
    or a checkpoint.json next to it; None when neither records it."""
    sidecar = sidecar_of(checkpoint)
    if sidecar.is_file():
        words = sidecar.read_text().split()
        return words[0] if words else ""
    manifest = checkpoint.with_name(MANIFEST_NAME)
    if manifest.is_file():
        data = json.loads(manifest.read_text())
        if data.get("file") == checkpoint.name:
            return data.get("sha256")
    return None


def verify_sidecar_digest(checkpoint: Path) -> None:
    """When a sidecar or checkpoint.json records the file's sha256, its bytes must match: a
    truncated download is caught before loading."""
    expected = recorded_sha256(checkpoint)
    if expected is not None and sha256_of(checkpoint) != expected:
        raise CheckpointUnavailable(
            f"checkpoint {checkpoint.name} is corrupt: its sha256 does not match the recorded "
            f"{expected[:12]}..."
        )


@dataclass
class UploadReport:
    uploaded: list[int] = field(default_factory=list)  # iterations now in the store
    not_uploaded: dict[int, str] = field(default_factory=dict)  # iteration -> local path
    # iteration -> local path: a request still under way when the wait ended; it may yet
    # reach the store (a completed upload ends with its sidecar, which auto-resume checks)
    in_flight: dict[int, str] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)  # iteration -> its last upload error

    def summary(self) -> str:
        text = f"{len(self.uploaded)} checkpoint(s) uploaded"
        if self.not_uploaded:
            text += "; NOT in the store (kept on disk): " + _listing(self.not_uploaded)
        if self.in_flight:
            text += ("; still uploading when the wait ended, may or may not reach the store "
                     "(kept on disk): " + _listing(self.in_flight))
        return text


def _listing(files: dict[int, str]) -> str:
    return ", ".join(f"{path} (iteration {it})" for it, path in sorted(files.items()))


def upload_checkpoint(client: MlflowClient, run_id: str, path: Path, artifact_path: str) -> None:
    """The file and its `.sha256` sidecar (so a later resume can verify the bytes)."""
    digest = sha256_of(path)
    client.log_artifact(run_id, str(path), artifact_path)
    client.log_text(run_id, f"{digest}  {path.name}\n",
                    f"{artifact_path}/{sidecar_of(path).name}")


class CheckpointUploader:
    """Uploads each saved checkpoint to `checkpoints/` from a worker thread, newest first.

    submit() never blocks training: it records the file under a lock that the worker holds
    only for bookkeeping, never during a network call. Before each try the worker asks
    ``ready(iteration)`` (the launcher: are the metrics of the iterations before it handled?);
    a checkpoint that is not ready waits, so it never reaches the store ahead of them. A failed
    try is retried while training goes on, with store.Backoff (backoff_s doubling to
    max_backoff_s; at most 5 s apart once closing) and no limit on the number of tries until
    close(); the checkpoint that failed most often goes last, so one bad file cannot hold back
    the rest. close() waits until its deadline and reports exactly where each checkpoint is.
    """

    CLOSING_MAX_BACKOFF_S = 5.0  # the store may be back any moment; the deadline is near

    def __init__(self, client: MlflowClient, run_id: str, *, backoff_s: float = 1.0,
                 max_backoff_s: float = 30.0,
                 ready: Callable[[int], bool] = lambda iteration: True) -> None:
        self._client = client
        self._run_id = run_id
        self._ready = ready
        self._backoff = Backoff(backoff_s, max_backoff_s)
        self._wake = threading.Condition()  # guards everything below; never held while uploading
        self._pending: dict[int, Path] = {}  # iteration -> file, not in the store yet
        self._failed_tries: dict[int, int] = {}  # iteration -> failed tries
        self._errors: dict[int, str] = {}  # iteration -> last error, while not uploaded
        self._uploaded: set[int] = set()
        self._in_flight: tuple[int, Path] | None = None
        self._retry_at = 0.0
        self._close_by: Callable[[], float] | None = None  # set by close()
        self.failures = 0  # failed tries, for the log
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._work, name="checkpoint-uploads", daemon=True)
        self._thread.start()

    def submit(self, iteration: int, path: Path) -> None:
        with self._wake:
            self._pending[iteration] = path
            self._uploaded.discard(iteration)  # a new file for this iteration replaces the old
            self._wake.notify()

    def close(self, deadline: Callable[[], float]) -> UploadReport:
        """Let the worker upload what is pending until deadline(), then report."""
        with self._wake:
            self._close_by = deadline
            self._wake.notify()
        while self._thread.is_alive() and time.monotonic() < deadline():
            self._thread.join(min(0.2, max(0.0, deadline() - time.monotonic())))
        with self._wake:
            in_flight = dict([self._in_flight]) if self._in_flight else {}
            return UploadReport(
                uploaded=sorted(self._uploaded),
                not_uploaded={it: str(p) for it, p in self._pending.items() if it not in in_flight},
                in_flight={it: str(p) for it, p in in_flight.items()},
                errors={it: self._errors[it] for it in self._pending if it in self._errors})

    def _work(self) -> None:
        while (job := self._next_job()) is not None:
            error = self._upload(*job)
            if error is None and self._backoff.failures:
                print(f"checkpoint uploads recovered: {job[1].name} stored after "
                      f"{self._backoff.failures} failed tries", flush=True)
            elif error is not None and not self._backoff.failures:
                print(f"warning: upload of {job[1].name} failed ({error}); retrying in the "
                      f"background (waits of {self._backoff.first_s:g} s doubling to at most "
                      f"{self._backoff.max_s:g} s) while training goes on", flush=True)
            with self._wake:
                if error is None:
                    self._backoff.succeeded()
                    self._retry_at = 0.0
                else:
                    wait_s = self._backoff.failed()
                    if self._close_by is not None:
                        wait_s = min(wait_s, self.CLOSING_MAX_BACKOFF_S)
                    self._retry_at = time.monotonic() + wait_s

    def _next_job(self) -> tuple[int, Path] | None:
        """The next checkpoint to try once the backoff has passed; None when closed (nothing
        pending, or the close deadline passed)."""
        with self._wake:
            while True:
                now = time.monotonic()
                close_by = self._close_by() if self._close_by is not None else None
                if close_by is not None and (not self._pending or now >= close_by):
                    return None
                if self._pending and now >= self._retry_at:
                    iteration = min(self._pending,
                                    key=lambda it: (self._failed_tries.get(it, 0), -it))
                    return iteration, self._pending[iteration]
                wake_at = [t for t in (self._retry_at if self._pending else None, close_by)
                           if t is not None]
                if close_by is not None:  # a stop signal can bring the deadline forward
                    self._wake.wait(min(0.5, min(wake_at) - now))
                else:  # idle until submit() or close() notifies, or the next retry is due
                    self._wake.wait(min(wake_at) - now if wake_at else None)

    def _upload(self, iteration: int, path: Path) -> str | None:
        """One try; None on success, else why not."""
        try:
            if not self._ready(iteration):
                error = "waiting for the metrics of the iterations before it"
            else:
                with self._wake:  # from now on the store may receive it (see close's report)
                    self._in_flight = (iteration, path)
                upload_checkpoint(self._client, self._run_id, path, "checkpoints")
                error = None
        except Exception as exception:  # network and server errors: retried after a backoff
            error = first_line(exception)
        with self._wake:
            self._in_flight = None
            if error is None:
                if self._pending.get(iteration) == path:
                    del self._pending[iteration]
                self._failed_tries.pop(iteration, None)
                self._errors.pop(iteration, None)
                self._uploaded.add(iteration)
            else:
                self._failed_tries[iteration] = self._failed_tries.get(iteration, 0) + 1
                self._errors[iteration] = error
                self.failures += 1
                self.last_error = error
        return error


def write_manifest(path: Path, **fields: object) -> Path:
    """checkpoint.json next to the final checkpoint: what a later resume/registration reads."""
    manifest = path.with_name(MANIFEST_NAME)
    manifest.write_text(json.dumps(fields, indent=2, sort_keys=True) + "\n")
    return manifest


def upload_final(client: MlflowClient, run_id: str, checkpoint: Path, manifest: Path,
                 deadline: Callable[[], float]) -> None:
    """checkpoint + checkpoint.json to checkpoints/final, retried while the store does not
    answer until deadline(); raises the last error (a refusal at once)."""
    def action() -> None:
        upload_checkpoint(client, run_id, checkpoint, FINAL_ARTIFACT_PATH)
        client.log_artifact(run_id, str(manifest), FINAL_ARTIFACT_PATH)

    retry(action, deadline=deadline, only_unreachable=True)
