"""A gymnasium task as an rsl-rl VecEnv, doing what Isaac Lab's own RSL-RL wrapper does.

- one vector env from ``gymnasium.make_vec`` with autoreset DISABLED, reset once at
  construction (seeded), so that this class alone decides when an episode ends;
- its own ``episode_length_buf`` and truncation at ``max_episode_length``, so the runner's
  ``init_at_random_ep_len`` spreads episode ends out as it does for Isaac Lab tasks;
- ``dones = terminated | truncated``; ``extras["time_outs"] = truncated & ~terminated`` (the
  runner bootstraps values on those); only finished envs are reset, via ``reset_mask``;
- actions clipped to the action space; per-env numeric step infos (e.g. HalfCheetah's
  ``reward_forward``) averaged by the runner into ``Episode/<name>``;
- observations packed for the installed rsl-rl by :mod:`training.backends.rsl_rl_compat`
  (TensorDict for >= 3.x, ``(obs, extras)`` for 2.3.3).

Only continuous (Box) action spaces: rsl-rl's PPO samples Gaussian actions.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from training.backends import rsl_rl_compat as compat


class GymVecEnv:
    """rsl-rl VecEnv over ``num_envs`` copies of a gymnasium task (synchronous, one process)."""

    def __init__(self, task: str, *, num_envs: int, seed: int | None, device: str,
                 env_kwargs: dict[str, Any] | None = None) -> None:
        env_kwargs = dict(env_kwargs or {})  # the env class's arguments (env.* overrides)
        self._envs = gymnasium.make_vec(
            task,
            num_envs=num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": AutoresetMode.DISABLED},
            **env_kwargs,
        )
        action_space = self._envs.single_action_space
        if not isinstance(action_space, gymnasium.spaces.Box):
            self._envs.close()
            raise ValueError(
                f"{task} has a {type(action_space).__name__} action space; "
                "rsl-rl's PPO needs continuous (Box) actions"
            )
        self.num_envs = num_envs
        self.device = device
        self.num_actions = int(np.prod(action_space.shape))
        self.max_episode_length = int(gymnasium.spec(task).max_episode_steps or 1000)
        self.cfg: dict[str, Any] = {"task": task, "num_envs": num_envs, "seed": seed,
                                    **env_kwargs}
        self._action_low = torch.as_tensor(action_space.low, dtype=torch.float32, device=device)
        self._action_high = torch.as_tensor(action_space.high, dtype=torch.float32, device=device)
        self.episode_length_buf = torch.zeros(num_envs, dtype=torch.long, device=device)
        obs, _ = self._envs.reset(seed=seed)
        self._obs = self._to_tensor(obs)

    def _to_tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, dtype=torch.float32, device=self.device).reshape(
            self.num_envs, -1
        )

    def get_observations(self) -> Any:
        return compat.pack_observations(self._obs, for_step=False)

    def reset(self) -> Any:
        """Reset every env (the runner never calls this; it is part of the VecEnv interface)."""
        obs, _ = self._envs.reset()
        self._obs = self._to_tensor(obs)
        self.episode_length_buf.zero_()
        return self.get_observations()

    def step(self, actions: torch.Tensor) -> tuple[Any, torch.Tensor, torch.Tensor, dict]:
        actions = torch.clamp(actions.to(self.device), self._action_low, self._action_high)
        obs, rewards, terminated, truncated, infos = self._envs.step(
            actions.reshape(self.num_envs, *self._envs.single_action_space.shape).cpu().numpy()
        )
        self.episode_length_buf += 1
        terminated_t = torch.as_tensor(terminated, dtype=torch.bool, device=self.device)
        truncated_t = torch.as_tensor(truncated, dtype=torch.bool, device=self.device)
        truncated_t |= self.episode_length_buf >= self.max_episode_length
        dones = terminated_t | truncated_t
        if dones.any():
            # Only the finished envs restart; the others keep their observation and counter.
            obs, _ = self._envs.reset(options={"reset_mask": dones.cpu().numpy()})
            self.episode_length_buf[dones] = 0
        self._obs = self._to_tensor(obs)
        extras = compat.step_extras(truncated_t & ~terminated_t, self._numeric_infos(infos))
        return (
            compat.pack_observations(self._obs, for_step=True),
            torch.as_tensor(rewards, dtype=torch.float32, device=self.device),
            dones.to(torch.long),
            extras,
        )

    def _numeric_infos(self, infos: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Per-env numeric infos of this step; gymnasium's ``_name`` presence masks dropped."""
        numeric: dict[str, torch.Tensor] = {}
        for name, value in infos.items():
            if name.startswith("_") or not isinstance(value, np.ndarray):
                continue
            if value.shape == (self.num_envs,) and np.issubdtype(value.dtype, np.number):
                numeric[name] = torch.as_tensor(value, dtype=torch.float32, device=self.device)
        return numeric

    def close(self) -> None:
        self._envs.close()
