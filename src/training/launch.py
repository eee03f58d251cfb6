"""python -m training.launch: train one task with RSL-RL, tracked in MLflow.

The flow, one module per step: config (flags + environment) -> stop (SIGTERM/SIGINT handlers)
-> deps (install what is missing, before any heavy import) -> smoke (optional checks) ->
tracking (where to log) -> resume (an earlier attempt of this workflow to continue) ->
checkpoints (fetch the starting checkpoint) -> envs (the task) -> backends.rsl_rl (train,
calling our hooks for metrics, uploads and stop requests) -> checkpoints (final upload) ->
registry (optional) -> exit code.

Exit codes (README): 0 trained or nothing left to do, 2 bad input, 3 missing dependency,
4 smoke test failed, 5 training failed, 6 registration failed, 7 checkpoint unusable,
75 retryable (stopped by a signal after saving, or the store unreachable for auto-resume).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from training.config import ConfigError, RunConfig, parse_config
from training.deps import MissingDependencyError, ensure_dependencies
from training.stop import GracefulStop, StopRequested

if TYPE_CHECKING:
    from training.backends.base import Checkpoint
    from training.resume import ResumePoint

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_MISSING_DEPENDENCY = 3
EXIT_SMOKE_FAILED = 4
EXIT_TRAINING_FAILED = 5
EXIT_REGISTRATION_FAILED = 6
EXIT_CHECKPOINT_UNUSABLE = 7
EXIT_RETRYABLE = 75  # EX_TEMPFAIL: the workflow template reschedules the task

REGISTERED_TAG = "registered_model"  # "<model>/<version>", once the final is registered

# How long the end of a run waits for metrics (for uploads: config.upload_timeout_s).
METRICS_FLUSH_TIMEOUT_S = 60.0
# How long a checkpoint upload waits for the metrics of the iterations before it.
METRICS_BEFORE_CHECKPOINT_S = 10.0

# MLflow's HTTP client retries a refused request for minutes by default; our upload and metric
# threads retry with their own backoff, so each single request should fail fast instead.
MLFLOW_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    # rsl-rl imports GitPython, which fails at import without a git binary unless told.
    "GIT_PYTHON_REFRESH": "quiet",
}


def fail(code: int, message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def fail_on_store(error: BaseException, message: str) -> int:
    """A tracking-store failure: 75 (retryable) when the store did not answer, which the
    task's next attempt may not meet; 5 when it answered with a refusal."""
    from training.tracking import store_unreachable

    if store_unreachable(error):
        return fail(EXIT_RETRYABLE, f"{message}; the store did not answer: exiting 75 "
                    "(retryable)")
    return fail(EXIT_TRAINING_FAILED, message)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse_config(sys.argv[1:] if argv is None else argv, os.environ)
    except ConfigError as error:
        return fail(EXIT_BAD_INPUT, str(error))
    except SystemExit as exit_request:  # argparse: --help (0) or a usage error (2)
        return int(exit_request.code or 0)
    stop = GracefulStop(config.stop_grace_s, exit_code=EXIT_RETRYABLE).install()
    try:
        return prepare_and_run(config, stop)
    except StopRequested:  # a signal before training started: nothing to save
        _end_active_run_killed()
        print("stopped before training started; exiting 75 (retryable)", flush=True)
        return EXIT_RETRYABLE


def prepare_and_run(config: RunConfig, stop: GracefulStop) -> int:
    try:
        installed = ensure_dependencies(os.environ, azure=config.azure_workspace is not None)
    except MissingDependencyError as error:
        return fail(EXIT_MISSING_DEPENDENCY, str(error))
    if installed:
        print(f"installed missing packages: {' '.join(installed)}", flush=True)
    for name, value in MLFLOW_HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    try:
        return run(config, stop)
    except Exception as error:  # not a user error: show where, but still exit by the README
        traceback.print_exc()
        return fail(EXIT_TRAINING_FAILED, f"{type(error).__name__}: {error}")


