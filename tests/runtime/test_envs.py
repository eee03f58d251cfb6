"""make_env and the gymnasium -> rsl-rl VecEnv adapter: real MuJoCo envs, no training."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from support.rslrl_versions import run_python

from training.agents import AGENTS_DIR, load_agent_cfg
from training.backends import rsl_rl
from training.envs import TaskError, isaaclab_installed, make_env
from training.envs.gym_vec import GymVecEnv


def _obs(env: GymVecEnv) -> torch.Tensor:
    return env._obs.clone()


def test_a_truncated_env_is_reset_alone_and_marked_as_time_out():
    env = GymVecEnv("InvertedPendulum-v5", num_envs=3, seed=0, device="cpu")
    twin = GymVecEnv("InvertedPendulum-v5", num_envs=3, seed=0, device="cpu")
    env.episode_length_buf[0] = env.max_episode_length - 1  # env 0 is at its last step
    zeros = torch.zeros(3, 1)
    _, rewards, dones, extras = env.step(zeros)
    twin.step(zeros)

    assert dones.tolist() == [1, 0, 0]
    assert extras["time_outs"].tolist() == [True, False, False]
    assert env.episode_length_buf.tolist() == [0, 1, 1]
    assert rewards.shape == (3,)
    # Envs 1 and 2 went on exactly as their unforced twins; env 0 started a new episode.
    assert torch.equal(_obs(env)[1:], _obs(twin)[1:])
    assert not torch.equal(_obs(env)[0], _obs(twin)[0])
    env.close()
    twin.close()


def test_a_terminated_env_is_done_but_not_a_time_out():
    env = GymVecEnv("InvertedPendulum-v5", num_envs=2, seed=1, device="cpu")
    push = torch.full((2, 1), 3.0)  # full force: the pole falls within a few dozen steps
    for _ in range(200):
        _, _, dones, extras = env.step(push)
        if dones.any():
            break
    assert dones.any(), "the pole never fell"
    assert not extras["time_outs"][dones.bool()].any()
    assert (env.episode_length_buf[dones.bool()] == 0).all()
    env.close()


def test_actions_are_clipped_to_the_action_space():
    envs = [GymVecEnv("HalfCheetah-v5", num_envs=2, seed=5, device="cpu") for _ in range(3)]
    envs[0].step(torch.full((2, 6), 100.0))
    envs[1].step(torch.ones(2, 6))  # HalfCheetah's bound
    envs[2].step(torch.full((2, 6), 0.5))
    assert torch.equal(_obs(envs[0]), _obs(envs[1]))
    assert not torch.equal(_obs(envs[0]), _obs(envs[2]))
    for env in envs:
        env.close()


def test_step_infos_reach_the_runner_as_episode_log():
    env = GymVecEnv("HalfCheetah-v5", num_envs=2, seed=0, device="cpu")
    _, _, _, extras = env.step(torch.zeros(2, 6))
    assert {"reward_forward", "reward_ctrl", "x_velocity"} <= set(extras["log"])
    assert all(value.shape == (2,) for value in extras["log"].values())
    env.close()


def test_make_env_builds_a_gymnasium_task_with_its_agent_cfg():
    handle = make_env("HalfCheetah-v5", backend=rsl_rl, num_envs=2, seed=7, device="cpu")
    try:
        assert handle.kind == "gymnasium"
        assert handle.env.num_envs == 2 and handle.env.num_actions == 6
        cfg = handle.agent_cfg
        assert cfg["seed"] == 7 and handle.seed == 7
        assert cfg["experiment_name"] == "HalfCheetah-v5"
        assert handle.max_iterations > 0 and handle.save_interval > 0
    finally:
        handle.close()


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("HalfCheeta-v5", "unknown task 'HalfCheeta-v5': did you mean HalfCheetah-v5"),
        ("nonsense", "use a registered gymnasium id such as HalfCheetah-v5"),
        ("CartPole-v1", "rsl-rl's PPO needs continuous (Box) actions"),
    ],
)
def test_tasks_that_cannot_work_say_what_would(task, expected):
    with pytest.raises(TaskError) as raised:
        make_env(task, backend=rsl_rl, num_envs=2, seed=None, device="cpu")
    assert expected in str(raised.value)
    assert "\n" not in str(raised.value)


def test_isaac_lab_task_without_isaaclab_says_so():
    if isaaclab_installed():
        pytest.skip("isaaclab is installed here")
    with pytest.raises(TaskError) as raised:
        make_env("Isaac-Velocity-Rough-Anymal-C-v0", backend=rsl_rl, num_envs=2, seed=None,
                 device="cpu")
    message = str(raised.value)
    assert "Isaac Lab task but isaaclab is not installed" in message
    assert "HalfCheetah-v5" in message


def test_zero_envs_is_refused():
    with pytest.raises(TaskError, match="num_envs must be at least 1, got 0"):
        make_env("HalfCheetah-v5", backend=rsl_rl, num_envs=0, seed=None, device="cpu")


def test_a_task_yaml_overrides_the_default_key_by_key(tmp_path):
    shutil.copy(AGENTS_DIR / "default.yaml", tmp_path / "default.yaml")
    (tmp_path / "Hopper-v5.yaml").write_text("actor: {hidden_dims: [32]}\nmax_iterations: 7\n")
    default = load_agent_cfg("Ant-v5", agents_dir=tmp_path)
    hopper = load_agent_cfg("Hopper-v5", agents_dir=tmp_path)
    assert hopper["actor"]["hidden_dims"] == [32]
    assert hopper["actor"]["activation"] == default["actor"]["activation"]  # merged, not replaced
    assert hopper["max_iterations"] == 7
    assert {k: v for k, v in hopper.items() if k not in ("actor", "max_iterations")} == {
        k: v for k, v in default.items() if k not in ("actor", "max_iterations")
    }


def test_an_agent_yaml_that_is_not_a_mapping_is_refused(tmp_path):
    shutil.copy(AGENTS_DIR / "default.yaml", tmp_path / "default.yaml")
    (tmp_path / "Hopper-v5.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="Hopper-v5.yaml: an agent cfg must be a YAML mapping"):
        load_agent_cfg("Hopper-v5", agents_dir=tmp_path)


# What each rsl-rl version reads: (get_observations, step obs, agent cfg model keys).
API_BY_VERSION = {
    "2.3.3": ["tuple(Tensor, dict)", "Tensor", ["empirical_normalization", "policy"]],
    "3.0.1": ["TensorDict", "TensorDict", ["obs_groups", "policy"]],
    "5.5.1": ["TensorDict", "TensorDict", ["actor", "critic", "obs_groups"]],
}
PROBE = """
import json, torch
from training.backends import rsl_rl
from training.envs import make_env
h = make_env("InvertedPendulum-v5", backend=rsl_rl, num_envs=2, seed=0, device="cpu")
def kind(x):
    if isinstance(x, tuple):
        return f"tuple({type(x[0]).__name__}, {type(x[1]).__name__})"
    return type(x).__name__
first = h.env.get_observations()
obs, _, _, extras = h.env.step(torch.zeros(2, 1))
policy = obs if isinstance(obs, torch.Tensor) else obs["policy"]
keys = sorted(k for k in ("policy", "actor", "critic", "obs_groups", "empirical_normalization")
              if k in h.agent_cfg)
print(json.dumps([kind(first), kind(obs), keys, list(policy.shape)]))
"""


@pytest.mark.slow
def test_observations_and_agent_cfg_follow_the_installed_rsl_rl(rslrl_version):
    proc = run_python(rslrl_version, "-c", PROBE)
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, step_obs, cfg_keys, shape = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [first, step_obs, cfg_keys] == API_BY_VERSION[rslrl_version]
    assert shape == [2, 4]  # InvertedPendulum: 4 observations per env
