"""Probe, run as a subprocess under Isaac Lab 3.0's real sources (support.isaaclab_releases,
no app): the observation/action term names policy_export records in ``policy.json``, read
through each backend's real wrapper of an Isaac Lab env.

``python isaaclab_names_probe.py``: prints one JSON line per backend:
``{"backend", "names", "policy_json"}``.

Only what needs the simulator is stood in. The env is a gymnasium env (as ``gymnasium.make``
wraps it) holding Isaac Lab's real ``ObservationManager`` and ``ActionManager``, made without
their ``__init__`` (which resolves every term on a running scene) and holding the term names
their ``_prepare_terms`` leaves for isaaclab_tasks/core/cartpole/cartpole_manager_env_cfg.py
(group "policy": ``joint_pos_rel``, ``joint_vel_rel``; action ``joint_efforts``), plus a
"critic" group whose names must not be taken. The wrappers are the ones the backends use:
Isaac Lab's ``RslRlVecEnvWrapper`` (made without its ``__init__``, which checks the env's
class and resets it; its ``unwrapped`` is the real one) and skrl's ``IsaacLabWrapper``, which
Isaac Lab's ``SkrlVecEnvWrapper`` returns.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import gymnasium
import numpy as np
import torch
from isaaclab.managers import ActionManager, ObservationManager
from isaaclab_rl.rsl_rl import RslRlVecEnvWrapper
from skrl.envs.wrappers.torch.isaaclab_envs import IsaacLabWrapper

from training import policy_export
from training.backends.actor_module import make_policy
from training.envs import EnvHandle

POLICY_TERMS = ["joint_pos_rel", "joint_vel_rel"]
ACTION_TERMS = ["joint_efforts"]


class StandInManagerBasedEnv(gymnasium.Env):
    """The attributes of a ManagerBasedRLEnv that the names are read from."""

    def __init__(self) -> None:
        self.device = "cpu"
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, shape=(2,))
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, shape=(1,))
        self.observation_manager = _bare(ObservationManager)
        self.observation_manager._group_obs_term_names = {
            "policy": list(POLICY_TERMS), "critic": [*POLICY_TERMS, "joint_pos"]}
        self.action_manager = _bare(ActionManager)
        self.action_manager._term_names = list(ACTION_TERMS)


def _bare(manager_class: type) -> object:
    manager = manager_class.__new__(manager_class)
    manager._resolve_terms_handle = None  # what ManagerBase.__del__ reads (set in __init__)
    return manager


def wrapped(backend: str) -> object:
    env = gymnasium.wrappers.OrderEnforcing(StandInManagerBasedEnv())
    if backend == "skrl":
        return IsaacLabWrapper(env)
    wrapper = RslRlVecEnvWrapper.__new__(RslRlVecEnvWrapper)
    wrapper.env = env
    return wrapper


def probe(backend: str) -> dict[str, object]:
    handle = EnvHandle(env=wrapped(backend), agent_cfg={}, kind="isaaclab", max_iterations=1,
                       save_interval=1, seed=0, _close=lambda: None)
    names = policy_export.observation_action_names(handle)
    actor = torch.nn.Linear(len(POLICY_TERMS), len(ACTION_TERMS))
    policy = make_policy(actor, actor, scriptable=True, exporter="probe")
    with tempfile.TemporaryDirectory() as scratch:
        folder = policy_export.write_exports(policy, Path(scratch) / "policy", details=names)
        meta = json.loads((folder / policy_export.META_FILE).read_text())
    return {"backend": backend, "names": names,
            "policy_json": {key: meta.get(key) for key in ("observation_names", "action_names")}}


if __name__ == "__main__":
    for name in ("rsl_rl", "skrl"):
        print(json.dumps(probe(name)), flush=True)
