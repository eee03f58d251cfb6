"""Real Isaac Lab agent cfgs, per release, through our cfg handling into that release's rsl-rl.

Each release runs in its own subprocess (tests/runtime/isaaclab_cfg_probe.py) with its real
``isaaclab`` wheel and the rsl-rl its image ships (support.isaaclab_releases): 2.2 with rsl-rl
2.3.3, 2.3 with 3.0.1, 3.0 with 5.5.1. A runner is built from each cfg on a stand-in VecEnv of
the task's observation and action sizes and trains one iteration. 3.0 goes through the real
task registry and ``make_isaaclab_env``; 2.x cfg modules are imported without their package
``__init__``s (those reach ``omni``; see the probe's module doc).
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.isaaclab_releases import env_for_release

pytestmark = pytest.mark.slow

PROBE = Path(__file__).with_name("isaaclab_cfg_probe.py")
PPO = "rsl_rl_cfg_entry_point"
TASKS_2X = "isaaclab_tasks.manager_based"


def _case(task: str, obs: int, actions: int, *, entry_point: str = PPO, module: str = "",
          cfg_class: str = "", marl: bool = False) -> dict[str, Any]:
    return {"task": task, "entry_point": entry_point, "obs": obs, "actions": actions,
            "module": module, "cfg_class": cfg_class, "marl": marl}


ANYMAL_C_2X = _case("Isaac-Velocity-Rough-Anymal-C-v0", 235, 12,
                    module=f"{TASKS_2X}.locomotion.velocity.config.anymal_c.agents.rsl_rl_ppo_cfg",
                    cfg_class="AnymalCRoughPPORunnerCfg")
CARTPOLE_2X = _case("Isaac-Cartpole-v0", 4, 1,
                    module=f"{TASKS_2X}.classic.cartpole.agents.rsl_rl_ppo_cfg",
                    cfg_class="CartpolePPORunnerCfg")
DISTILLATION_23 = _case(
    "Isaac-Velocity-Flat-Anymal-D-v0", 48, 12,
    module=f"{TASKS_2X}.locomotion.velocity.config.anymal_d.agents.rsl_rl_distillation_cfg",
    cfg_class="AnymalDFlatDistillationRunnerCfg")
CASES = {
    "2.2": [ANYMAL_C_2X, CARTPOLE_2X],
    "2.3": [ANYMAL_C_2X, CARTPOLE_2X, DISTILLATION_23],
    "3.0": [
        _case("IsaacContrib-Velocity-Rough-AnymalC", 235, 12),
        _case("Isaac-Cartpole", 4, 1),
        _case("Isaac-Reorient-Cube-Shadow", 157, 20),  # its agent cfg is a PresetCfg
        _case("IsaacContrib-Franka-Pour", 64, 8),  # init_at_random_ep_len = False
        _case("Isaac-Shadow-Handover-Direct", 157, 20, marl=True),  # a DirectMARLEnv
        _case("Isaac-Velocity-Flat-AnymalD", 48, 12,
              entry_point="rsl_rl_distillation_cfg_entry_point"),
    ],
}


@functools.cache
def probed(release: str) -> dict[str, dict[str, Any]]:
    """The probe's results for a release, by task (one subprocess per release)."""
    result = subprocess.run([sys.executable, str(PROBE), json.dumps(CASES[release])],
                            env=env_for_release(release, standin=False), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {line["task"]: line for line in lines}


def _agent_yaml(result: dict[str, Any]) -> dict[str, Any]:
    # dump_yaml writes tuples as !!python/tuple, which the full loader reads (safe_load not)
    return yaml.full_load(result["agent_yaml"])


def _trained(release: str, task: str) -> dict[str, Any]:
    result = probed(release)[task]
    assert result["error"] is None, result["error"]
    return result


@pytest.mark.parametrize(("release", "task"), [
    ("2.2", "Isaac-Velocity-Rough-Anymal-C-v0"), ("2.2", "Isaac-Cartpole-v0"),
    ("2.3", "Isaac-Velocity-Rough-Anymal-C-v0"), ("2.3", "Isaac-Cartpole-v0"),
    ("3.0", "IsaacContrib-Velocity-Rough-AnymalC"), ("3.0", "Isaac-Cartpole"),
])
def test_real_agent_cfgs_build_and_train_a_runner(release: str, task: str) -> None:
    result = _trained(release, task)
    assert result["runner"] == "OnPolicyRunner"
    assert result["random_starts"] is True  # 2.x: always; 3.0: these cfgs say True
    assert result["params"] == ["params/agent.yaml", "params/env.yaml"]
    agent = _agent_yaml(result)
    assert agent["device"] == "cpu" and "algorithm" in agent


def test_a_3_0_preset_cfg_is_resolved_before_the_runner_is_built() -> None:
    """load_cfg_from_registry returns the PresetCfg itself (no seed, no algorithm); it must be
    resolved as 3.0's train entry point resolves it."""
    result = _trained("3.0", "Isaac-Reorient-Cube-Shadow")
    agent = _agent_yaml(result)
    assert isinstance(agent["seed"], int) and agent["algorithm"]["class_name"] == "PPO"


def test_init_at_random_ep_len_comes_from_the_3_0_agent_cfg() -> None:
    result = _trained("3.0", "IsaacContrib-Franka-Pour")
    assert _agent_yaml(result)["init_at_random_ep_len"] is False
    assert result["random_starts"] is False  # the runner left episode lengths alone


def test_a_multi_agent_task_reaches_the_wrapper_as_one_agent() -> None:
    result = _trained("3.0", "Isaac-Shadow-Handover-Direct")
    assert result["received_marl"] is False
    assert result["received_actions"] == 2 * 20  # both agents' actions, flattened


@pytest.mark.parametrize(("release", "task"), [("2.3", "Isaac-Velocity-Flat-Anymal-D-v0"),
                                               ("3.0", "Isaac-Velocity-Flat-AnymalD")])
def test_a_distillation_cfg_is_refused_with_one_line(release: str, task: str) -> None:
    error = probed(release)[task]["error"]
    assert error is not None and error.startswith("TaskError: ")
    assert "distillation task" in error and "\n" not in error
