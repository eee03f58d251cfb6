"""An Isaac Lab task wrapped for a backend, the way Isaac Lab's own train scripts build it.

Runs only inside an Isaac Lab image, after training.app started the app (Isaac Sim requires it
before any ``isaaclab_tasks`` import). The env cfg comes from the task's registry entry
(``parse_env_cfg``), the agent cfg from the backend's entry point
(``rsl_rl_cfg_entry_point`` / ``skrl_cfg_entry_point``), and the backend wraps the env with
Isaac Lab's own wrapper for its library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from training.envs import EnvHandle, TaskError, _suggestion

if TYPE_CHECKING:
    from training.backends.base import Backend


def make_isaaclab_env(
    task: str, *, backend: Backend, num_envs: int, seed: int | None, device: str
) -> EnvHandle:
    import gymnasium
    import isaaclab_tasks  # noqa: F401  (registers the Isaac-* tasks)
    from isaaclab_tasks.utils import parse_env_cfg
    from isaaclab_tasks.utils.parse_cfg import load_cfg_from_registry

    if task not in gymnasium.registry:
        isaac_ids = [name for name in gymnasium.registry if name.startswith("Isaac")]
        raise TaskError(f"unknown task {task!r}: {_suggestion(task, isaac_ids)}")

    env_cfg = parse_env_cfg(task, device=device, num_envs=num_envs)
    agent_cfg = load_cfg_from_registry(task, backend.ISAACLAB_CFG_ENTRY_POINT)
    if seed is not None:
        agent_cfg.seed = seed
    env_cfg.seed = agent_cfg.seed
    agent_cfg.device = device
    try:  # Isaac Lab >= 3.0 adapts older cfg fields to the installed rsl-rl
        import importlib.metadata

        from isaaclab_rl.rsl_rl import handle_deprecated_rsl_rl_cfg

        agent_cfg = handle_deprecated_rsl_rl_cfg(
            agent_cfg, importlib.metadata.version("rsl-rl-lib")
        )
    except ImportError:
        pass

    env = gymnasium.make(task, cfg=env_cfg)
    return backend.wrap_isaaclab_env(env, agent_cfg, device=device)
