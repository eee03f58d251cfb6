"""Cfg overrides after `--`: carried to the task in CFG_OVERRIDES, checked at --dry-run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from osmo_inline.validate import validate_spec

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def agents(project):
    """The project's src/training with the real agent cfgs (what gymnasium tasks train with)."""
    shutil.copytree(REPO / "src" / "training" / "agents", project / "src/training/agents")
    return project


def _task_env(stdout: str) -> dict[str, str]:
    return yaml.safe_load(stdout)["workflow"]["tasks"][0]["environment"]


def test_overrides_reach_the_task_as_one_json_variable(agents, submit):
    result = submit("-t", "InvertedPendulum-v5", "-q", "--", "--dry-run",
                    "agent.algorithm.learning_rate=3e-4", "agent.actor.hidden_dims=[32, 32]",
                    "env.scene.num_envs=4096", "seed=7")
    assert result.code == 0, result.stderr
    assert validate_spec(result.stdout) == []
    env = _task_env(result.stdout)
    assert json.loads(env["CFG_OVERRIDES"]) == {
        "agent.algorithm.learning_rate": "3e-4", "agent.actor.hidden_dims": "[32, 32]",
        "env.scene.num_envs": "4096"}
    assert env["SEED"] == "7"  # a plain key=value is still a template value


def test_no_overrides_leave_the_variable_empty(agents, submit):
    result = submit("-t", "InvertedPendulum-v5", "-q", "--", "--dry-run")
    assert result.code == 0, result.stderr
    assert _task_env(result.stdout)["CFG_OVERRIDES"] == ""


def test_quotes_and_jinja_in_a_value_arrive_as_written(agents, submit):
    """The JSON sits in a single-quoted YAML string that OSMO renders with Jinja once more."""
    value = "it's {{ not jinja }} {% x %} {#y#}"
    result = submit("-t", "Isaac-Cartpole-v0", "-q", "--", "--dry-run", f"env.name={value}")
    assert result.code == 0, result.stderr
    assert validate_spec(result.stdout) == []  # no Jinja marker left in the spec
    assert json.loads(_task_env(result.stdout)["CFG_OVERRIDES"]) == {"env.name": value}


def test_an_unknown_agent_key_is_refused_at_dry_run_with_the_closest(agents, submit):
    result = submit("-t", "InvertedPendulum-v5", "--", "--dry-run",
                    "agent.algorithm.learnin_rate=3e-4")
    assert result.code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "unknown override agent.algorithm.learnin_rate" in result.stderr
    assert "did you mean agent.algorithm.learning_rate" in result.stderr


def test_an_unknown_top_level_agent_key_lists_the_keys(agents, submit):
    result = submit("-t", "InvertedPendulum-v5", "--", "--dry-run", "agent.zzz=1")
    assert result.code == 2
    assert "keys under agent: seed, max_iterations" in result.stderr


def test_isaac_lab_paths_are_left_to_the_container(agents, submit):
    """Their agent cfg comes from Isaac Lab's registry, which the client cannot read."""
    result = submit("-t", "Isaac-Cartpole-v0", "-q", "--", "--dry-run",
                    "agent.algorithm.whatever=1")
    assert result.code == 0, result.stderr


@pytest.mark.parametrize("token", ["agent.=1", "agent..x=1", "env.a-b=1", "agent.1x=2"])
def test_a_malformed_override_path_is_refused(project, submit, token):
    result = submit("--", "--dry-run", token)
    assert result.code == 2
    assert "bad override" in result.stderr and "agent.<path>=<value>" in result.stderr


def test_other_dotted_keys_are_still_refused(project, submit):
    result = submit("--", "--dry-run", "a.b=v")
    assert result.code == 2
    assert "the key 'a.b' is not a name" in result.stderr


def test_a_template_without_cfg_overrides_refuses_them(agents, submit):
    template = agents / "templates" / "isaaclab-inline.yaml"
    text = template.read_text().replace("CFG_OVERRIDES: '{{ cfg_overrides }}'", "")
    template.write_text(text)
    result = submit("-t", "InvertedPendulum-v5", "--", "--dry-run", "agent.seed=3")
    assert result.code == 2
    assert "never uses {{ cfg_overrides }}" in result.stderr


def test_a_refusal_names_the_backend_whose_cfg_it_checked(agents, submit):
    """rsl-rl paths against skrl's cfg (the --local default) say so, and how to fix it."""
    result = submit("--local", "-t", "InvertedPendulum-v5", "--", "--dry-run",
                    "agent.algorithm.learning_rate=3e-4")
    assert result.code == 2
    assert result.stderr.count("\n") == 1
    assert "(skrl's agent cfg, src/training/agents/skrl; rsl-rl paths need -b rsl_rl)" \
        in result.stderr
    result = submit("--local", "-t", "InvertedPendulum-v5", "--", "--dry-run",
                    "agent.agent.learning_rate=3e-4")
    assert result.code == 0, result.stderr


@pytest.mark.parametrize(("argv", "message"), [
    (("--sweep", "agent.algorithm.learning_rate=fast,slow"),
     "override agent.algorithm.learning_rate=fast: expected a number like 0.001"),
    (("--", "agent.algorithm=1"), "override agent.algorithm=1: a section takes a mapping"),
    (("--", "agent.actor.hidden_dims=64"), "expected a list like [64, 64]"),
    (("--", "agent.algorithm.num_learning_epochs=2.5"), "expected a whole number like 5"),
    (("--", "agent.obs_normalization=1"), "expected a bool like True"),
    (("--", "env.num_envs=four"), "override env.num_envs=four: the env count must be a "
     "positive whole number"),
    (("--", "env.num_envs=0"), "the env count must be a positive whole number"),
    (("--local", "--", "agent.agent.rollouts=8.5"), "expected a whole number like 32 "
     "(skrl's agent cfg"),
])
def test_a_value_that_does_not_fit_is_refused_at_dry_run(agents, submit, argv, message):
    """What the container would refuse after its GPUs are booked: a word for a number, a
    value for a section, a fraction for an int."""
    result = submit("-t", "InvertedPendulum-v5", "--dry-run", *argv)
    assert result.code == 2
    assert result.stdout == ""
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_values_that_fit_pass_dry_run(agents, submit):
    result = submit("-t", "InvertedPendulum-v5", "-q", "--", "--dry-run",
                    "agent.algorithm.learning_rate=3e-4", "agent.algorithm.gamma=1",
                    "agent.algorithm.num_learning_epochs=3.0", "agent.actor.hidden_dims=[8]",
                    "agent.obs_normalization=false", "env.num_envs=3")
    assert result.code == 0, result.stderr
