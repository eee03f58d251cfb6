"""One owner of a run's end: the MLflow run, its metric logger and its checkpoint uploader.

:class:`TrackedRun` is a context manager around training. Entering it starts (or continues)
the MLflow run, logs its params and cfg files and starts the two background senders; leaving
it, on every path (trained, stopped by a signal, a crash, an error raised anywhere, a
StopRequested during start-up), closes both senders within their deadlines and ends the run:
FINISHED only when everything succeeded, KILLED when a signal stopped it (a later attempt
resumes it), FAILED otherwise. If the stop grace runs out first, the watchdog's last words
end the run KILLED before the process exits (training.stop).

Errors it raises carry their exit code (see training.launch): StoreFailure (75 or 5),
CheckpointError (7), RegistrationError (6), TrainingFailed (5).
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training import azure, checkpoints, distributed, policy_export, tracking, video
from training.backends.base import Checkpoint, TrainHooks, TrainResult
from training.config import RunConfig
from training.resume import ATTEMPTS_TAG, ResumePoint
from training.stop import GracefulStop, StopRequested
from training.store import StoreFailure, first_line, within

if TYPE_CHECKING:
    from training.backends.base import Backend
    from training.envs import EnvHandle

REGISTERED_TAG = "registered_model"  # "<model>/<version>", once the final is registered

# How long the end of a run waits for metrics (for uploads: config.upload_timeout_s).
METRICS_FLUSH_TIMEOUT_S = 60.0
# How long a checkpoint upload waits for the metrics before it, per try.
METRICS_BEFORE_CHECKPOINT_S = 10.0
# How long ending the run may retry an unreachable store.
END_RUN_TIMEOUT_S = 30.0
# After a stop signal, uploads may use the grace up to this many seconds before its end and
# metrics up to 1 s before it; what is left is for ending the run KILLED.
UPLOAD_RESERVE_S = 3.0
METRICS_RESERVE_S = 1.0


class TrainingFailed(Exception):
    """Training itself failed (exit 5); the message is one line."""


class TrackedRun:
    def __init__(self, config: RunConfig, backend: Backend, stop: GracefulStop,
                 env_handle: EnvHandle, *, device: str, max_iterations: int,
                 save_interval: int, settings: Mapping[str, str],
                 resumed: ResumePoint | None, target: tracking.TrackingTarget) -> None:
        self.config, self.backend, self.stop = config, backend, stop
        self.env_handle, self.device = env_handle, device
        self.max_iterations, self.save_interval = max_iterations, save_interval
        self.settings, self.resumed, self.target = settings, resumed, target
        self.run_id = ""
        self.log_dir = Path()
        self.succeeded = False
        self._metrics: tracking.MetricLogger | None = None
        self._uploader: checkpoints.CheckpointUploader | None = None
        self._videos: video.NoVideos = video.NO_VIDEOS
        self._ended = False

    # --- start ---------------------------------------------------------------------------

    def __enter__(self) -> TrackedRun:
        import mlflow
        from mlflow import MlflowClient

        self.client = MlflowClient()
        config, resumed = self.config, self.resumed
        tags = azure.fit_tags({**self.settings,
                               ATTEMPTS_TAG: str(resumed.attempt if resumed is not None else 1)},
                              self.target.uri)
        try:
            experiment_id = tracking.experiment_id_for(config.experiment_name, self.target)
            self.run_id = tracking.start_run(config, experiment_id, tags=tags,
                                             continue_run_id=resumed.run_id if resumed else None)
        except Exception as error:  # nothing was started
            raise StoreFailure(f"cannot start an MLflow run in experiment "
                               f"{config.experiment_name!r} at {tracking.redact(self.target.uri)}",
                               error) from error
        except StopRequested:  # a signal inside start_run: end what it may have started
            with contextlib.suppress(Exception):
                if mlflow.active_run() is not None:
                    mlflow.end_run(status="KILLED")
            raise
        try:
            self.stop.set_last_words(lambda: self._end("KILLED"))
            self._log_settings()
            self.log_dir = tracking.log_dir_for(config, self.run_id)
            self._metrics = tracking.MetricLogger(
                self.client, self.run_id,
                batch_size=azure.limits_for(self.target.uri).max_metrics_per_batch)
            self._uploader = checkpoints.CheckpointUploader(
                self.client, self.run_id, ready=self._metrics_handled_before)
            self._videos = video.training_videos(
                config, self.env_handle, client=self.client, run_id=self.run_id,
                log_dir=self.log_dir, max_iterations=self.max_iterations)
        except BaseException:
            self._close()
            raise
        return self

    def _log_settings(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        try:
            files = cfg_files(self.env_handle)
            if self.resumed is not None:  # like params, a continued run keeps the first
                # attempt's files (Azure ML's blob store refuses to overwrite an artifact)
                folders = {str(Path(path).parent) for path in files}
                stored = {f.path for folder in folders
                          for f in self.client.list_artifacts(self.run_id, folder)}
                files = {path: text for path, text in files.items() if path not in stored}
            # Independent requests, sent together: a round trip to the store each, not in turn.
            with ThreadPoolExecutor(max_workers=1 + len(files)) as pool:
                requests = [pool.submit(tracking.log_params_once, self.client, self.run_id,
                                        self.settings, continued=self.resumed is not None)]
                requests += [pool.submit(self.client.log_text, self.run_id, text, path)
                             for path, text in files.items()]
            for request in requests:
                request.result()  # raises the first error
        except Exception as error:  # MLflow raises many types
            raise StoreFailure(f"cannot log the params of run {self.run_id}", error) from error

    def _metrics_handled_before(self, iteration: int) -> bool:
        """model_<iteration>.pt may go to the store once the metrics of steps < iteration are
        stored or counted lost (a run killed then resumes with no gap before it)."""
        assert self._metrics is not None
        return self._metrics.wait_handled_through(iteration - 1, METRICS_BEFORE_CHECKPOINT_S)

    # --- train ---------------------------------------------------------------------------

    def train(self, init: Checkpoint | None) -> TrainResult:
        assert self._metrics is not None and self._uploader is not None
        metrics, progress = self._metrics, ProgressPrinter(self.max_iterations, self.backend)
        videos = self._videos

        def on_iteration(iteration: int, values: dict[str, float]) -> None:
            metrics.log(iteration, values)
            progress.show(iteration, values)
            videos.after_iteration(iteration)

        hooks = TrainHooks(on_iteration=on_iteration, on_checkpoint=self._uploader.submit,
                           should_stop=self.stop.should_stop, policy_ready=videos.policy_ready)
        print(f"run {self.run_id}: {self.config.task}, {self.settings['num_envs']} envs, "
              f"{self.config.backend}, {self.config.checkpoint_mode}, up to iteration "
              f"{self.max_iterations}, logs in {self.log_dir}", flush=True)
        try:
            return train_backend(self, init, hooks)
        finally:
            progress.close()  # its lines come before whatever is printed next

    # --- finish --------------------------------------------------------------------------

    def finish(self, result: TrainResult, init: Checkpoint | None) -> int:
        """Store the end of training; the exit code (0, or 75 after a stop signal)."""
        if result.stopped_early:
            return self._finish_after_stop(result)
        report = self._close_uploads(self.config.upload_timeout_s)
        final = checkpoints.highest_iteration_checkpoint(self.log_dir) or result.final_checkpoint
        if final is None:
            raise TrainingFailed("training wrote no checkpoint")
        final_info = self.backend.inspect_checkpoint(final)
        deadline = self.stop.deadline_for(self.config.upload_timeout_s, UPLOAD_RESERVE_S)
        try:
            # Like every checkpoint, the final one goes only after the metrics before it.
            self._wait_for_metrics(final_info.iteration - 1, deadline)
            store_final(self.client, self.config, self.backend, self.run_id, final_info,
                        from_checkpoint=init, deadline=deadline)
        except Exception as error:
            # Retryable when the store did not answer: on a cluster the file goes with the
            # pod, and a rescheduled attempt resumes from the last stored checkpoint.
            raise StoreFailure(f"the final checkpoint could not be stored ({first_line(error)}); "
                               f"it is kept at {final}", error) from error
        self._report_metrics()
        print(f"training done at iteration {result.final_iteration}; {report.summary()}",
              flush=True)
        announce_resume_uri(self.client, self.run_id)
        policy_export.export_final(self.client, self.config, self.backend, self.env_handle,
                                   self.run_id, final_info, device=self.device)  # never raises
        # The last video has been rendering since the last iteration, alongside the uploads and
        # the export: only now is it waited for.
        self._videos.close(deadline)
        if self.config.register_checkpoint:
            register_final(self.client, self.config, self.run_id, self.settings, final_info)
        self.succeeded = True
        return 0

    def _wait_for_metrics(self, step: int, deadline: Callable[[], float]) -> None:
        """Until every metric of steps <= step is stored or counted lost; TimeoutError (the
        store did not answer) when deadline() passes first."""
        assert self._metrics is not None
        while not self._metrics.wait_handled_through(step, 0.5):
            if time.monotonic() >= deadline():
                raise TimeoutError("the metrics before it did not reach the store in time")

    def _finish_after_stop(self, result: TrainResult) -> int:
        """The backend saved at the iteration boundary and returned: store that checkpoint (and
        any other pending one) and flush metrics within the grace."""
        report = self._close_uploads(float("inf"))
        self._report_metrics()
        iteration, name = result.final_iteration, f"model_{result.final_iteration}.pt"
        resumed_from = self.resumed.checkpoint if self.resumed is not None else None
        if iteration in report.uploaded or (resumed_from and resumed_from.iteration == iteration):
            outcome = f"{name} stored"
        elif result.final_checkpoint is None or iteration == result.start_iteration:
            outcome = "nothing new to save"
        elif iteration in report.in_flight:
            outcome = (f"{name} still uploading when the grace ended (may reach the store), "
                       f"kept at {result.final_checkpoint}")
        else:
            reason = report.errors.get(iteration) or \
                f"the stop grace of {self.stop.grace_s:g} s ran out"
            outcome = f"{name} NOT stored ({reason}), kept at {result.final_checkpoint}"
        print(f"checkpoint uploads: {report.summary()}", flush=True)
        print(f"stopped at iteration {iteration}: {outcome}; exiting {self.stop.exit_code} "
              "(retryable)", flush=True)
        return self.stop.exit_code

    def _close_uploads(self, timeout_s: float) -> checkpoints.UploadReport:
        assert self._uploader is not None
        report = self._uploader.close(self.stop.deadline_for(timeout_s, UPLOAD_RESERVE_S))
        self._uploader = None
        return report

    def _report_metrics(self) -> None:
        if self._metrics is None:
            return
        metrics, self._metrics = self._metrics, None
        lost = metrics.close(self.stop.deadline_for(METRICS_FLUSH_TIMEOUT_S, METRICS_RESERVE_S))
        if lost:
            print(f"warning: {lost} metric values are not in the store ({metrics.summary()})",
                  flush=True)

    # --- end -----------------------------------------------------------------------------

    def __exit__(self, *exc_info: object) -> None:
        self._close()

    def _close(self) -> None:
        """Close what is still open and end the run; called on every path."""
        self._videos.abort()
        if self._uploader is not None:
            report = self._close_uploads(self.config.upload_timeout_s)  # keep what was saved
            if report.not_uploaded or report.in_flight:
                print(f"checkpoint uploads: {report.summary()}", flush=True)
        self._report_metrics()
        stopped = self.stop.requested or distributed.peer_was_lost()  # a retry continues it
        status = "FINISHED" if self.succeeded else "KILLED" if stopped else "FAILED"
        if not self._end(status):
            print(f"warning: could not mark run {self.run_id} as ended in MLflow",
                  file=sys.stderr, flush=True)
        self.stop.set_last_words(None)

    def _end(self, status: str) -> bool:
        if self._ended:
            return True
        self._ended = tracking.end_run(self.run_id, status,
                                       self.stop.deadline_for(END_RUN_TIMEOUT_S))
        return self._ended


def train_backend(run: TrackedRun | RankRun, init: Checkpoint | None,
                  hooks: TrainHooks) -> TrainResult:
    """The backend's training with ``run``'s settings; errors as the launcher reports them."""
    from training.backends.base import CheckpointError

    try:
        with run.stop.training():
            return run.backend.train(run.env_handle, log_dir=run.log_dir, device=run.device,
                                     init=init, max_iterations=run.max_iterations,
                                     save_interval=run.save_interval,
                                     mode=run.config.checkpoint_mode if init is not None
                                     else None, hooks=hooks)
    except CheckpointError:
        raise
    except Exception as error:  # a crash in the library or the env: show where
        distributed.raise_if_peer_lost(error)  # another rank failed: 75, not a crash
        traceback.print_exc()
        raise TrainingFailed(f"training failed: {first_line(error)}") from error


def open_run(rank: distributed.Rank, config: RunConfig, backend: Backend,
             stop: GracefulStop, env_handle: EnvHandle, **run: Any) -> TrackedRun | RankRun:
    """The run's owner on the job's writer (global rank 0); on the other ranks a
    :class:`RankRun`, which trains in step and writes nothing (training.distributed)."""
    if rank.is_writer:
        return TrackedRun(config, backend, stop, env_handle, **run)
    return RankRun(config, backend, stop, env_handle, rank=rank, device=run["device"],
                   max_iterations=run["max_iterations"], save_interval=run["save_interval"])


class RankRun:
    """Training on a rank other than 0: same hooks' stop agreement, no MLflow, no files kept
    (rsl-rl writes checkpoints on rank 0 only). Exit 0 when trained, 75 when stopped."""

    def __init__(self, config: RunConfig, backend: Backend, stop: GracefulStop,
                 env_handle: EnvHandle, *, rank: distributed.Rank, device: str,
                 max_iterations: int, save_interval: int) -> None:
        self.config, self.backend, self.stop, self.env_handle = config, backend, stop, env_handle
        self.device, self.max_iterations, self.save_interval = device, max_iterations, \
            save_interval
        self.log_dir = config.output_dir / f"rank-{rank.global_rank}"
        # what makes this rank's share its own: a device, seed and directory of its own
        print(f"rank {rank.global_rank}: training on {device}, seed {env_handle.seed}, "
              f"log dir {self.log_dir}", flush=True)

    def __enter__(self) -> RankRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def train(self, init: Checkpoint | None) -> TrainResult:
        return train_backend(self, init, TrainHooks(should_stop=self.stop.should_stop))

    def finish(self, result: TrainResult, init: Checkpoint | None) -> int:
        if result.stopped_early:
            print(f"stopped at iteration {result.final_iteration} with the other ranks; rank 0 "
                  f"saves; exiting {self.stop.exit_code} (retryable)", flush=True)
            return self.stop.exit_code
        print(f"training done at iteration {result.final_iteration}", flush=True)
        return 0


def cfg_files(env_handle: EnvHandle) -> dict[str, str]:
    """The resolved cfgs as files for the run's artifacts (as Isaac Lab's train scripts dump
    params/env.yaml and params/agent.yaml into their log dir)."""
    if env_handle.cfg_files:
        return dict(env_handle.cfg_files)
    import yaml

    agent_cfg = env_handle.agent_cfg
    if not isinstance(agent_cfg, Mapping):
        return {}
    return {"params/agent.yaml": yaml.safe_dump(dict(agent_cfg), sort_keys=False)}


def finish_earlier_run(config: RunConfig, backend: Backend, resumed: ResumePoint,
                       env_handle: EnvHandle | None = None) -> int:
    """Nothing left to train. A continued run (its process died after the last iteration, or a
    finished task was rescheduled) still gets what a finished run has: checkpoints/final, the
    policy's exports (when the earlier attempt made none; on ``env_handle``, else on an env of
    one sub-env made for them), the registration asked for, and status FINISHED (FAILED if
    registration fails)."""
    from mlflow import MlflowClient

    from training.registry import RegistrationError

    assert resumed.checkpoint is not None
    client, run_id, final = MlflowClient(), resumed.run_id, resumed.checkpoint
    try:
        client.set_tag(run_id, ATTEMPTS_TAG, str(resumed.attempt))
        if not client.list_artifacts(run_id, checkpoints.FINAL_ARTIFACT_PATH):
            store_final(client, config, backend, run_id, final, from_checkpoint=final,
                        deadline=within(config.upload_timeout_s))
            print(f"the earlier attempt had not stored {checkpoints.FINAL_ARTIFACT_PATH}: "
                  f"stored {final.path.name} there", flush=True)
        run = client.get_run(run_id)
        announce_resume_uri(client, run_id)
        if policy_export.EXPORT_TAG not in run.data.tags:  # it ended before its export
            print("the earlier attempt ended before exporting the policy: exporting it now",
                  flush=True)
            export_earlier_final(client, config, backend, run_id, final, env_handle)
        status = "FINISHED"
        try:
            if config.register_checkpoint and REGISTERED_TAG not in run.data.tags:
                register_final(client, config, run_id, run.data.tags, final)
        except RegistrationError:
            status = "FAILED"
            raise
        finally:
            if run.info.status != status:
                client.set_terminated(run_id, status)
    except (RegistrationError, StoreFailure):
        raise
    except Exception as error:  # the store went away (75) or refused (5)
        raise StoreFailure(f"cannot finish run {run_id}", error) from error
    return 0


def export_earlier_final(client: Any, config: RunConfig, backend: Backend, run_id: str,
                         final: Checkpoint, env_handle: EnvHandle | None) -> None:
    """policy_export.export_final for a run whose training an earlier attempt finished; an env
    that cannot be made is a failed export like any other (a warning, the run stands)."""
    from training.envs import make_env

    device = config.training_device()
    made = None
    if env_handle is None:
        try:
            # One sub-env: the export only needs the task's spaces (and its term names).
            env_handle = made = make_env(config.task, backend=backend, num_envs=1,
                                         seed=config.seed, device=device,
                                         task_modules=config.task_modules,
                                         overrides=config.overrides)
        except Exception as error:  # the task's own errors: many types
            policy_export.export_failed(client, run_id,
                                        f"cannot make the task's env: {first_line(error)}")
            return
    try:
        policy_export.export_final(client, config, backend, env_handle, run_id, final,
                                   device=device)  # never raises
    finally:
        if made is not None:
            made.close()


def register_final(client: Any, config: RunConfig, run_id: str, run_tags: Mapping[str, str],
                   final: Checkpoint) -> None:
    """checkpoints/final as the next version of model config.register_checkpoint; raises
    RegistrationError (exit 6) when the registry refuses."""
    from training import registry

    assert config.register_checkpoint is not None
    tags = {key: run_tags.get(key, "") for key in
            ("task", "backend", "checkpoint_mode", "workflow_id")}
    tags |= {"iteration": str(final.iteration), "sha256": checkpoints.sha256_of(final.path)}
    try:
        version = registry.register_final_checkpoint(config.register_checkpoint, run_id, tags)
    except registry.RegistrationError as error:
        raise registry.RegistrationError(
            f"{error}; the checkpoint is kept at {checkpoints.resume_uri(run_id)}") from error
    try:
        client.set_tag(run_id, REGISTERED_TAG, f"{config.register_checkpoint}/{version}")
    except Exception as error:  # MLflow raises many types
        raise StoreFailure(f"cannot tag run {run_id} with its registered model", error) from error
    print(f"registered {checkpoints.resume_uri(run_id)} as model "
          f"{config.register_checkpoint!r} version {version}", flush=True)


def store_final(client: Any, config: RunConfig, backend: Backend, run_id: str,
                final: Checkpoint, from_checkpoint: Checkpoint | None, deadline: Any) -> None:
    """checkpoint.json next to the final checkpoint, both to checkpoints/final; raises the
    store's last error."""
    manifest = checkpoints.write_manifest(
        final.path,
        file=final.path.name,
        iteration=final.iteration,
        format=final.format,
        sha256=checkpoints.sha256_of(final.path),
        task=config.task,
        backend=config.backend,
        **backend.versions(),
        checkpoint_mode=config.checkpoint_mode,
        source_checkpoint_uri=config.checkpoint_uri if from_checkpoint is not None else None,
        run_id=run_id,
        workflow_id=config.workflow_id,
    )
    checkpoints.upload_final(client, run_id, final.path, manifest, deadline)


