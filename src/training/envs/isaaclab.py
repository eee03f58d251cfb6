"""An Isaac Lab task wrapped for a backend, the way Isaac Lab's own train scripts build it.

Runs only inside an Isaac Lab image, after training.app started the app (Isaac Sim requires it
before any ``isaaclab_tasks`` import). The env cfg comes from the task's registry entry
(``parse_env_cfg``), the agent cfg from the backend's entry point
(``rsl_rl_cfg_entry_point`` / ``skrl_cfg_entry_point``), both resolved as each release's
own train script resolves them (:mod:`training.envs.isaaclab_compat`), and the backend wraps
the env with Isaac Lab's own wrapper for its library. ``handle.cfg_files`` holds the resolved cfgs
as ``params/env.yaml`` / ``params/agent.yaml`` texts, for the launcher to log to the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from training.envs import EnvHandle, TaskError, _suggestion

if TYPE_CHECKING:
    from training.backends.base import Backend
    from training.video import VideoSettings


def make_isaaclab_env(
    task: str, *, backend: Backend, num_envs: int, seed: int | None, device: str,
    overrides: Mapping[str, Any] | None = None, video: VideoSettings | None = None,
) -> EnvHandle:
    """``overrides``: ``env.*`` applied to the env cfg before the env is built, ``agent.*`` to
    the agent cfg once seeded (training.overrides; an unknown path is a TaskError).
    ``video``: the env records videos every ``video.interval`` iterations, as the release's
    train scripts do with --video (``isaaclab_compat.make_task_env``)."""
    import gymnasium
    import isaaclab_tasks  # noqa: F401  (registers the Isaac-* tasks)

    from training.envs import isaaclab_compat as compat

    if task not in gymnasium.registry:
        isaac_ids = [name for name in gymnasium.registry if name.startswith("Isaac")]
        raise TaskError(f"unknown task {task!r}: {_suggestion(task, isaac_ids)}")

    env_cfg, agent_cfg = compat.task_cfgs(task, backend.ISAACLAB_CFG_ENTRY_POINT, device=device,
                                          num_envs=num_envs)
    compat.refuse_distillation(task, agent_cfg)
    env_cfg.seed = _apply_seed_and_device(agent_cfg, seed, device)
    if overrides:
        from training.overrides import apply_overrides

        apply_overrides(env_cfg, overrides, "env")
        apply_overrides(agent_cfg, overrides, "agent",
                        whose=f"{backend.NAME}'s agent cfg for {task}")
    if backend.NAME == "rsl_rl":
        agent_cfg = compat.adapt_rsl_rl_cfg(agent_cfg, backend.versions()["rsl_rl_version"])
    params = compat.params_texts(env_cfg, agent_cfg)

    every = video.interval * _steps_per_iteration(agent_cfg) if video is not None else 0
    env, video_folders = compat.make_task_env(task, env_cfg, video, every_steps=every)
    handle = backend.wrap_isaaclab_env(env, agent_cfg, device=device)
    handle.cfg_files = params
    handle.video_folders = video_folders
    return handle


def _steps_per_iteration(agent_cfg: Any) -> int:
    """Env steps in one learning iteration: skrl's dict cfg ``agent.rollouts``, rsl-rl's
    configclass ``num_steps_per_env``."""
    if isinstance(agent_cfg, dict):
        return int(agent_cfg["agent"]["rollouts"])
    return int(agent_cfg.num_steps_per_env)


def _apply_seed_and_device(agent_cfg: Any, seed: int | None, device: str) -> int:
    """The seed the env and the agent use, as each library's train script sets it: rsl-rl's
    cfg is a configclass (seed and device are fields), skrl's a dict read from YAML (its
    runner takes the device from the env)."""
    from training.envs import seed_offset

    if isinstance(agent_cfg, dict):
        if seed is not None:
            agent_cfg["seed"] = seed
        agent_cfg["seed"] = int(agent_cfg["seed"]) + seed_offset()  # + global rank
        return int(agent_cfg["seed"])
    if seed is not None:
        agent_cfg.seed = seed
    agent_cfg.seed = int(agent_cfg.seed) + seed_offset()  # + global rank (upstream: local)
    agent_cfg.device = device
    return int(agent_cfg.seed)
