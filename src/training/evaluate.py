"""RUN_MODE=evaluate / export: a checkpoint's policy run for N episodes, or exported, each in a
new MLflow run tagged with the source run and checkpoint.

The steps (the launcher's own modules for each; training.launch enters here after the
dependency check and the app):

1. tracking.connect; checkpoints.fetch_checkpoint; backend.inspect_checkpoint (a URI that
   gives no usable checkpoint: exit 7);
2. the task: --task (one warning line when the checkpoint.json records another), else the
   one the checkpoint's checkpoint.json records;
3. envs.make_env; backend.policy_from_checkpoint (a task whose shapes do not fit: exit 7);
4. one MLflow run ("evaluate-<task>" / "export-<task>"): evaluate runs the episodes
   deterministically (the distribution's mean) and logs ``eval/return_*``/``eval/length_*``
   (mean, std, min, max); export logs policy_export's files under ``policy/``;
5. one summary line; exit 0.

Episodes: at most ``num_envs`` run side by side, each sub-env runs its share of the N in
order (taking the first N to end would favour short episodes), seeded by --seed or the agent
cfg's seed, so a rerun gives the same numbers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.config import ConfigError, RunConfig, default_experiment_name
from training.store import StoreFailure

if TYPE_CHECKING:
    from training.app import App
    from training.backends.base import Backend, Checkpoint, EpisodeEnv
    from training.envs import EnvHandle
    from training.video import VideoSettings

# Vector-env steps an evaluation may take before it gives up (a task without a time limit).
MAX_EVAL_STEPS = 100_000
SOURCE_RUN_TAG = "source_run_id"
SOURCE_CHECKPOINT_TAG = "source_checkpoint_uri"
_RUNS_URI = re.compile(r"^runs:/([0-9a-fA-F]+)/")


class EvaluationFailed(Exception):
    """The episodes did not end within MAX_EVAL_STEPS (exit 5)."""


def run_checkpoint_mode(config: RunConfig, app: App, download_dir: Path) -> int:
    """Evaluate or export config.checkpoint_uri (config.run_mode); the exit code."""
    from training.backends import load_backend
    from training.checkpoints import fetch_checkpoint
    from training.envs import make_env
    from training.tracking import connect

    target = connect(config)
    assert config.checkpoint_uri is not None  # parse_config guarantees it
    path = fetch_checkpoint(config.checkpoint_uri, download_dir)
    backend = load_backend(backend_that_reads(path, config.backend))
    checkpoint = backend.inspect_checkpoint(path)
    source = source_of(config.checkpoint_uri, checkpoint)
    warn_if_another_task(config, source.get("task"))
    config = with_task(config, source.get("task"))
    device = config.training_device()
    num_envs = min(config.num_envs, config.eval_episodes) if config.run_mode == "evaluate" else 1
    videos = evaluation_video_settings(config)
    env_handle = make_env(config.task, backend=backend, num_envs=num_envs, seed=config.seed,
                          device=device, task_modules=config.task_modules,
                          overrides=config.overrides, video=videos)
    try:
        tags = {**run_tags(config, backend, checkpoint, source), **app.versions()}
        if config.run_mode == "export":
            return export(config, backend, checkpoint, env_handle, device, tags, target)
        policy = backend.policy_from_checkpoint(checkpoint, env_handle, device=device)
        with evaluation_run(config, tags, target) as (client, run_id):
            episodes = backend.episode_env(env_handle)
            returns, lengths = run_episodes(episodes, policy.module, config.eval_episodes)
            stats = {**summary("return", returns), **summary("length", lengths),
                     "eval/episodes": float(len(returns))}
            _store(lambda: client.log_batch(run_id, metrics=_metrics(stats)),
                   f"cannot log the evaluation metrics of run {run_id}")
            if videos is not None:
                evaluation_video(config, videos, policy, env_handle, device, client, run_id)
        print(f"evaluated {config.checkpoint_uri} on {config.task}: {len(returns)} episodes, "
              f"return {_spread(stats, 'return', '.1f')}, length "
              f"{_spread(stats, 'length', '.0f')}; run {run_id}", flush=True)
        return 0
    finally:
        env_handle.close()


def backend_that_reads(path: Path, configured: str) -> str:
    """The backend whose format the checkpoint is in (a checkpoint has exactly one that can
    act with it, whatever TRAINING_BACKEND says), else ``configured``, whose inspection then
    says what is wrong with the file."""
    import torch

    from training.backends import BACKENDS
    from training.backends.base import backend_of_format, checkpoint_format_of

    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # unreadable: the configured backend's inspection reports it (exit 7)
        return configured
    found = checkpoint_format_of(saved) if isinstance(saved, dict) else None
    reader = backend_of_format(found) if found is not None else configured
    if reader != configured and reader in BACKENDS:
        print(f"{path.name} is a checkpoint of the {reader} backend: using {reader}",
              file=sys.stderr, flush=True)
        return reader
    return configured


def evaluation_video_settings(config: RunConfig) -> VideoSettings | None:
    """--evaluate --video: one video from the evaluation's first step, in a folder of its own
    under ``<output>/videos/`` (evaluations into one output directory keep their files). The
    interval is beyond any evaluation (MAX_EVAL_STEPS iterations), so an Isaac Lab env's
    recorder starts once, at the first step (2.x RecordVideo's step trigger at step 0; 3.0's
    ``VideoRecorder``, ``isaaclab/envs/utils/video_recorder.py``, at effective step 1 and every
    ``video_interval`` after, and it writes a clip in progress on ``close``)."""
    from training import video

    settings = video.settings_for(config) if config.run_mode == "evaluate" else None
    return None if settings is None else dataclasses.replace(settings, interval=MAX_EVAL_STEPS)


def evaluation_video(config: RunConfig, settings: VideoSettings, policy: Any,
                     env_handle: EnvHandle, device: str, client: Any, run_id: str) -> None:
    """--video: the evaluated policy as a video under ``videos/`` of the evaluation run and in
    ``settings.folder``. gymnasium tasks: ``evaluation.mp4``, rendered on a render env of the
    task (training.video); Isaac Lab tasks: what the evaluated env recorded while it stepped
    (made by make_env with ``settings``, as for training: 2.x RecordVideo, 3.0 the env's own
    recorders), saved by closing the env. Nothing renders here: one line, the evaluation
    stands."""
    import torch

    from training import video

    upload = video.upload_to(client, run_id)
    if env_handle.kind == "isaaclab":
        env_handle.close()  # a recording still in progress is written when the env closes
        video.FolderVideos(env_handle.video_folders, upload,
                           announce="the evaluated policy").close(lambda: 0.0)
        return

    def act(obs: Any) -> Any:
        with torch.inference_mode():
            return policy.module(obs.to(device)).cpu()

    path = settings.folder / "evaluation.mp4"
    try:
        made = video.record_video(act, config.task, path, length=config.video_length,
                                  seed=config.seed or 0)
    except video.RenderUnavailable as error:
        print(f"video: {error}; the evaluation stands without a video", file=sys.stderr,
              flush=True)
        return
    uri = _store(lambda: upload(made.path), f"cannot log the evaluation video of run {run_id}")
    print(f"video: the evaluated policy: {made.path.resolve()} (MLflow artifact {uri})",
          flush=True)


def export(config: RunConfig, backend: Backend, checkpoint: Checkpoint, env_handle: Any,
           device: str, tags: Mapping[str, str], target: Any) -> int:
    """The checkpoint's exports under ``policy/`` of a new run (policy_export)."""
    import tempfile

    from training import policy_export

    with tempfile.TemporaryDirectory() as scratch:
        policy, folder = policy_export.export_checkpoint(
            backend, checkpoint, env_handle, device=device, out_dir=Path(scratch) / "policy",
            task=config.task, source_uri=config.checkpoint_uri)
        with evaluation_run(config, tags, target) as (client, run_id):
            _store(lambda: policy_export.log_exports(client, run_id, folder,
                                                     policy_export.POLICY_ARTIFACT_PATH),
                   f"cannot log the exports of run {run_id}")
    print(f"exported {config.checkpoint_uri} ({config.task}, observations {policy.obs_dim}, "
          f"actions {policy.action_dim}): runs:/{run_id}/{policy_export.POLICY_ARTIFACT_PATH}",
          flush=True)
    return 0


