"""``env.*`` / ``agent.*`` overrides on real Isaac Lab tasks, per release, through the real path.

``training.envs.make_env`` -> ``training.envs.isaaclab`` with each release's real
``isaaclab_tasks`` registry and cfgs (2.2, 2.3, 3.0 wheels; one subprocess per release:
tests/runtime/isaaclab_override_probe.py, which says what is stood in). Cartpole's cfgs
for both backends: rsl-rl's agent cfg is a configclass object, skrl's a dict read from YAML.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.isaaclab_releases import RELEASES, env_for_release

from training.envs import TaskError
from training.launch import EXIT_BAD_INPUT, EXIT_CODES

pytestmark = pytest.mark.slow

PROBE = Path(__file__).with_name("isaaclab_override_probe.py")
TESTS = Path(__file__).resolve().parents[1]
CARTPOLE = {"2.2": "Isaac-Cartpole-v0", "2.3": "Isaac-Cartpole-v0", "3.0": "Isaac-Cartpole"}
# The same kinds of values for every release, at the paths that release's cfgs use.
ENV = {"env.scene.num_envs": ("64", "int", 64), "env.sim.dt": ("0.01", "float", 0.01),
       "env.episode_length_s": ("3", "int", 3),  # written as a whole number: an int
       "env.scene.robot.init_state.pos": ("[0.0, 0.0, 2.5]", "tuple", [0.0, 0.0, 2.5]),
       "env.scene.robot.init_state.joint_pos.slider_to_cart": ("0.5", "float", 0.5),  # a dict
       "env.rewards.alive.weight": ("2.0", "float", 2.0)}  # a reward term's cfg
RSL_RL = {
    "agent.algorithm.learning_rate": ("3e-4", "float", 3e-4),
    "agent.max_iterations": ("7", "int", 7),
}
RSL_RL_BY_RELEASE = {  # rsl-rl 2.x/3.x cfgs (Isaac Lab 2.x) vs 5.x model cfgs (3.0)
    "2.2": {"agent.empirical_normalization": ("true", "bool", True),
            "agent.policy.actor_hidden_dims": ("[16, 8]", "list", [16, 8])},
    "3.0": {"agent.actor.obs_normalization": ("true", "bool", True),
            "agent.actor.hidden_dims": ("[16, 8]", "list", [16, 8])},
}
RSL_RL_BY_RELEASE["2.3"] = RSL_RL_BY_RELEASE["2.2"]
SKRL = {"agent.agent.learning_rate": ("3e-4", "float", 3e-4),
        "agent.agent.rollouts": ("8", "int", 8),
        "agent.models.separate": ("true", "bool", True),
        "agent.models.policy.network.0.layers": ("[16, 8]", "list", [16, 8])}


def _case(release: str, backend: str, given: dict[str, tuple[str, str, Any]]) -> dict:
    return {"task": CARTPOLE[release], "backend": backend,
            "overrides": {path: text for path, (text, _, _) in given.items()},
            "read": list(given)}


def _cases(release: str) -> list[dict]:
    return [
        _case(release, "rsl_rl", {**ENV, **RSL_RL, **RSL_RL_BY_RELEASE[release]}),
        _case(release, "skrl", {**ENV, **SKRL}),
        _case(release, "rsl_rl", {"env.scene.num_env": ("64", "", None)}),
        _case(release, "rsl_rl", {"agent.algorithm.learnin_rate": ("1e-3", "", None)}),
        _case(release, "skrl", {"agent.agent.learnin_rate": ("1e-3", "", None)}),
        _case(release, "rsl_rl", {"agent.algorithm.learning_rate": ("fast", "", None)}),
    ]


@functools.cache
def probed(release: str) -> list[dict[str, Any]]:
    env = env_for_release(release, dict(os.environ), standin=False)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env["PYTHONPATH"]])
    result = subprocess.run([sys.executable, str(PROBE), json.dumps(_cases(release))],
                            env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def _values(result: dict[str, Any]) -> dict[str, list[Any]]:
    assert result["error"] is None, result["error"]
    return {**{f"env.{k}": v for k, v in result["env"].items()},
            **{f"agent.{k}": v for k, v in result["agent"].items()}}


@pytest.mark.parametrize("release", RELEASES)
def test_env_and_rsl_rl_agent_overrides_arrive_typed(release: str) -> None:
    expected = {**ENV, **RSL_RL, **RSL_RL_BY_RELEASE[release]}
    assert _values(probed(release)[0]) == {
        path: [kind, value] for path, (_, kind, value) in expected.items()}


@pytest.mark.parametrize("release", RELEASES)
def test_env_and_skrl_agent_overrides_arrive_typed(release: str) -> None:
    expected = {**ENV, **SKRL}
    assert _values(probed(release)[1]) == {
        path: [kind, value] for path, (_, kind, value) in expected.items()}


@pytest.mark.parametrize("release", RELEASES)
def test_an_unknown_or_mistyped_key_is_one_line_naming_the_closest(release: str) -> None:
    messages = [result["error"] for result in probed(release)[2:]]
    expected = [  # the closest key first (more may follow)
        "OverrideError: unknown override env.scene.num_env: did you mean env.scene.num_envs",
        "OverrideError: unknown override agent.algorithm.learnin_rate: did you mean "
        "agent.algorithm.learning_rate",
        "OverrideError: unknown override agent.agent.learnin_rate: did you mean "
        "agent.agent.learning_rate",
        "OverrideError: override agent.algorithm.learning_rate='fast': expected a float like "
        "its current value 0.001"]
    assert len(messages) == len(expected)
    for message, start in zip(messages, expected, strict=True):
        assert message.startswith(start) and "\n" not in message, message
    assert all(result["task_error"] for result in probed(release)[2:])
    # a TaskError is the launcher's exit 2 (one line, no traceback: test_overrides checks it)
    assert ("training.envs", TaskError.__name__, EXIT_BAD_INPUT) in EXIT_CODES


def test_the_launcher_in_the_30_app_refuses_an_unknown_key_with_exit_2(tmp_path: Path) -> None:
    """The whole path on 3.0 (whose isaaclab_tasks imports nothing of Isaac Sim): the app
    starts, the real task registry resolves Cartpole's cfgs, the typo is one line, exit 2
    through Kit's close (the stand-in's app ends the process with the code it is given)."""
    from launcher_runs import assert_clean_failure, launcher_env, run_launcher

    env = env_for_release("3.0", launcher_env(f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "out"))
    result = run_launcher(env, "--task", CARTPOLE["3.0"], "--num_envs", "4",
                          "--max_iterations", "1",
                          "--override", "agent.algorithm.learnin_rate=1e-3", cwd=tmp_path)
    assert "[isaacsim-standin 3.0] app started" in result.stderr, result.stderr
    assert_clean_failure(result, EXIT_BAD_INPUT, "agent.algorithm.learnin_rate",
                         "did you mean agent.algorithm.learning_rate")
