"""The GantryReach-v0 environment: gymnasium's MujocoEnv over our own MJCF model.

Observation (6): the tool tip's position, the axes' velocities and the tip-to-target vector
(x, y each). Action (2): the x and y motor commands in [-1, 1]. Reward: minus the tip's
distance to the target, minus a small effort cost. Each episode starts at a random gantry
position with a random target; it never terminates early (the registration's time limit of
50 steps, one second, ends it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gymnasium import spaces
from gymnasium.envs.mujoco import MujocoEnv

MODEL = Path(__file__).with_name("gantry_reach.xml")
WORKSPACE = 0.2  # start and target x, y in [-WORKSPACE, WORKSPACE] (the axes reach 0.25)
EFFORT_COST = 0.01


class GantryReachEnv(MujocoEnv):
    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 50}

    def __init__(self, **kwargs) -> None:
        observation_space = spaces.Box(-np.inf, np.inf, shape=(6,), dtype=np.float64)
        super().__init__(str(MODEL), frame_skip=2, observation_space=observation_space,
                         **kwargs)
        self._tip = self.model.site("tool_tip").id
        self._goal = np.zeros(2)

    def step(self, action: np.ndarray):
        self.do_simulation(action, self.frame_skip)
        distance = float(np.linalg.norm(self._to_goal()))
        effort = float(np.square(action).sum())
        info = {"distance": distance, "effort": effort}
        return self._get_obs(), -distance - EFFORT_COST * effort, False, False, info

    def reset_model(self) -> np.ndarray:
        start = self.np_random.uniform(-WORKSPACE, WORKSPACE, size=self.model.nq)
        self.set_state(start, np.zeros(self.model.nv))
        self._goal = self.np_random.uniform(-WORKSPACE, WORKSPACE, size=2)
        self.data.mocap_pos[0, :2] = self._goal
        return self._get_obs()

    def _to_goal(self) -> np.ndarray:
        return self._goal - self.data.site_xpos[self._tip, :2]

    def _get_obs(self) -> np.ndarray:
        return np.concatenate([self.data.site_xpos[self._tip, :2], self.data.qvel[:2],
                               self._to_goal()])