def run(config: RunConfig, stop: GracefulStop) -> int:
    """Everything after the dependency check; heavy imports start here."""
    from training import resume
    from training.backends import load_backend
    from training.backends.base import CheckpointError
    from training.checkpoints import CheckpointUnavailable, fetch_checkpoint
    from training.envs import TaskError, make_env
    from training.smoke import format_table, run_smoke_test
    from training.tracking import TrackingError, resolve_tracking_target, use_tracking_target

    if config.run_smoke_test:
        passed, results = run_smoke_test(config)
        print(format_table(results), flush=True)
        if not passed:
            return fail(EXIT_SMOKE_FAILED, "smoke test failed; not training")
    try:
        target = resolve_tracking_target(config)
    except TrackingError as error:
        return fail(EXIT_TRAINING_FAILED, str(error))
    use_tracking_target(target)
    print(f"tracking: {target.uri} (from {target.source})", flush=True)

    backend = load_backend(config.backend)
    resumed = None  # an earlier attempt of this workflow, continued in its own run
    workflow_id = resume.workflow_to_resume(config)
    if workflow_id is not None:
        try:
            resumed = resume.find_resume_point(config, workflow_id, backend.inspect_checkpoint)
        except resume.StoreUnreachable as error:
            return fail(EXIT_RETRYABLE, str(error))
        except resume.StoreRefused as error:
            return fail(EXIT_TRAINING_FAILED, f"auto-resume: the tracking store at {target.uri} "
                        f"refused the look-up of workflow {workflow_id}: {error}")

    init = None
    if resumed is not None and resumed.checkpoint is not None:
        config, init = resume.continue_from(config, resumed), resumed.checkpoint
    elif config.checkpoint_mode == "from-scratch" and config.checkpoint_uri:
        print(f"warning: checkpoint mode from-scratch: ignoring checkpoint {config.checkpoint_uri}",
              file=sys.stderr, flush=True)
    elif config.uses_checkpoint:
        assert config.checkpoint_uri is not None  # parse_config guarantees it
        download_dir = config.output_dir / "downloads" / uuid.uuid4().hex
        try:
            init = backend.inspect_checkpoint(fetch_checkpoint(config.checkpoint_uri, download_dir))
        except (CheckpointUnavailable, CheckpointError) as error:
            return fail(EXIT_CHECKPOINT_UNUSABLE, str(error))
        print(f"{config.checkpoint_mode} from {config.checkpoint_uri}: {init.path.name}, "
              f"iteration {init.iteration}, format {init.format}", flush=True)

    if nothing_left_to_do(config, init, config.max_iterations):  # before a slow env start
        return finish_completed_run(config, resumed)
    device = config.device or _default_device()
    try:
        env_handle = make_env(config.task, backend=backend, num_envs=config.num_envs,
                              seed=config.seed, device=device)
    except TaskError as error:
        return fail(EXIT_BAD_INPUT, str(error))
    try:
        max_iterations = config.max_iterations or env_handle.max_iterations
        save_interval = config.save_interval or env_handle.save_interval
        if nothing_left_to_do(config, init, max_iterations):  # the task's default count
            return finish_completed_run(config, resumed)
        return train_tracked(config, target, backend, env_handle, max_iterations, save_interval,
                             init, device, resumed, stop)
    finally:
        env_handle.close()


def nothing_left_to_do(config: RunConfig, init: Checkpoint | None,
                       max_iterations: int | None) -> bool:
    """A resume whose checkpoint already holds max_iterations: say so (exit 0; no new run)."""
    if config.checkpoint_mode != "resume" or init is None or max_iterations is None:
        return False
    if init.iteration < max_iterations:
        return False
    print(f"nothing to do: the checkpoint is already at iteration {init.iteration} of "
          f"{max_iterations}", flush=True)
    return True


