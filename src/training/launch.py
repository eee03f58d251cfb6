"""python -m training.launch: train one task, tracked in MLflow, and exit with a code that
tells the truth.

The steps, one module each:

1. config: flags + environment -> RunConfig (stdlib only); distributed: with several ranks
   this process becomes the node's torchrun supervisor and stops here;
2. stop: our SIGTERM/SIGINT handlers, for the whole run;
3. deps: install what is missing, before any heavy import;
4. app: the Isaac Sim app, inside an Isaac Lab image (it re-installs our handlers);
5. smoke: optional checks; tracking: where to log;
6. resume: an earlier attempt of this workflow to continue; checkpoints: the one to start from;
7. envs: the task, wrapped for the backend chosen by name (backends); on the CPU, one torch
   thread (:func:`one_torch_thread_on_cpu`);
8. session: one MLflow run around training (rank 0's; other ranks train in step): metrics
   and uploads while the backend trains, the final checkpoint, registration; it ends the run
   on every path;
9. app.exit: the process ends with the launcher's code, whatever Isaac Sim would do.

RUN_MODE=evaluate / export replaces steps 5 to 8 with training.evaluate's (a checkpoint's
policy run for N episodes, or exported, in a new MLflow run).

Every error a user can cause maps to its exit code in one table, :data:`EXIT_CODES` (README):
0 trained or nothing left to do, 2 bad input, 3 missing dependency, 4 smoke test failed,
5 training failed or the store refused, 6 registration failed, 7 checkpoint unusable,
75 retryable (stopped by a signal, or the store did not answer).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import traceback
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training import distributed
from training.app import NO_APP, App, start_app
from training.config import ConfigError, RunConfig, parse_config
from training.deps import ensure_dependencies
from training.stop import GracefulStop, StopRequested

if TYPE_CHECKING:
    from training.backends.base import Backend, Checkpoint
    from training.resume import ResumePoint

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_MISSING_DEPENDENCY = 3
EXIT_SMOKE_FAILED = 4
EXIT_TRAINING_FAILED = 5
EXIT_REGISTRATION_FAILED = 6
EXIT_CHECKPOINT_UNUSABLE = 7
EXIT_RETRYABLE = 75  # EX_TEMPFAIL: the workflow template reschedules the task

# The environment the launcher sets before the heavy imports, each unless the user set it.
ENVIRONMENT_DEFAULTS = {
    # MLflow's HTTP client retries a refused request for minutes by default; our upload and
    # metric threads retry with their own backoff, so each single request should fail fast.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    # rsl-rl imports GitPython, which fails at import without a git binary unless told.
    "GIT_PYTHON_REFRESH": "quiet",
    # MLflow 3 sends usage telemetry from a thread of the training process, to a public host
    # that a cluster pod may not reach, at a cost per MLflow call: off unless the user says.
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # onnxruntime 1.29+ (the export checks policy.onnx in it) sends usage events from Linux
    # too: a device id under ~/.cache/Microsoft/DeveloperTools/.onnxruntime and uploads to
    # mobile.events.data.microsoft.com. Set before onnxruntime starts, this turns all of it
    # off (no id, no cache, no connection; onnxruntime PR 27379).
    "ORT_DISABLE_TELEMETRY": "1",
}


# Errors a user can cause -> the README's exit code; (module, class, code). Looked up in
# sys.modules, not imported: an error of a module that was never imported cannot have been
# raised, and the table must work before the heavy packages are there (exit 3).
EXIT_CODES = (
    ("training.config", "ConfigError", EXIT_BAD_INPUT),
    ("training.envs", "TaskError", EXIT_BAD_INPUT),
    ("training.deps", "MissingDependencyError", EXIT_MISSING_DEPENDENCY),
    ("training.smoke", "SmokeFailed", EXIT_SMOKE_FAILED),
    ("training.tracking", "TrackingError", EXIT_TRAINING_FAILED),
    ("training.session", "TrainingFailed", EXIT_TRAINING_FAILED),
    ("training.registry", "RegistrationError", EXIT_REGISTRATION_FAILED),
    ("training.checkpoints", "CheckpointUnavailable", EXIT_CHECKPOINT_UNUSABLE),
    ("training.backends.base", "CheckpointError", EXIT_CHECKPOINT_UNUSABLE),
    ("training.distributed", "PeerLost", EXIT_RETRYABLE),
    ("training.evaluate", "EvaluationFailed", EXIT_TRAINING_FAILED),
    ("training.policy_export", "ExportFailed", EXIT_TRAINING_FAILED),
)


def exit_code_for(error: BaseException) -> int | None:
    """The README's exit code for an error a user can cause; None for a bug (exit 5 with its
    traceback). The one place that maps errors to codes; a store failure carries its own
    (75 when the store did not answer, 5 when it refused: training.store)."""
    store = sys.modules.get("training.store")
    if store is not None and isinstance(error, store.StoreFailure):
        return error.exit_code
    for module_name, class_name, code in EXIT_CODES:
        kind = getattr(sys.modules.get(module_name), class_name, None)
        if kind is not None and isinstance(error, kind):
            return code
    return None


def fail(code: int, message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    distributed.keep_lines_whole()  # several ranks print to one stdout
    code, app = launch(sys.argv[1:] if argv is None else argv)
    distributed.leave(code)  # a rank of several: report the code, wait for rank 0 after a stop
    # last: with an Isaac Sim app it ends the process with `code`; so does a rank
    return distributed.end_process(app.exit(code))


def launch(argv: Sequence[str]) -> tuple[int, App]:
    """Everything but the final exit: (exit code, the app to close last)."""
    try:
        config = parse_config(argv, os.environ)
    except ConfigError as error:
        return fail(EXIT_BAD_INPUT, str(error)), NO_APP
    except SystemExit as exit_request:  # argparse: --help (0) or a usage error (2)
        return int(exit_request.code or 0), NO_APP
    node_code = distributed.supervise(config, argv)  # several ranks: torchrun runs them
    if node_code is not None:
        return node_code, NO_APP
    stop = GracefulStop(config.stop_grace_s, exit_code=EXIT_RETRYABLE).install()
    app = NO_APP
    download_dir = config.output_dir / "downloads" / uuid.uuid4().hex  # this launch's own
    try:
        installed = ensure_dependencies(os.environ, azure=config.uses_azure_ml,
                                        backend=config.backend, video=config.video)
        if installed:
            print(f"installed missing packages: {' '.join(installed)}", flush=True)
        for name, value in ENVIRONMENT_DEFAULTS.items():
            os.environ.setdefault(name, value)
        config = distributed.for_this_rank(config)  # cuda:<local rank>, or cpu
        app = start_app(config, reinstall_signals=stop.install)
        return run(config, stop, app, download_dir), app
    except StopRequested:  # a signal before training started: nothing to save
        print("stopped before training started; exiting 75 (retryable)", flush=True)
        return EXIT_RETRYABLE, app
    except Exception as error:
        code = exit_code_for(error)
        if code is None:  # not a user error: show where, but still exit by the README
            traceback.print_exc()
            return fail(EXIT_TRAINING_FAILED, f"{type(error).__name__}: {error}"), app
        return fail(code, str(error)), app
    finally:
        shutil.rmtree(download_dir, ignore_errors=True)  # checkpoints fetched to start from


def run(config: RunConfig, stop: GracefulStop, app: App, download_dir: Path) -> int:
    """Steps 5 to 8; heavy imports start here."""
    if config.run_mode != "train":  # evaluate or export a checkpoint: its own short list
        from training.evaluate import run_checkpoint_mode

        return run_checkpoint_mode(config, app, download_dir)
    from training.backends import load_backend
    from training.envs import make_env
    from training.session import finish_earlier_run, open_run
    from training.tracking import connect
    from training.video import settings_for

    backend = load_backend(config.backend)
    rank = distributed.join(config, stop)  # one rank of several: only rank 0 talks to MLflow
    if config.run_smoke_test and rank.is_writer:
        smoke_test(config)
    target = connect(config) if rank.is_writer else None
    resumed, decided, init = distributed.shared_by_writer(
        rank, lambda: starting_point(config, backend, download_dir), download_dir)
    # rank 0's decision of what to start from; every rank keeps its own device and directory
    config = dataclasses.replace(config, checkpoint_mode=decided.checkpoint_mode,
                                 checkpoint_uri=decided.checkpoint_uri)
    if not rank.is_writer:
        resumed = None  # the run is rank 0's; this rank needs only the checkpoint
    if nothing_left_to_do(config, init, config.max_iterations):  # before a slow env start
        return finish_earlier_run(config, backend, resumed) if continued(resumed) else EXIT_OK
    device = config.training_device()
    one_torch_thread_on_cpu(device, app, os.environ)
    env_handle = make_env(config.task, backend=backend, num_envs=config.num_envs,
                          seed=config.seed, device=device, task_modules=config.task_modules,
                          overrides=config.overrides, video=settings_for(config))
    try:
        max_iterations = config.max_iterations or env_handle.max_iterations
        if nothing_left_to_do(config, init, max_iterations):  # the task's default count
            return (finish_earlier_run(config, backend, resumed, env_handle)  # Isaac Sim: one env
                    if continued(resumed) else EXIT_OK)
        save_interval = config.save_interval or env_handle.save_interval
        settings = run_settings(config, env_handle, max_iterations, save_interval,
                                {**backend.versions(), **app.versions(), **rank.params()})
        with open_run(rank, config, backend, stop, env_handle, device=device,
                      max_iterations=max_iterations, save_interval=save_interval,
                      settings=settings, resumed=resumed, target=target) as tracked:
            return tracked.finish(tracked.train(init), init)
    finally:
        env_handle.close()


def one_torch_thread_on_cpu(device: str, app: App, environ: Mapping[str, str]) -> None:
    """Training a gymnasium task on the CPU: torch computes with one thread unless the user
    set OMP_NUM_THREADS. The policies are small MLPs on batches of a few thousand samples,
    where torch's default (a thread per core) gains nothing and its idle OpenMP workers spin,
    a core each, taking the CPU the env, the uploads and the video renderer need
    (bench/RESULTS.md, fifth video look: one thread trained as fast or faster, median 0.93 with
    16 envs, as fast with 256). With an Isaac Sim app, or on a GPU, torch keeps its default."""
    if device == "cpu" and app is NO_APP and not environ.get("OMP_NUM_THREADS"):
        import torch

        torch.set_num_threads(1)


def smoke_test(config: RunConfig) -> None:
    from training.smoke import SmokeFailed, format_table, run_smoke_test

    passed, results = run_smoke_test(config)
    print(format_table(results), flush=True)
    if not passed:
        raise SmokeFailed("smoke test failed; not training")


def starting_point(config: RunConfig, backend: Backend, download_dir: Path
                   ) -> tuple[ResumePoint | None, RunConfig, Checkpoint | None]:
    """(an earlier attempt to continue, the config to train with, the checkpoint to start
    from): auto-resume wins over the requested checkpoint mode."""
    from training import resume
    from training.checkpoints import fetch_checkpoint

    workflow_id = resume.workflow_to_resume(config)
    resumed = None
    if workflow_id is not None:
        resumed = resume.find_resume_point(config, workflow_id, download_dir,
                                           backend.inspect_checkpoint)
    if resumed is not None and resumed.checkpoint is not None:
        return resumed, resume.continue_from(config, resumed), resumed.checkpoint
    if config.checkpoint_mode == "from-scratch" and config.checkpoint_uri:
        print(f"warning: checkpoint mode from-scratch: ignoring checkpoint {config.checkpoint_uri}",
              file=sys.stderr, flush=True)
    if not config.uses_checkpoint:
        return resumed, config, None
    assert config.checkpoint_uri is not None  # parse_config guarantees it
    init = backend.inspect_checkpoint(fetch_checkpoint(config.checkpoint_uri, download_dir))
    print(f"{config.checkpoint_mode} from {config.checkpoint_uri}: {init.path.name}, "
          f"iteration {init.iteration}, format {init.format}", flush=True)
    return resumed, config, init


def continued(resumed: ResumePoint | None) -> bool:
    """Whether this attempt continues an earlier attempt's checkpoint (see starting_point)."""
    return resumed is not None and resumed.checkpoint is not None


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


