"""Auto-resume: a retried task continues the MLflow run of its earlier attempt.

When AUTO_RESUME is on (the default) and WORKFLOW_ID is set, the launcher looks in experiment
EXPERIMENT_NAME for runs tagged ``workflow_id=<id>``, newest first, whatever their status
(RUNNING after a SIGKILL, KILLED after a graceful stop, FAILED, FINISHED). Each run's
``checkpoints/model_<N>.pt`` artifacts are candidates, highest N first. A candidate is
downloaded with its ``.sha256`` sidecar, its bytes are checked against the sidecar, and the
backend inspects it; the first good one wins and training resumes from it **in that same run**
(metrics continue at step N), whatever checkpoint mode was requested. A candidate without a
sidecar is skipped: uploads write the sidecar after the file, so its upload never completed
and its bytes cannot be verified. When no candidate is good, training starts as requested,
still in the newest run of the workflow.

The look-up must not silently start over: a second run of the same workflow would fork its
history. So while the tracking store cannot be reached, the look-up is retried (waits of 1 s
doubling to at most 10 s) for AUTO_RESUME_LOOKUP_TIMEOUT_S (default 60 s), then the launcher
exits 75 (retryable) without training. A store that answers with an error instead (no
permission, not an MLflow server) ends the launcher at once with exit 5: a retry would not help.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import ViewType

from training.backends.base import Checkpoint, CheckpointError
from training.checkpoints import CHECKPOINT_FILE, recorded_sha256, sha256_of, sidecar_of
from training.config import RunConfig
from training.store import Backoff, StoreFailure, first_line, retry, unreachable, within

ATTEMPTS_TAG = "attempts"
LOOKUP_MAX_WAIT_S = 10.0  # longest wait between two look-up tries while the store is down


@dataclass(frozen=True)
class ResumePoint:
    run_id: str  # the earlier attempt's run, which this attempt continues
    attempt: int  # this attempt's number: the run's `attempts` tag + 1
    checkpoint: Checkpoint | None  # None: the run holds no usable checkpoint

    @property
    def checkpoint_uri(self) -> str | None:
        if self.checkpoint is None:
            return None
        return f"runs:/{self.run_id}/checkpoints/model_{self.checkpoint.iteration}.pt"


def workflow_to_resume(config: RunConfig) -> str | None:
    """The workflow id to look for, or None: auto-resume off, no WORKFLOW_ID, or a template
    placeholder that was never rendered (it would match other unrendered runs)."""
    if not config.auto_resume or not config.workflow_id:
        return None
    if "{{" in config.workflow_id:
        print(f"auto-resume: WORKFLOW_ID {config.workflow_id!r} was not rendered; not looking "
              "for earlier attempts", flush=True)
        return None
    return config.workflow_id


def find_resume_point(config: RunConfig, workflow_id: str, download_dir: Path,
                      inspect: Callable[[Path], Checkpoint]) -> ResumePoint | None:
    """The run (and checkpoint) of an earlier attempt to continue; None when there is none.
    Raises StoreFailure: retryable (75) when the store stays unreachable for the look-up
    timeout, at once (5) when it answers with an error."""
    client = MlflowClient()

    def say_retrying(error: BaseException, wait_s: float) -> None:
        print(f"auto-resume: the tracking store does not answer ({first_line(error)}); trying "
              f"again in {wait_s:g} s", flush=True)

    try:
        return retry(lambda: _look_up(client, config.experiment_name, workflow_id,
                                      download_dir / "auto-resume", inspect),
                     deadline=within(config.resume_lookup_timeout_s),
                     backoff=Backoff(1.0, LOOKUP_MAX_WAIT_S), only_unreachable=True,
                     on_retry=say_retrying)
    except Exception as error:  # MLflow raises many types
        if unreachable(error):
            what = (f"the tracking store did not answer for {config.resume_lookup_timeout_s:g} s"
                    f"; not starting a second run of workflow {workflow_id}")
        else:
            what = f"the tracking store refused the look-up of workflow {workflow_id}"
        raise StoreFailure(f"auto-resume: {what}", error) from error


def continue_from(config: RunConfig, point: ResumePoint) -> RunConfig:
    """The config of an attempt that resumes point.checkpoint, whatever mode was requested."""
    if config.uses_checkpoint:
        print(f"auto-resume: not using the requested {config.checkpoint_mode} from "
              f"{config.checkpoint_uri}: this workflow already trained; resuming its run",
              flush=True)
    return dataclasses.replace(config, checkpoint_mode="resume",
                               checkpoint_uri=point.checkpoint_uri)


def _look_up(client: MlflowClient, experiment_name: str, workflow_id: str, download_root: Path,
             inspect: Callable[[Path], Checkpoint]) -> ResumePoint | None:
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id],
                              filter_string=f"tags.workflow_id = {_quoted(workflow_id)}",
                              run_view_type=ViewType.ACTIVE_ONLY,
                              order_by=["attributes.start_time DESC"])
    if not runs:
        return None
    candidates = [(run, iteration, verifiable) for run in runs
                  for iteration, verifiable in _stored_checkpoints(client, run.info.run_id)]
    for index, (run, iteration, verifiable) in enumerate(candidates):
        run_id = run.info.run_id
        found = _fetch_and_check(client, run_id, iteration, download_root / run_id, inspect) \
            if verifiable else "no .sha256 sidecar: its upload did not complete, cannot verify"
        if isinstance(found, Checkpoint):
            print(f"auto-resume: workflow {workflow_id}: resuming run {run_id} from "
                  f"model_{iteration}.pt (iteration {iteration})", flush=True)
            return ResumePoint(run_id, _attempt(run), found)
        then = (f"falling back to model_{candidates[index + 1][1]}.pt"
                if index + 1 < len(candidates) else "no earlier checkpoint")
        print(f"auto-resume: skipping model_{iteration}.pt ({found}); {then}", flush=True)
    newest = runs[0]
    print(f"auto-resume: workflow {workflow_id}: run {newest.info.run_id} holds no usable "
          "checkpoint; training as requested in that run", flush=True)
    return ResumePoint(newest.info.run_id, _attempt(newest), None)


def _stored_checkpoints(client: MlflowClient, run_id: str) -> list[tuple[int, bool]]:
    """(iteration, has a sidecar) of each checkpoints/model_<N>.pt, highest N first."""
    names = {Path(f.path).name for f in client.list_artifacts(run_id, "checkpoints")
             if not f.is_dir}
    found = [(int(match.group(1)), sidecar_of(Path(name)).name in names)
             for name in names if (match := CHECKPOINT_FILE.match(name))]
    return sorted(found, reverse=True)


def _fetch_and_check(client: MlflowClient, run_id: str, iteration: int, download_dir: Path,
              inspect: Callable[[Path], Checkpoint]) -> Checkpoint | str:
    """The downloaded, verified and inspected checkpoint, or why it cannot be used."""
    folder = download_dir / f"model_{iteration}"
    name = f"checkpoints/model_{iteration}.pt"
    try:
        local = Path(client.download_artifacts(run_id, name, str(folder)))
        client.download_artifacts(run_id, f"checkpoints/{sidecar_of(Path(name)).name}",
                                  str(folder))
    except Exception as error:  # MLflow raises many types
        client.get_run(run_id)  # the store itself gone: this raises, and the look-up retries
        reason = f"download failed: {first_line(error)}"
    else:
        checked = _check(local, iteration, inspect)
        if isinstance(checked, Checkpoint):
            return checked
        reason = checked
    shutil.rmtree(folder, ignore_errors=True)  # checkpoints can be large: keep only the one used
    return reason


def _check(local: Path, iteration: int,
           inspect: Callable[[Path], Checkpoint]) -> Checkpoint | str:
    """The inspected checkpoint, or why it cannot be used."""
    if sha256_of(local) != recorded_sha256(local):
        return "sha256 does not match its .sha256 sidecar: truncated or corrupt"
    try:
        checkpoint = inspect(local)
    except CheckpointError as error:
        return f"unreadable: {first_line(error)}"
    if checkpoint.iteration != iteration:
        return f"it holds iteration {checkpoint.iteration}, not {iteration}"
    return checkpoint


def _attempt(run: Any) -> int:
    earlier = run.data.tags.get(ATTEMPTS_TAG, "1")
    return (int(earlier) if earlier.isdigit() else 1) + 1


def _quoted(value: str) -> str:
    """A string literal for an MLflow search filter."""
    return f'"{value}"' if "'" in value else f"'{value}'"