def announce_resume_uri(client: Any, run_id: str) -> None:
    """Tag the run with the URI to resume it from, and print the closing lines."""
    uri = checkpoints.resume_uri(run_id)
    try:
        client.set_tag(run_id, "resume_uri", uri)
    except Exception as error:  # MLflow raises many types
        raise StoreFailure(f"cannot tag run {run_id} with its resume URI", error) from error
    print(f"run id: {run_id}\nresume with: --checkpoint-uri {uri} --checkpoint-mode resume",
          flush=True)


class ProgressPrinter:
    """One console line per iteration: `it 12/150 | reward 123.4 | 15,234 steps/s | ETA 0:00:31`.
    The ETA comes from the wall time of the iterations seen so far in this process.

    show() runs on the training thread and only queues the line; a thread of its own writes
    it, so a slow or full stdout pipe (a log collector that lags) never holds training up."""

    CLOSE_TIMEOUT_S = 5.0  # how long close() waits for queued lines to be written

    def __init__(self, max_iterations: int, backend: Backend) -> None:
        self._max_iterations = max_iterations
        self._reward, self._fps = backend.REWARD_METRIC, backend.FPS_METRIC
        self._first: tuple[int, float] | None = None
        # skrl reports the reward only in iterations where episodes ended: show the last one.
        self._last_reward: float | None = None
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write, name="progress-lines", daemon=True)
        self._writer.start()

    def show(self, iteration: int, values: Mapping[str, float]) -> None:
        now = time.monotonic()
        done = iteration + 1  # iteration is the index of the one just finished
        if self._first is None:
            self._first = (iteration, now)
        parts = [f"it {done}/{self._max_iterations}"]
        if self._reward in values:
            self._last_reward = float(values[self._reward])
        if self._last_reward is not None:
            parts.append(f"reward {self._last_reward:.1f}")
        if self._fps and self._fps in values:
            parts.append(f"{float(values[self._fps]):,.0f} steps/s")
        first_iteration, first_time = self._first
        if iteration > first_iteration:
            per_iteration = (now - first_time) / (iteration - first_iteration)
            remaining = max(0, self._max_iterations - done) * per_iteration
            parts.append(f"ETA {timedelta(seconds=round(remaining))}")
        self._lines.put(" | ".join(parts))

    def close(self) -> None:
        """Write what is queued (waiting at most CLOSE_TIMEOUT_S) and stop the writer."""
        self._lines.put(None)
        self._writer.join(self.CLOSE_TIMEOUT_S)

    def _write(self) -> None:
        while (line := self._lines.get()) is not None:
            with contextlib.suppress(ValueError, OSError):  # stdout closed under us
                print(line, flush=True)