def run_settings(config: RunConfig, env_handle: Any, max_iterations: int, save_interval: int,
                 versions: Mapping[str, str]) -> dict[str, str]:
    """What a run is: logged both as params (searchable) and tags (the later auto-resume by
    workflow id looks runs up by tag)."""
    import torch

    from training.overrides import as_params
    from training.sweep_report import sweep_tags

    return {
        **as_params(config.overrides),  # override.agent.<path>: what the user changed
        **sweep_tags(os.environ),  # sweep.id/.task/.value.<key>: SWEEP_ID/_TASK/_VALUES
        "task": config.task,
        "num_envs": str(getattr(env_handle.env, "num_envs", config.num_envs)),
        "max_iterations": str(max_iterations),
        "save_interval": str(save_interval),
        "seed": str(env_handle.seed),
        "torch_threads": str(torch.get_num_threads()),  # one_torch_thread_on_cpu
        "backend": config.backend,
        **versions,
        "env_kind": str(env_handle.kind),
        "checkpoint_mode": config.checkpoint_mode,
        "checkpoint_uri": config.checkpoint_uri if config.uses_checkpoint else "",
        "payload_sha256": config.payload_sha256 or "",
        "workflow_id": config.workflow_id or "",
        "image": config.image or "",
    }


if __name__ == "__main__":
    sys.exit(main())
