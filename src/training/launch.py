"""python -m training.launch: train one task with RSL-RL, tracked in MLflow.

The flow, one module per step: config (flags + environment) -> deps (install what is missing,
before any heavy import) -> smoke (optional checks) -> tracking (where to log) -> checkpoints
(fetch the starting checkpoint) -> envs (the task) -> backends.rsl_rl (train, calling our hooks
for metrics and uploads) -> checkpoints (final upload) -> registry (optional) -> exit code.

Exit codes (README): 0 trained or nothing left to do, 2 bad input, 3 missing dependency,
4 smoke test failed, 5 training failed, 6 registration failed, 7 checkpoint unusable.
"""

from __future__ import annotations

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

if TYPE_CHECKING:
    from training.backends.base import Checkpoint

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_MISSING_DEPENDENCY = 3
EXIT_SMOKE_FAILED = 4
EXIT_TRAINING_FAILED = 5
EXIT_REGISTRATION_FAILED = 6
EXIT_CHECKPOINT_UNUSABLE = 7

# How long the end of a run waits for checkpoint uploads (queue + final), then for metrics.
UPLOAD_TIMEOUT_S = float(os.environ.get("CHECKPOINT_UPLOAD_TIMEOUT_S") or 300)
METRICS_FLUSH_TIMEOUT_S = 60.0

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


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse_config(sys.argv[1:] if argv is None else argv, os.environ)
    except ConfigError as error:
        return fail(EXIT_BAD_INPUT, str(error))
    except SystemExit as exit_request:  # argparse: --help (0) or a usage error (2)
        return int(exit_request.code or 0)
    try:
        installed = ensure_dependencies(os.environ, azure=config.azure_workspace is not None)
    except MissingDependencyError as error:
        return fail(EXIT_MISSING_DEPENDENCY, str(error))
    if installed:
        print(f"installed missing packages: {' '.join(installed)}", flush=True)
    for name, value in MLFLOW_HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    try:
        return run(config)
    except Exception as error:  # not a user error: show where, but still exit by the README
        traceback.print_exc()
        return fail(EXIT_TRAINING_FAILED, f"{type(error).__name__}: {error}")


def run(config: RunConfig) -> int:
    """Everything after the dependency check; heavy imports start here."""
    from training.backends import rsl_rl
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

    init = None
    if config.checkpoint_mode == "from-scratch" and config.checkpoint_uri:
        print(f"warning: checkpoint mode from-scratch: ignoring checkpoint {config.checkpoint_uri}",
              file=sys.stderr, flush=True)
    if config.uses_checkpoint:
        assert config.checkpoint_uri is not None  # parse_config guarantees it
        download_dir = config.output_dir / "downloads" / uuid.uuid4().hex
        try:
            init = rsl_rl.inspect_checkpoint(fetch_checkpoint(config.checkpoint_uri, download_dir))
        except (CheckpointUnavailable, CheckpointError) as error:
            return fail(EXIT_CHECKPOINT_UNUSABLE, str(error))
        print(f"{config.checkpoint_mode} from {config.checkpoint_uri}: {init.path.name}, "
              f"iteration {init.iteration}, format {init.format}", flush=True)

    if nothing_left_to_do(config, init, config.max_iterations):  # before a slow env start
        return EXIT_OK
    device = config.device or _default_device()
    try:
        env_handle = make_env(config.task, num_envs=config.num_envs, seed=config.seed,
                              device=device, headless=config.headless)
    except TaskError as error:
        return fail(EXIT_BAD_INPUT, str(error))
    try:
        agent_cfg = dict(env_handle.agent_cfg)
        max_iterations = config.max_iterations or int(agent_cfg["max_iterations"])
        agent_cfg["max_iterations"] = max_iterations
        if config.save_interval is not None:
            agent_cfg["save_interval"] = config.save_interval
        if nothing_left_to_do(config, init, max_iterations):  # the task's default count
            return EXIT_OK
        return train_tracked(config, target, env_handle, agent_cfg, max_iterations, init, device)
    finally:
        env_handle.close()


def nothing_left_to_do(config: RunConfig, init: Checkpoint | None,
                       max_iterations: int | None) -> bool:
    """A resume whose checkpoint already holds max_iterations: say so (exit 0, no run)."""
    if config.checkpoint_mode != "resume" or init is None or max_iterations is None:
        return False
    if init.iteration < max_iterations:
        return False
    print(f"nothing to do: the checkpoint is already at iteration {init.iteration} of "
          f"{max_iterations}", flush=True)
    return True