def source_of(uri: str, checkpoint: Checkpoint) -> dict[str, Any]:
    """What is known of where the checkpoint comes from: its checkpoint.json (written next to
    every final checkpoint: task, run_id, ...) when it describes this file, and the run id of
    a runs:/ URI."""
    from training.checkpoints import MANIFEST_NAME

    source: dict[str, Any] = {}
    manifest = checkpoint.path.with_name(MANIFEST_NAME)
    if manifest.is_file():
        with contextlib.suppress(ValueError):
            recorded = json.loads(manifest.read_text())
            if isinstance(recorded, dict) and recorded.get("file") == checkpoint.path.name:
                source.update(recorded)
    match = _RUNS_URI.match(uri)
    if match and not source.get("run_id"):
        source["run_id"] = match.group(1)
    return source


def with_task(config: RunConfig, recorded_task: str | None) -> RunConfig:
    """config with its task: --task/TASK when given, else the checkpoint's."""
    if config.task:
        return config
    if not recorded_task:
        raise ConfigError(f"no task given and {config.checkpoint_uri} records none "
                          "(no checkpoint.json next to it): pass --task")
    experiment = config.experiment_name
    if experiment == default_experiment_name(""):
        experiment = default_experiment_name(recorded_task)
    return dataclasses.replace(config, task=recorded_task, experiment_name=experiment)