def train_tracked(config: RunConfig, target: Any, backend: Any, env_handle: Any,
                  max_iterations: int, save_interval: int, init: Checkpoint | None, device: str,
                  resumed: ResumePoint | None, stop: GracefulStop) -> int:
    """One MLflow run around backend training (a new one, or the earlier attempt's when
    resumed); it ends FINISHED only when everything did, KILLED when a signal stopped it."""
    from mlflow import MlflowClient

    from training import checkpoints, tracking
    from training.backends.base import CheckpointError, TrainHooks
    from training.resume import ATTEMPTS_TAG

    client = MlflowClient()
    settings = run_settings(config, env_handle, max_iterations, save_interval, backend.versions())
    tags = settings | {ATTEMPTS_TAG: str(resumed.attempt if resumed is not None else 1)}
    try:
        experiment_id = tracking.experiment_id_for(config.experiment_name, target)
        run_id = tracking.start_run(config, experiment_id, tags=tags,
                                    continue_run_id=resumed.run_id if resumed else None)
    except Exception as error:  # unreachable server, no permission, ...: nothing was started
        return fail_on_store(error, f"cannot start an MLflow run in experiment "
                             f"{config.experiment_name!r} at {target.uri}: "
                             f"{tracking.first_line(error)}")
    succeeded = False
    try:
        tracking.log_params_once(client, run_id, settings)
        log_dir = tracking.log_dir_for(config, run_id)
        print(f"run {run_id}: {config.task}, {settings['num_envs']} envs, {config.checkpoint_mode}"
              f", up to iteration {max_iterations}, logs in {log_dir}", flush=True)
        metrics = tracking.MetricLogger(client, run_id)
        # model_<N>.pt goes to the store only after the metrics of steps < N (bounded wait):
        # a run killed once a checkpoint is stored resumes with no metric gap before it.
        uploader = checkpoints.CheckpointUploader(
            client, run_id, before_upload=lambda iteration: metrics.wait_sent_through(
                iteration - 1, METRICS_BEFORE_CHECKPOINT_S))
        progress = ProgressPrinter(max_iterations)

        def on_iteration(iteration: int, values: dict[str, float]) -> None:
            metrics.log(iteration, values)
            progress.show(iteration, values)

        hooks = TrainHooks(on_iteration=on_iteration, on_checkpoint=uploader.submit,
                           should_stop=stop.should_stop)
        try:
            with stop.training():
                result = backend.train(env_handle, log_dir=log_dir, device=device,
                                       max_iterations=max_iterations,
                                       save_interval=save_interval, init=init,
                                       mode=config.checkpoint_mode, hooks=hooks)
        except CheckpointError as error:
            uploader.close(0)
            metrics.close(METRICS_FLUSH_TIMEOUT_S)
            return fail(EXIT_CHECKPOINT_UNUSABLE, str(error))
        except Exception as error:
            traceback.print_exc()
            uploader.close(config.upload_timeout_s)  # keep what was saved before the crash
            metrics.close(METRICS_FLUSH_TIMEOUT_S)
            return fail(EXIT_TRAINING_FAILED, f"training failed: {tracking.first_line(error)}")
        if result.stopped_early:
            resumed_from = resumed.checkpoint if resumed is not None else None
            return stop.finish_after_save(uploader, metrics, result, resumed_from)

        # The final upload waits for the queue: checkpoints/final must not race its own file.
        upload_report = uploader.close(config.upload_timeout_s)
        final = checkpoints.highest_iteration_checkpoint(log_dir) or result.final_checkpoint
        if final is None:
            metrics.close(METRICS_FLUSH_TIMEOUT_S)
            return fail(EXIT_TRAINING_FAILED, "training wrote no checkpoint")
        final_info = backend.inspect_checkpoint(final)
        final_error = store_final(client, config, backend, run_id, final_info,
                                  from_checkpoint=init)
        lost_metrics = metrics.close(METRICS_FLUSH_TIMEOUT_S)
        print(f"training done at iteration {result.final_iteration}; "
              f"{upload_report.summary()}", flush=True)
        if lost_metrics:
            print(f"warning: {lost_metrics} metric values could not be logged "
                  f"({metrics.last_error})", flush=True)
        if final_error is not None:
            # Retryable when the store did not answer: on a cluster the file goes with the
            # pod, and a rescheduled attempt resumes from the last stored checkpoint.
            return fail_on_store(final_error, f"the final checkpoint could not be stored "
                                 f"({tracking.first_line(final_error)}); it is kept at {final}")
        announce_resume_uri(client, run_id)
        if config.register_checkpoint:
            exit_code = register_final(client, config, run_id, settings, final_info)
            if exit_code != EXIT_OK:
                return exit_code
        succeeded = True
        return EXIT_OK
    finally:
        status = "FINISHED" if succeeded else "KILLED" if stop.requested else "FAILED"
        if not tracking.end_run(run_id, status):
            print(f"warning: could not mark run {run_id} as ended in MLflow", file=sys.stderr,
                  flush=True)


def finish_completed_run(config: RunConfig, resumed: ResumePoint | None) -> int:
    """Nothing left to train. A continued run (its process died after the last iteration, or a
    finished task was rescheduled) still gets what a finished run has: checkpoints/final, the
    registration asked for, and status FINISHED (FAILED if registration fails)."""
    if resumed is None or resumed.checkpoint is None:
        return EXIT_OK
    from mlflow import MlflowClient

    from training.backends import load_backend
    from training.checkpoints import FINAL_ARTIFACT_PATH
    from training.resume import ATTEMPTS_TAG
    from training.tracking import first_line

    client, run_id, final = MlflowClient(), resumed.run_id, resumed.checkpoint
    try:
        client.set_tag(run_id, ATTEMPTS_TAG, str(resumed.attempt))
        if not client.list_artifacts(run_id, FINAL_ARTIFACT_PATH):
            error = store_final(client, config, load_backend(config.backend), run_id, final,
                                from_checkpoint=final)
            if error is not None:
                raise error
            print(f"the earlier attempt had not stored {FINAL_ARTIFACT_PATH}: stored "
                  f"{final.path.name} there", flush=True)
        run = client.get_run(run_id)
        announce_resume_uri(client, run_id)
        exit_code = EXIT_OK
        if config.register_checkpoint and REGISTERED_TAG not in run.data.tags:
            exit_code = register_final(client, config, run_id, run.data.tags, final)
        status = "FINISHED" if exit_code == EXIT_OK else "FAILED"
        if run.info.status != status:
            client.set_terminated(run_id, status)
    except Exception as error:  # the store went away: the next attempt finishes the run
        return fail(EXIT_RETRYABLE, f"cannot finish run {run_id}: {first_line(error)}")
    return exit_code