def train_tracked(config: RunConfig, target: Any, env_handle: Any, agent_cfg: dict[str, Any],
                  max_iterations: int, init: Checkpoint | None, device: str) -> int:
    """One MLflow run around backend training; it ends FINISHED only when everything did."""
    from mlflow import MlflowClient

    from training import checkpoints, registry, tracking
    from training.backends import rsl_rl
    from training.backends.base import CheckpointError, TrainHooks

    client = MlflowClient()
    settings = run_settings(config, env_handle, agent_cfg, max_iterations, rsl_rl.RSL_RL_VERSION)
    try:
        experiment_id = tracking.experiment_id_for(config.experiment_name, target)
        run_id = tracking.start_run(config, experiment_id, tags=settings)
    except Exception as error:  # unreachable server, no permission, ...: nothing was started
        return fail(EXIT_TRAINING_FAILED, f"cannot start an MLflow run in experiment "
                    f"{config.experiment_name!r} at {target.uri}: {tracking.first_line(error)}")
    succeeded = False
    try:
        client.log_batch(run_id, params=_params(settings))
        log_dir = tracking.log_dir_for(config, run_id)
        print(f"run {run_id}: {config.task}, {settings['num_envs']} envs, {config.checkpoint_mode}"
              f", up to iteration {max_iterations}, logs in {log_dir}", flush=True)
        metrics = tracking.MetricLogger(client, run_id)
        uploader = checkpoints.CheckpointUploader(client, run_id)
        progress = ProgressPrinter(max_iterations)

        def on_iteration(iteration: int, values: dict[str, float]) -> None:
            metrics.log(iteration, values)
            progress.show(iteration, values)

        hooks = TrainHooks(on_iteration=on_iteration, on_checkpoint=uploader.submit)
        try:
            result = rsl_rl.train(env_handle, agent_cfg, log_dir=log_dir, device=device,
                                  max_iterations=max_iterations, init=init,
                                  mode=config.checkpoint_mode, hooks=hooks)
        except CheckpointError as error:
            uploader.close(0)
            metrics.close(METRICS_FLUSH_TIMEOUT_S)
            return fail(EXIT_CHECKPOINT_UNUSABLE, str(error))
        except Exception as error:
            traceback.print_exc()
            uploader.close(UPLOAD_TIMEOUT_S)  # keep what was saved before the crash
            metrics.close(METRICS_FLUSH_TIMEOUT_S)
            return fail(EXIT_TRAINING_FAILED, f"training failed: {tracking.first_line(error)}")

        # The final upload waits for the queue: checkpoints/final must not race its own file.
        upload_report = uploader.close(UPLOAD_TIMEOUT_S)
        final = checkpoints.highest_iteration_checkpoint(log_dir) or result.final_checkpoint
        if final is None:
            metrics.close(METRICS_FLUSH_TIMEOUT_S)
            return fail(EXIT_TRAINING_FAILED, "training wrote no checkpoint")
        final_info = rsl_rl.inspect_checkpoint(final)
        manifest = checkpoints.write_manifest(
            final,
            file=final.name,
            iteration=final_info.iteration,
            format=final_info.format,
            sha256=checkpoints.sha256_of(final),
            task=config.task,
            backend=config.backend,
            rsl_rl_version=rsl_rl.RSL_RL_VERSION,
            checkpoint_mode=config.checkpoint_mode,
            source_checkpoint_uri=config.checkpoint_uri if init is not None else None,
            run_id=run_id,
            workflow_id=config.workflow_id,
        )
        final_error = checkpoints.upload_final(client, run_id, final, manifest, UPLOAD_TIMEOUT_S)
        lost_metrics = metrics.close(METRICS_FLUSH_TIMEOUT_S)
        print(f"training done at iteration {result.final_iteration}; "
              f"{upload_report.summary()}", flush=True)
        if lost_metrics:
            print(f"warning: {lost_metrics} metric values could not be logged "
                  f"({metrics.last_error})", flush=True)
        if final_error is not None:
            return fail(EXIT_TRAINING_FAILED, f"the final checkpoint could not be stored "
                        f"({final_error}); it is kept at {final}")
        uri = checkpoints.resume_uri(run_id)
        client.set_tag(run_id, "resume_uri", uri)
        print(f"run id: {run_id}\nresume with: --checkpoint-uri {uri} --checkpoint-mode resume",
              flush=True)

        if config.register_checkpoint:
            registration_tags = {key: settings[key] for key in
                                 ("task", "backend", "checkpoint_mode", "workflow_id")}
            registration_tags |= {"iteration": str(final_info.iteration),
                                  "sha256": checkpoints.sha256_of(final)}
            try:
                version = registry.register_final_checkpoint(
                    config.register_checkpoint, run_id, registration_tags)
            except registry.RegistrationError as error:
                return fail(EXIT_REGISTRATION_FAILED,
                            f"{error}; the checkpoint is kept at {uri}")
            client.set_tag(run_id, "registered_model", f"{config.register_checkpoint}/{version}")
            print(f"registered {uri} as model {config.register_checkpoint!r} version {version}",
                  flush=True)
        succeeded = True
        return EXIT_OK
    finally:
        if not tracking.end_run(run_id, succeeded):
            print(f"warning: could not mark run {run_id} as ended in MLflow", file=sys.stderr,
                  flush=True)


def run_settings(config: RunConfig, env_handle: Any, agent_cfg: Mapping[str, Any],
                 max_iterations: int, rsl_rl_version: str) -> dict[str, str]:
    """What a run is: logged both as params (searchable) and tags (the later auto-resume by
    workflow id looks runs up by tag)."""
    seed = config.seed if config.seed is not None else agent_cfg.get("seed")
    return {
        "task": config.task,
        "num_envs": str(getattr(env_handle.env, "num_envs", config.num_envs)),
        "max_iterations": str(max_iterations),
        "save_interval": str(agent_cfg.get("save_interval", "")),
        "seed": "" if seed is None else str(seed),
        "backend": config.backend,
        "rsl_rl_version": rsl_rl_version,
        "env_kind": str(getattr(env_handle, "kind", "")),
        "checkpoint_mode": config.checkpoint_mode,
        "checkpoint_uri": config.checkpoint_uri if config.uses_checkpoint else "",
        "payload_sha256": config.payload_sha256 or "",
        "workflow_id": config.workflow_id or "",
        "image": config.image or "",
    }


def _params(settings: Mapping[str, str]) -> list:
    from mlflow.entities import Param

    return [Param(key, value) for key, value in settings.items() if value]


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


def _default_device() -> str:
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"



if __name__ == "__main__":
    sys.exit(main())
