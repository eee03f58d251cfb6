"""Every difference between the Isaac Lab releases (2.2, 2.3, 3.0) in how a task is resolved.

- env and agent cfg: 2.x ``parse_env_cfg`` + ``load_cfg_from_registry``; 3.0
  ``resolve_task_config`` (which resolves ``PresetCfg`` presets; ``load_cfg_from_registry``
  returns them unresolved, without a ``seed``);
- older rsl-rl cfg fields: 3.0 ``handle_deprecated_rsl_rl_cfg``; 2.x has no such step;
- ``init_at_random_ep_len``: 3.0 the agent cfg's field; 2.x not in the cfg, True (their
  train scripts pass True);
- videos (``--video``): 2.x train scripts make the env with ``render_mode="rgb_array"`` and
  wrap it with gymnasium's ``RecordVideo``; 3.0's configure the env's own recorders
  (``env_cfg.video_recorders``, ``isaaclab_rl.entrypoints.common.apply_video_recording``).

The same on all three: a ``DirectMARLEnv`` is made single-agent with
``isaaclab.envs.multi_agent_to_single_agent`` before the library wrapper (upstream's train
scripts do so; ``RslRlVecEnvWrapper`` raises otherwise); a distillation agent cfg
(``class_name`` "DistillationRunner" / algorithm "Distillation") needs a teacher checkpoint,
which this launcher does not take: refused before anything is built (TaskError, exit 2); the
resolved cfgs are written as upstream writes ``params/env.yaml`` and ``params/agent.yaml``
(``isaaclab.utils.io.dump_yaml``). Upstream places: 3.0
``isaaclab_rl/entrypoints/backends/train_rsl_rl.py``; 2.x
``scripts/reinforcement_learning/rsl_rl/train.py``.

Runs only where ``isaaclab`` is importable (an Isaac Lab image, or tests with the wheels).
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.envs import TaskError

if TYPE_CHECKING:
    from training.video import VideoSettings

PARAMS_FILES = ("params/env.yaml", "params/agent.yaml")


@functools.cache
def release() -> str:
    from training.app import isaaclab_release

    return isaaclab_release()


def task_cfgs(task: str, entry_point: str, *, device: str, num_envs: int) -> tuple[Any, Any]:
    """The task's env cfg (device and num_envs applied) and agent cfg, resolved."""
    if release() == "3.0":
        from isaaclab_tasks.utils import resolve_task_config

        # overrides=[]: without it Hydra reads sys.argv, i.e. the launcher's own flags.
        env_cfg, agent_cfg = resolve_task_config(task, entry_point, overrides=[])
        env_cfg.sim.device = device  # what parse_env_cfg(device=, num_envs=) sets
        env_cfg.scene.num_envs = num_envs
        return env_cfg, agent_cfg
    from isaaclab_tasks.utils import parse_env_cfg
    from isaaclab_tasks.utils.parse_cfg import load_cfg_from_registry

    env_cfg = parse_env_cfg(task, device=device, num_envs=num_envs)
    return env_cfg, load_cfg_from_registry(task, entry_point)


def adapt_rsl_rl_cfg(agent_cfg: Any, rsl_rl_version: str) -> Any:
    """3.0 adapts cfg fields of older rsl-rl schemas to the installed rsl-rl (its train entry
    point does so); 2.x has no such step (``handle_deprecated_rsl_rl_cfg`` does not exist)."""
    if release() != "3.0":
        return agent_cfg
    from isaaclab_rl.rsl_rl import handle_deprecated_rsl_rl_cfg

    return handle_deprecated_rsl_rl_cfg(agent_cfg, rsl_rl_version)


def init_at_random_ep_len(agent_cfg: Any) -> bool:
    """3.0: the agent cfg's field (False for some tasks); 2.x train scripts pass True."""
    return bool(getattr(agent_cfg, "init_at_random_ep_len", True))


def refuse_distillation(task: str, agent_cfg: Any) -> None:
    """A distillation cfg trains a student from a teacher checkpoint (upstream: "Distillation
    training requires --checkpoint"); this launcher's CHECKPOINT_URI means warm-start/resume
    of the same policy, so such a task is refused before anything is built."""
    runner = getattr(agent_cfg, "class_name", "OnPolicyRunner")
    algorithm = getattr(getattr(agent_cfg, "algorithm", None), "class_name", "")
    if runner == "DistillationRunner" or algorithm == "Distillation":
        raise TaskError(f"{task} is a distillation task (a student trained from a teacher "
                        "checkpoint), which this launcher does not run: train its PPO task")


