"""Isaac Lab's real skrl agent cfgs train under the skrl backend (on a stand-in env).

For each Isaac Lab release, the ``skrl_cfg_entry_point`` YAML files of Anymal-C rough velocity
and Cartpole, read from that release's wheel in ``.ci/deps/isaaclab-<version>`` (installed by
``scripts/setup.sh``), go through ``training.backends.skrl`` under the skrl that release's image
ships (2.2/2.3: 1.4.3, 3.0: 2.1.1): skrl's Runner is built from the cfg, one iteration trains,
``model_1.pt`` is written and inspected. The env is a stand-in of the task's shapes (Isaac Sim
cannot run here), wrapped the way Isaac Lab's ``SkrlVecEnvWrapper`` wraps a real one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from support.lib_versions import DEPS_DIR
from support.skrl_versions import run_python

# release -> (isaaclab wheel version, skrl its image ships)
RELEASES = {"2.2": ("2.2.0", "1.4.3"), "2.3": ("2.3.2.post1", "1.4.3"), "3.0": ("3.0.0", "2.1.1")}
_TASKS_2X = "isaaclab/source/isaaclab_tasks/isaaclab_tasks"
# release -> [(task, YAML path inside the wheel, observation size, action size)]; the shapes are
# the tasks' policy observation and action dimensions (as test_isaaclab_cfgs checks them).
CASES = {
    **{release: [
        ("Isaac-Velocity-Rough-Anymal-C-v0",
         f"{_TASKS_2X}/manager_based/locomotion/velocity/config/anymal_c/agents/"
         "skrl_rough_ppo_cfg.yaml", 235, 12),
        ("Isaac-Cartpole-v0",
         f"{_TASKS_2X}/manager_based/classic/cartpole/agents/skrl_ppo_cfg.yaml", 4, 1),
    ] for release in ("2.2", "2.3")},
    "3.0": [
        ("IsaacContrib-Velocity-Rough-AnymalC",
         "isaaclab_tasks/contrib/velocity/config/anymal_c/agents/skrl_rough_ppo_cfg.yaml", 235, 12),
        ("Isaac-Cartpole", "isaaclab_tasks/core/cartpole/agents/skrl_manager_ppo_cfg.yaml", 4, 1),
    ],
}
# Isaac Lab's own iteration counts for these tasks (trainer.timesteps / agent.rollouts).
MAX_ITERATIONS = {"Anymal": 1500, "Cartpole": 150}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=sorted(RELEASES), ids=lambda r: f"isaaclab-{r}")
def release_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    release = request.param
    wheel, skrl_version = RELEASES[release]
    root = DEPS_DIR / f"isaaclab-{wheel}"
    if not root.is_dir():
        pytest.fail(f"{root} is missing: run scripts/setup.sh to install the isaaclab wheels")
    out = tmp_path_factory.mktemp(f"isaaclab-{release}")
    cases = [[task, str(root / path), obs, act] for task, path, obs, act in CASES[release]]
    proc = run_python(skrl_version, __file__, str(out), json.dumps(cases))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["skrl_version"] == skrl_version
    return report


def test_isaaclab_skrl_cfgs_build_a_runner_and_train_an_iteration(release_run):
    for task, seen in release_run["tasks"].items():
        kind = "Anymal" if "Anymal" in task else "Cartpole"
        assert seen["max_iterations"] == MAX_ITERATIONS[kind], task
        assert seen["agent"] == "PPO", task
        assert seen["result"] == {"start": 0, "final": 1, "checkpoint": "model_1.pt"}, task
        assert seen["inspected_iteration"] == 1, task


def test_the_envs_log_extras_arrive_as_skrl_names_them(release_run):
    # skrl logs the env's infos["log"] scalars (environment_info: log in Isaac Lab's cfgs):
    # 1.4.3 as "Info / <key>", 2.x keeps keys that already hold a "/".
    name = ("Episode_Termination/time_out" if release_run["skrl_version"].startswith("2.")
            else "Info / Episode_Termination/time_out")
    for task, seen in release_run["tasks"].items():
        assert name in seen["metrics"], (task, seen["metrics"])
        assert "Loss / Value loss" in seen["metrics"], task


# --- run in a subprocess: python test_skrl_isaaclab_cfgs.py OUT_DIR CASES_JSON -------------------


class StandInIsaacLabEnv:
    """What skrl's Isaac Lab wrapper reads from an Isaac Lab ``ManagerBasedRLEnv``, with random
    observations. Imitates isaaclab/envs/manager_based_rl_env.py (2.2.0 wheel):

    - ``single_observation_space``: a ``gym.spaces.Dict`` with one Box per observation group,
      "policy" among them (``_configure_gym_env_spaces``, lines 326-345), and
      ``single_action_space`` a Box of the action dimension;
    - ``num_envs``, ``device``; ``unwrapped`` is the env itself (gymnasium.Env);
    - ``reset(seed=None, options=None) -> (obs dict, extras)`` (manager_based_env.py ``reset``);
    - ``step(action) -> (obs dict, reward[N], terminated[N], time_outs[N], extras)`` with
      ``extras["log"]`` holding scalar tensors such as "Episode_Termination/time_out"
      (manager_based_rl_env.py ``step``, line 243, and ``_reset_idx``, lines 369-393); envs that
      finish are reset inside ``step`` (here: every ``episode_length`` steps).

    Isaac Lab's ``SkrlVecEnvWrapper`` (isaaclab_rl/skrl.py) checks the env's class and then calls
    skrl's ``wrap_env(env, wrapper="isaaclab")``; the test calls the latter itself.
    """

    def __init__(self, num_envs: int, observations: int, actions: int,
                 episode_length: int = 10) -> None:
        import gymnasium
        import numpy as np

        self.num_envs = num_envs
        self.device = "cpu"
        self.single_observation_space = gymnasium.spaces.Dict(
            {"policy": gymnasium.spaces.Box(-np.inf, np.inf, shape=(observations,))})
        self.single_action_space = gymnasium.spaces.Box(-np.inf, np.inf, shape=(actions,))
        self._observations = observations
        self._episode_length = episode_length
        self._steps = 0

    @property
    def unwrapped(self) -> StandInIsaacLabEnv:
        return self

    def _obs(self) -> dict[str, Any]:
        import torch

        return {"policy": torch.randn(self.num_envs, self._observations)}

    def reset(self, seed: int | None = None, options: Any = None):
        return self._obs(), {}

    def step(self, action):
        import torch

        self._steps += 1
        time_out = self._steps % self._episode_length == 0
        reward = torch.randn(self.num_envs)
        terminated = torch.zeros(self.num_envs, dtype=torch.bool)
        time_outs = torch.full((self.num_envs,), time_out, dtype=torch.bool)
        extras = {"log": {"Episode_Termination/time_out": torch.tensor(float(time_out))}}
        return self._obs(), reward, terminated, time_outs, extras

    def close(self) -> None:
        return None


def _run(out: Path, cases: list[list[Any]]) -> None:
    import yaml
    from skrl.envs.wrappers.torch import wrap_env

    from training.backends import skrl as backend
    from training.backends.base import TrainHooks
    from training.envs import EnvHandle

    report: dict[str, Any] = {"skrl_version": backend.SKRL_VERSION, "tasks": {}}
    for task, path, observations, actions in cases:
        agent_cfg = yaml.safe_load(Path(path).read_text())
        env = wrap_env(StandInIsaacLabEnv(4, observations, actions), wrapper="isaaclab")
        max_iterations, save_interval = backend.isaaclab_iterations(agent_cfg)
        handle = EnvHandle(env=env, agent_cfg=agent_cfg, kind="isaaclab",
                           max_iterations=max_iterations, save_interval=save_interval,
                           seed=int(agent_cfg["seed"]), _close=env.close)
        metrics: set[str] = set()
        log_dir = out / task
        result = backend.train(
            handle, log_dir=log_dir, device="cpu", max_iterations=1, save_interval=save_interval,
            init=None, mode=None,
            hooks=TrainHooks(on_iteration=lambda it, values, seen=metrics: seen.update(values)),
        )
        training = backend.build_training(handle, log_dir=out / "probe", init=None, mode=None)
        report["tasks"][task] = {
            "max_iterations": max_iterations,
            "agent": type(training.agent).__name__,
            "result": {"start": result.start_iteration, "final": result.final_iteration,
                       "checkpoint": result.final_checkpoint.name},
            "inspected_iteration": backend.inspect_checkpoint(log_dir / "model_1.pt").iteration,
            "metrics": sorted(metrics),
        }
    (out / "report.json").write_text(json.dumps(report))


if __name__ == "__main__":
    _run(Path(sys.argv[1]), json.loads(sys.argv[2]))
