"""Build the environment a task names, as an rsl-rl VecEnv with its agent cfg.

The launcher calls exactly::

    handle = make_env(task, num_envs=16, seed=None, device="cpu", headless=True)
    handle.env        # rsl-rl VecEnv for the installed rsl-rl version
    handle.agent_cfg  # dict in that version's schema (max_iterations, seed, save_interval,
                      # experiment_name included); the launcher may override those keys
    handle.kind       # "gymnasium" | "isaaclab"
    handle.close()

Which path a task takes:

- a registered gymnasium id (``HalfCheetah-v5``, ``Ant-v5``, ``InvertedPendulum-v5`` ...):
  :class:`training.envs.gym_vec.GymVecEnv` and the agent cfg from ``training/agents``;
- anything else when ``isaaclab`` is importable: :mod:`training.envs.isaaclab` (starts the
  app headless, then the task's registered env and agent cfgs, Isaac Lab's own wrapper);
- otherwise :class:`TaskError`, one line saying what would work.

``seed=None`` keeps the agent cfg's seed; either way the env is seeded with the cfg's seed.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

EnvKind = Literal["gymnasium", "isaaclab"]
SUGGESTED_GYM_TASKS = ("HalfCheetah-v5", "Ant-v5", "Hopper-v5", "InvertedPendulum-v5")


class TaskError(ValueError):
    """A task that cannot be built here; the message is one line that says what would work."""


@dataclass
class EnvHandle:
    env: Any
    agent_cfg: dict[str, Any]
    kind: EnvKind
    _close: Callable[[], None]

    def close(self) -> None:
        self._close()


def isaaclab_installed() -> bool:
    return importlib.util.find_spec("isaaclab") is not None


def make_env(
    task: str, *, num_envs: int, seed: int | None, device: str, headless: bool = True
) -> EnvHandle:
    if num_envs < 1:
        raise TaskError(f"num_envs must be at least 1, got {num_envs}")
    import gymnasium

    if task in gymnasium.registry:
        return _make_gym_env(task, num_envs=num_envs, seed=seed, device=device)
    if isaaclab_installed():
        from training.envs.isaaclab import make_isaaclab_env

        return make_isaaclab_env(
            task, num_envs=num_envs, seed=seed, device=device, headless=headless
        )
    if task.startswith("Isaac"):
        raise TaskError(
            f"{task} is an Isaac Lab task but isaaclab is not installed here: run it in an "
            "Isaac Lab image, or try a gymnasium task such as HalfCheetah-v5"
        )
    raise TaskError(f"unknown task {task!r}: {_suggestion(task, list(gymnasium.registry))}")


def _suggestion(task: str, known: list[str]) -> str:
    close = difflib.get_close_matches(task, known, n=3)
    if close:
        return f"did you mean {', '.join(close)}?"
    return (
        "use a registered gymnasium id such as "
        + ", ".join(SUGGESTED_GYM_TASKS)
        + " (Isaac Lab tasks need an Isaac Lab image)"
    )


def _one_line(error: BaseException) -> str:
    return (str(error).strip() or type(error).__name__).splitlines()[0]


def _make_gym_env(task: str, *, num_envs: int, seed: int | None, device: str) -> EnvHandle:
    import yaml

    from training.agents import load_agent_cfg
    from training.backends import rsl_rl_compat
    from training.envs.gym_vec import GymVecEnv

    try:
        neutral = load_agent_cfg(task)
    except (OSError, ValueError, yaml.YAMLError) as error:  # a broken YAML in the payload
        raise TaskError(f"cannot read the agent cfg for {task}: {_one_line(error)}") from error
    if seed is not None:
        neutral["seed"] = seed
    try:
        env = GymVecEnv(task, num_envs=num_envs, seed=neutral["seed"], device=device)
    except Exception as error:  # a registered id whose env cannot be built (missing extra, ...)
        raise TaskError(f"cannot build gymnasium task {task}: {_one_line(error)}") from error
    agent_cfg = rsl_rl_compat.agent_cfg_from_neutral(neutral, experiment_name=task)
    return EnvHandle(env=env, agent_cfg=agent_cfg, kind="gymnasium", _close=env.close)
