"""An Isaac Lab task as an rsl-rl VecEnv, the way Isaac Lab's own ``train.py`` builds it.

Everything heavy is imported inside :func:`make_isaaclab_env`, and in this order because Isaac
Sim requires it: the app is launched (headless) before any ``isaaclab_tasks`` import. The env
cfg comes from the task's registry entry (``parse_env_cfg``), the agent cfg from its
``rsl_rl_cfg_entry_point``, and the env is wrapped by Isaac Lab's ``RslRlVecEnvWrapper``,
which matches the rsl-rl version the image ships. Runs only inside an Isaac Lab image.
"""

from __future__ import annotations

from training.envs import EnvHandle, TaskError, _suggestion


def make_isaaclab_env(
    task: str, *, num_envs: int, seed: int | None, device: str, headless: bool
) -> EnvHandle:
    from isaaclab.app import AppLauncher

    app = AppLauncher(headless=headless, device=device).app

    import gymnasium
    import isaaclab_tasks  # noqa: F401  (registers the Isaac-* tasks)
    from isaaclab_rl.rsl_rl import RslRlVecEnvWrapper
    from isaaclab_tasks.utils import parse_env_cfg
    from isaaclab_tasks.utils.parse_cfg import load_cfg_from_registry

    if task not in gymnasium.registry:
        app.close()
        isaac_ids = [name for name in gymnasium.registry if name.startswith("Isaac")]
        raise TaskError(f"unknown task {task!r}: {_suggestion(task, isaac_ids)}")

    env_cfg = parse_env_cfg(task, device=device, num_envs=num_envs)
    agent_cfg = load_cfg_from_registry(task, "rsl_rl_cfg_entry_point")
    if seed is not None:
        agent_cfg.seed = seed
    env_cfg.seed = agent_cfg.seed
    agent_cfg.device = device
    try:  # Isaac Lab >= 2.3 adapts older cfg fields to the installed rsl-rl
        import importlib.metadata

        from isaaclab_rl.rsl_rl import handle_deprecated_rsl_rl_cfg

        agent_cfg = handle_deprecated_rsl_rl_cfg(
            agent_cfg, importlib.metadata.version("rsl-rl-lib")
        )
    except ImportError:
        pass

    env = gymnasium.make(task, cfg=env_cfg)
    wrapped = RslRlVecEnvWrapper(env, clip_actions=getattr(agent_cfg, "clip_actions", None))

    def close() -> None:
        wrapped.close()
        app.close()

    return EnvHandle(env=wrapped, agent_cfg=agent_cfg.to_dict(), kind="isaaclab", _close=close)