def warn_if_another_task(config: RunConfig, recorded_task: str | None) -> None:
    """One stderr line when --task names another task than the checkpoint's: its shapes may
    fit (a variant of the task, on purpose or not), so it goes on."""
    if config.task and recorded_task and config.task != recorded_task:
        print(f"warning: {config.checkpoint_uri} was trained on {recorded_task} (its "
              f"checkpoint.json); {config.run_mode} goes on with --task {config.task}",
              file=sys.stderr, flush=True)


def run_tags(config: RunConfig, backend: Backend, checkpoint: Checkpoint,
             source: Mapping[str, Any]) -> dict[str, str]:
    from training.checkpoints import sha256_of

    return {
        "run_mode": config.run_mode,
        SOURCE_RUN_TAG: str(source.get("run_id") or ""),
        SOURCE_CHECKPOINT_TAG: config.checkpoint_uri or "",
        "source_checkpoint_file": checkpoint.path.name,
        "source_iteration": str(checkpoint.iteration),
        "source_checkpoint_sha256": sha256_of(checkpoint.path),
        "task": config.task,
        "backend": backend.NAME,
        "episodes": str(config.eval_episodes) if config.run_mode == "evaluate" else "",
        "seed": "" if config.seed is None else str(config.seed),
        "workflow_id": config.workflow_id or "",
        **backend.versions(),
    }


@contextlib.contextmanager
def evaluation_run(config: RunConfig, tags: Mapping[str, str],
                   target: Any) -> Iterator[tuple[Any, str]]:
    """A new MLflow run, FINISHED when the block ends normally, FAILED otherwise."""
    from mlflow import MlflowClient
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

    from training import azure, tracking

    client = MlflowClient()
    fitted = azure.fit_tags({key: value for key, value in tags.items() if value}, target.uri)
    run_name = f"{config.run_mode}-{config.task}"

    def create() -> str:
        experiment_id = tracking.experiment_id_for(config.experiment_name, target)
        return client.create_run(experiment_id, tags={**fitted, MLFLOW_RUN_NAME: run_name}
                                 ).info.run_id

    run_id = _store(create, f"cannot start an MLflow run in experiment "
                            f"{config.experiment_name!r} at {tracking.redact(target.uri)}")
    status = "FAILED"
    try:
        yield client, run_id
        status = "FINISHED"
    finally:
        with contextlib.suppress(Exception):
            client.set_terminated(run_id, status)


def _store(action: Any, what: str) -> Any:
    try:
        return action()
    except Exception as error:  # MLflow raises many types: training.store sorts them
        raise StoreFailure(what, error) from error


def run_episodes(env: EpisodeEnv, module: Any, episodes: int
                 ) -> tuple[list[float], list[float]]:
    """(returns, lengths) of ``episodes`` episodes, in sub-env order (see the module doc)."""
    import torch

    count = env.num_envs
    quota = [episodes // count + (1 if index < episodes % count else 0)
             for index in range(count)]
    done_returns: list[list[float]] = [[] for _ in range(count)]
    done_lengths: list[list[float]] = [[] for _ in range(count)]
    observations = env.reset()
    module = module.to(observations.device)
    running_return = torch.zeros(count, dtype=torch.float64)
    running_length = torch.zeros(count, dtype=torch.float64)
    steps = 0
    while any(len(done_returns[index]) < quota[index] for index in range(count)):
        if steps == MAX_EVAL_STEPS:
            finished = sum(map(len, done_returns))
            raise EvaluationFailed(f"only {finished} of {episodes} episodes ended within "
                                   f"{MAX_EVAL_STEPS} steps")
        steps += 1
        with torch.no_grad():
            actions = module(observations)
        observations, rewards, dones = env.step(actions)
        running_return += rewards.detach().double().cpu()
        running_length += 1
        for index in torch.nonzero(dones.cpu()).view(-1).tolist():
            if len(done_returns[index]) < quota[index]:
                done_returns[index].append(float(running_return[index]))
                done_lengths[index].append(float(running_length[index]))
            running_return[index] = running_length[index] = 0.0
    return ([value for values in done_returns for value in values],
            [value for values in done_lengths for value in values])


def summary(name: str, values: list[float]) -> dict[str, float]:
    """eval/<name>_mean, _std (population), _min, _max."""
    mean = sum(values) / len(values)
    std = math.sqrt(sum((value - mean) ** 2 for value in values) / len(values))
    return {f"eval/{name}_mean": mean, f"eval/{name}_std": std,
            f"eval/{name}_min": min(values), f"eval/{name}_max": max(values)}


def _spread(stats: Mapping[str, float], name: str, fmt: str) -> str:
    def value(kind: str) -> str:
        return format(stats[f"eval/{name}_{kind}"], fmt)

    return f"{value('mean')} ± {value('std')} (min {value('min')}, max {value('max')})"


def _metrics(stats: Mapping[str, float]) -> list[Any]:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(key, value, now, 0) for key, value in stats.items()]