def register_final(client: Any, config: RunConfig, run_id: str, run_tags: Mapping[str, str],
                   final: Checkpoint) -> int:
    """checkpoints/final as the next version of model config.register_checkpoint; the exit
    code (6 when the registry refuses)."""
    from training import registry
    from training.checkpoints import resume_uri, sha256_of

    assert config.register_checkpoint is not None
    tags = {key: run_tags.get(key, "") for key in
            ("task", "backend", "checkpoint_mode", "workflow_id")}
    tags |= {"iteration": str(final.iteration), "sha256": sha256_of(final.path)}
    try:
        version = registry.register_final_checkpoint(config.register_checkpoint, run_id, tags)
    except registry.RegistrationError as error:
        return fail(EXIT_REGISTRATION_FAILED,
                    f"{error}; the checkpoint is kept at {resume_uri(run_id)}")
    client.set_tag(run_id, REGISTERED_TAG, f"{config.register_checkpoint}/{version}")
    print(f"registered {resume_uri(run_id)} as model {config.register_checkpoint!r} version "
          f"{version}", flush=True)
    return EXIT_OK


def store_final(client: Any, config: RunConfig, backend: Any, run_id: str, final: Checkpoint,
                from_checkpoint: Checkpoint | None) -> Exception | None:
    """checkpoint.json next to the final checkpoint, both to checkpoints/final; None on
    success, else the last error."""
    from training import checkpoints

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
    return checkpoints.upload_final(client, run_id, final.path, manifest, config.upload_timeout_s)


def announce_resume_uri(client: Any, run_id: str) -> None:
    """Tag the run with the URI to resume it from, and print the closing lines."""
    from training.checkpoints import resume_uri

    uri = resume_uri(run_id)
    client.set_tag(run_id, "resume_uri", uri)
    print(f"run id: {run_id}\nresume with: --checkpoint-uri {uri} --checkpoint-mode resume",
          flush=True)


def run_settings(config: RunConfig, env_handle: Any, max_iterations: int, save_interval: int,
                 versions: Mapping[str, str]) -> dict[str, str]:
    """What a run is: logged both as params (searchable) and tags (the later auto-resume by
    workflow id looks runs up by tag)."""
    return {
        "task": config.task,
        "num_envs": str(getattr(env_handle.env, "num_envs", config.num_envs)),
        "max_iterations": str(max_iterations),
        "save_interval": str(save_interval),
        "seed": str(env_handle.seed),
        "backend": config.backend,
        **versions,
        "env_kind": str(getattr(env_handle, "kind", "")),
        "checkpoint_mode": config.checkpoint_mode,
        "checkpoint_uri": config.checkpoint_uri if config.uses_checkpoint else "",
        "payload_sha256": config.payload_sha256 or "",
        "workflow_id": config.workflow_id or "",
        "image": config.image or "",
    }


class ProgressPrinter:
    """One console line per iteration: `it 12/150 | reward 123.4 | 15,234 steps/s | ETA 0:00:31`.
    The ETA comes from the wall time of the iterations seen so far in this process."""

    def __init__(self, max_iterations: int) -> None:
        self._max_iterations = max_iterations
        self._first: tuple[int, float] | None = None

    def show(self, iteration: int, values: Mapping[str, float]) -> None:
        now = time.monotonic()
        done = iteration + 1  # iteration is the index of the one just finished
        if self._first is None:
            self._first = (iteration, now)
        parts = [f"it {done}/{self._max_iterations}"]
        if "Train/mean_reward" in values:
            parts.append(f"reward {float(values['Train/mean_reward']):.1f}")
        if "Perf/total_fps" in values:
            parts.append(f"{float(values['Perf/total_fps']):,.0f} steps/s")
        first_iteration, first_time = self._first
        if iteration > first_iteration:
            per_iteration = (now - first_time) / (iteration - first_iteration)
            remaining = max(0, self._max_iterations - done) * per_iteration
            parts.append(f"ETA {timedelta(seconds=round(remaining))}")
        print(" | ".join(parts), flush=True)


def _end_active_run_killed() -> None:
    """A signal during MLflow's start_run may leave it active: end it KILLED, not FINISHED
    (MLflow's exit hook would), so the run reads as interrupted; the next attempt resumes it."""
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None and mlflow.active_run() is not None:
        with contextlib.suppress(Exception):
            mlflow.end_run(status="KILLED")


def _default_device() -> str:
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"



if __name__ == "__main__":
    sys.exit(main())