def make_task_env(task: str, env_cfg: Any, video: VideoSettings | None, *,
                  every_steps: int) -> tuple[Any, tuple[Path, ...]]:
    """``gymnasium.make`` of the task, single-agent, recording a video of ``video.length``
    steps every ``every_steps`` env steps when ``video`` is given, as the release's train
    scripts do with ``--video`` (there ``--video_interval`` counts env steps too); also the
    folders the videos appear in.

    2.x, ``scripts/reinforcement_learning/rsl_rl/train.py`` and ``skrl/train.py``::

        env = gym.make(args_cli.task, cfg=env_cfg, render_mode="rgb_array" if args_cli.video
                       else None)
        ...  # (skrl: multi_agent_to_single_agent for a DirectMARLEnv)
        if args_cli.video:
            video_kwargs = {"video_folder": os.path.join(log_dir, "videos", "train"),
                            "step_trigger": lambda step: step % args_cli.video_interval == 0,
                            "video_length": args_cli.video_length, "disable_logger": True}
            env = gym.wrappers.RecordVideo(env, **video_kwargs)
        env = RslRlVecEnvWrapper(env, ...)  # / SkrlVecEnvWrapper

    here with training.video's RecordVideo (same triggers, our H.264 writer instead of
    moviepy). 3.0 (``isaaclab_rl/entrypoints/backends/train_rsl_rl.py`` / ``train_skrl.py``)
    calls ``apply_video_recording(env_cfg, log_dir, args_cli)`` before ``gym.make(task,
    cfg=env_cfg)``: recorders inside the env write ``<log_dir>/videos/train/*.mp4`` (kept
    where the env cfg declares its own): :func:`_configure_env_recorders`."""
    import gymnasium

    if video is None:
        return single_agent(gymnasium.make(task, cfg=env_cfg)), ()
    if release() == "3.0":
        folders = _configure_env_recorders(env_cfg, video, every_steps)
        return single_agent(gymnasium.make(task, cfg=env_cfg)), folders
    from training.video import record_isaaclab_env

    env = single_agent(gymnasium.make(task, cfg=env_cfg, render_mode="rgb_array"))
    return record_isaaclab_env(env, video, every_steps=every_steps), (video.folder,)


# 3.0 visualizers that stream but cannot capture frames (upstream's _NO_CAPTURE_VISUALIZERS).
NO_CAPTURE_VISUALIZERS = ("rerun", "viser")


def _configure_env_recorders(env_cfg: Any, video: VideoSettings,
                             every_steps: int) -> tuple[Path, ...]:
    """What 3.0's ``apply_video_recording`` (``isaaclab_rl/entrypoints/common.py``) does for
    ``--video --video_length L --video_interval N`` without ``--viz``; that module itself
    cannot be imported without the Kit app (it imports ``isaaclab.app.LoadingScreen``):

    - recorders the env cfg declares are kept; without any, one
      ``VideoRecorderCfg(source=_resolve_video_source(...))`` (:func:`_video_source`);
    - each recorder's ``output_dir``, where None, becomes ``<log_dir>/videos/train`` (ours:
      ``video.folder``), its ``video_length`` and ``video_interval`` the flags' values.

    The folders the recorders write into."""
    from isaaclab.envs.utils.video_recorder_cfg import VideoRecorderCfg

    if not getattr(env_cfg, "video_recorders", None):
        env_cfg.video_recorders = [VideoRecorderCfg(source=_video_source(env_cfg.sim))]
    for recorder in env_cfg.video_recorders:
        if recorder.output_dir is None:
            recorder.output_dir = str(video.folder)
        recorder.video_length = video.length
        recorder.video_interval = every_steps
    return tuple(dict.fromkeys(Path(recorder.output_dir) for recorder in env_cfg.video_recorders))


def _video_source(sim_cfg: Any) -> str:
    """3.0's ``_resolve_video_source`` without ``--viz``: a concrete visualizer the sim cfg
    configures (``visualizer_cfgs`` and ``default_visualizer_cfg`` with a ``visualizer_type``;
    capture-capable ones first), else a headless Kit visualizer appended to
    ``sim_cfg.visualizer_cfgs`` (``_inject_headless_kit_visualizer``, when
    ``isaaclab_visualizers`` imports), else plain "visualizer"."""
    configured = [cfg for cfg in [*(getattr(sim_cfg, "visualizer_cfgs", None) or []),
                                  getattr(sim_cfg, "default_visualizer_cfg", None)]
                  if getattr(cfg, "visualizer_type", None) is not None]
    if configured:
        configured.sort(key=lambda cfg: cfg.visualizer_type in NO_CAPTURE_VISUALIZERS)
        return f"visualizer:{configured[0].visualizer_type}"
    try:
        from isaaclab_visualizers.kit import KitVisualizerCfg
    except ImportError:
        return "visualizer"
    if not isinstance(getattr(sim_cfg, "visualizer_cfgs", None), list):
        sim_cfg.visualizer_cfgs = []
    sim_cfg.visualizer_cfgs.append(KitVisualizerCfg(headless=True))
    return "visualizer:kit"


def single_agent(env: Any) -> Any:
    """A multi-agent (DirectMARLEnv) task as one agent, as upstream converts it."""
    from isaaclab.envs import DirectMARLEnv, multi_agent_to_single_agent

    if isinstance(env.unwrapped, DirectMARLEnv):
        return multi_agent_to_single_agent(env)
    return env


def params_texts(env_cfg: Any, agent_cfg: Any) -> dict[str, str]:
    """{"params/env.yaml": text, "params/agent.yaml": text}, written by Isaac Lab's own
    ``dump_yaml`` as its train scripts write them into the log dir."""
    from isaaclab.utils.io import dump_yaml

    with tempfile.TemporaryDirectory() as scratch:
        texts = {}
        for name, cfg in zip(PARAMS_FILES, (env_cfg, agent_cfg), strict=True):
            path = Path(scratch) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            dump_yaml(str(path), cfg)
            texts[name] = path.read_text()
    return texts
