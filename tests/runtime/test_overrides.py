"""agent.* / env.* overrides reach what they name, typed, or stop the run with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from launcher_runs import launcher_env, run_launcher, train_args

from training import overrides
from training.backends import rsl_rl
from training.config import ConfigError, parse_config
from training.envs import TaskError, make_env

TASK = "InvertedPendulum-v5"


def _handle(**given: str):
    return make_env(TASK, backend=rsl_rl, num_envs=2, seed=None, device="cpu", overrides=given)


def test_a_learning_rate_override_reaches_the_optimizer(tmp_path: Path):
    handle = _handle(**{"agent.algorithm.learning_rate": "3e-4"})
    try:
        runner = rsl_rl.build_runner(handle, log_dir=tmp_path, device="cpu", init=None,
                                     mode=None)
        assert [group["lr"] for group in runner.alg.optimizer.param_groups] == [3e-4]
    finally:
        handle.close()


def test_num_envs_and_an_env_kwarg_reach_the_env():
    handle = _handle(**{"env.num_envs": "3", "env.reset_noise_scale": "0.25"})
    try:
        assert handle.env.num_envs == 3
        assert handle.env.get_observations()["policy"].shape[0] == 3
        inner = handle.env._envs.envs[0].unwrapped
        assert inner._reset_noise_scale == 0.25
        # the run's artifacts hold the env cfg as it was built
        assert "reset_noise_scale: 0.25" in handle.cfg_files["params/env.yaml"]
        assert "num_envs: 3" in handle.cfg_files["params/env.yaml"]
    finally:
        handle.close()


def test_values_arrive_typed_in_the_library_cfg():
    handle = _handle(**{"agent.max_iterations": "7", "agent.algorithm.gamma": "0.9",
                        "agent.obs_normalization": "false", "agent.actor.hidden_dims": "[16, 8]",
                        "agent.seed": "5"})
    try:
        cfg = handle.agent_cfg
        assert handle.max_iterations == 7 and isinstance(cfg["max_iterations"], int)
        assert cfg["algorithm"]["gamma"] == 0.9
        actor = cfg["actor"] if "actor" in cfg else cfg["policy"]  # rsl-rl 5.x / 2.x-3.x
        hidden = actor.get("hidden_dims", actor.get("actor_hidden_dims"))
        assert hidden == [16, 8]
        normalized = [v for k, v in {**cfg, **actor}.items() if "obs_normalization" in k]
        assert normalized and normalized[0] is False
        assert handle.seed == 5
    finally:
        handle.close()


@pytest.mark.parametrize(("given", "message"), [
    ({"agent.algorithm.learnin_rate": "1"},
     "unknown override agent.algorithm.learnin_rate: did you mean "
     "agent.algorithm.learning_rate"),
    ({"env.num_env": "3"}, "unknown override env.num_env: did you mean env.num_envs?"),
    ({"agent.algorithm.learning_rate": "fast"},
     "override agent.algorithm.learning_rate='fast': expected a float"),
    ({"env.num_envs": "0"}, "env.num_envs must be a whole number of at least 1"),
])
def test_a_bad_override_is_refused_before_anything_is_built(given, message):
    with pytest.raises(TaskError) as refused:
        _handle(**given)
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)


def test_a_refusal_in_the_container_names_the_backend_whose_cfg_it_checked():
    """rsl-rl and skrl agent cfgs differ in shape: the line says which one was read."""
    from training.backends import skrl

    with pytest.raises(TaskError) as refused:
        make_env(TASK, backend=skrl, num_envs=2, seed=None, device="cpu",
                 overrides={"agent.algorithm.learning_rate": "3e-4"})
    assert str(refused.value).startswith("unknown override agent.algorithm: keys under agent:")
    assert str(refused.value).endswith("(skrl's agent cfg, training/agents/skrl)")
    with pytest.raises(TaskError, match=r"\(rsl-rl's agent cfg, training/agents\)$"):
        _handle(**{"agent.algorithm.learnin_rate": "1"})


def test_overrides_apply_to_a_configclass_like_object_by_attribute():
    """Isaac Lab cfgs are (nested) dataclasses: the same paths work by attribute."""
    from dataclasses import dataclass, field

    @dataclass
    class Scene:
        num_envs: int = 16
        env_spacing: float = 2.5

    @dataclass
    class EnvCfg:
        scene: Scene = field(default_factory=Scene)
        episode_length_s: float = 5.0

    cfg = EnvCfg()
    applied = overrides.apply_overrides(cfg, {"env.scene.num_envs": "4096",
                                              "agent.x": "1"}, "env")
    assert cfg.scene.num_envs == 4096 and applied == {"env.scene.num_envs": 4096}
    with pytest.raises(TaskError, match="did you mean env.scene.env_spacing"):
        overrides.apply_overrides(cfg, {"env.scene.env_spacin": "1.0"}, "env")


def test_a_list_for_a_tuple_field_stays_a_tuple():
    """Isaac Lab declares positions, colours and ranges as tuples; YAML only has lists."""
    cfg = {"init_state": {"pos": (0.0, 0.0, 2.0)}}
    applied = overrides.apply_overrides(cfg, {"env.init_state.pos": "[0, 0, 2.5]"}, "env")
    assert cfg["init_state"]["pos"] == (0, 0, 2.5)
    assert isinstance(cfg["init_state"]["pos"], tuple)
    assert applied == {"env.init_state.pos": (0, 0, 2.5)}


@pytest.mark.parametrize(("given", "message"), [
    ({"agent.algorithm": "1"}, "override agent.algorithm=1: agent.algorithm is a section, "
     "not a value; override a key below it, e.g. agent.algorithm.learning_rate=..."),
    ({"agent.algorithm": "[1, 2]"}, "agent.algorithm is a section"),
    ({"agent.actor.hidden_dims": "64"},
     "override agent.actor.hidden_dims=64: expected a list like its current value [8, 8]"),
    ({"agent.algorithm.num_learning_epochs": "2.5"},
     "override agent.algorithm.num_learning_epochs=2.5: expected an int like its current "
     "value 5, not a fraction"),
])
def test_a_section_list_or_int_keeps_its_shape(given, message):
    cfg = {"algorithm": {"learning_rate": 1e-3, "num_learning_epochs": 5},
           "actor": {"hidden_dims": [8, 8]}}
    with pytest.raises(TaskError) as refused:
        overrides.apply_overrides(cfg, given, "agent")
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_what_keeps_the_shape_is_taken():
    """A mapping for a mapping, a list for a list or tuple, an int for a float, a whole
    float for an int."""
    cfg = {"algorithm": {"learning_rate": 1e-3, "num_learning_epochs": 5},
           "actor": {"hidden_dims": [8, 8]}, "pos": (0.0, 1.0)}
    overrides.apply_overrides(cfg, {
        "agent.algorithm": "{learning_rate: 0.01, num_learning_epochs: 2}",
        "agent.actor.hidden_dims": "[4]", "agent.pos": "[1, 2]"}, "agent")
    assert cfg == {"algorithm": {"learning_rate": 0.01, "num_learning_epochs": 2},
                   "actor": {"hidden_dims": [4]}, "pos": (1, 2)}
    overrides.apply_overrides(cfg, {"agent.algorithm.learning_rate": "1",
                                    "agent.algorithm.num_learning_epochs": "3.0"}, "agent")
    assert cfg["algorithm"] == {"learning_rate": 1, "num_learning_epochs": 3.0}


def test_a_cfg_object_section_takes_no_value():
    """Isaac Lab's configclass sections (dataclasses): even a dict would replace the object."""
    from dataclasses import dataclass, field

    @dataclass
    class Algorithm:
        learning_rate: float = 1e-3

    @dataclass
    class AgentCfg:
        algorithm: Algorithm = field(default_factory=Algorithm)

    with pytest.raises(TaskError, match="agent.algorithm is a section"):
        overrides.apply_overrides(AgentCfg(), {"agent.algorithm": "{learning_rate: 1}"},
                                  "agent")


def test_skrl_refuses_a_scalar_for_a_section_before_anything_is_built():
    from training.backends import skrl

    with pytest.raises(TaskError, match="agent.agent is a section"):
        make_env(TASK, backend=skrl, num_envs=2, seed=None, device="cpu",
                 overrides={"agent.agent": "1"})


def test_a_refused_override_changes_nothing():
    cfg = {"a": 1, "b": {"c": 2}}
    with pytest.raises(TaskError):
        overrides.apply_overrides(cfg, {"agent.a": "5", "agent.b.d": "1"}, "agent")
    assert cfg == {"a": 1, "b": {"c": 2}}


def test_the_launcher_reads_flags_over_cfg_overrides():
    config = parse_config(
        ["--override", "agent.seed=3", "--override", "env.num_envs=4"],
        {"TASK": TASK, "CFG_OVERRIDES": json.dumps({"agent.seed": "1", "agent.gamma": 0.5})})
    assert config.overrides == {"agent.seed": "3", "agent.gamma": 0.5, "env.num_envs": "4"}
    with pytest.raises(ConfigError, match="bad override"):
        parse_config(["--override", "seed=3"], {"TASK": TASK})
    with pytest.raises(ConfigError, match="CFG_OVERRIDES is not JSON"):
        parse_config([], {"TASK": TASK, "CFG_OVERRIDES": "{agent.seed: 1"})


def test_overrides_are_params_with_their_typed_values():
    assert overrides.as_params({"agent.algorithm.learning_rate": "3e-4",
                                "agent.actor.hidden_dims": "[8, 8]", "env.name": "x"}) == {
        "override.agent.algorithm.learning_rate": "0.0003",
        "override.agent.actor.hidden_dims": "[8, 8]", "override.env.name": "x"}


@pytest.mark.slow
def test_an_unknown_key_in_the_container_is_one_line_and_exit_2(tmp_path: Path):
    env = launcher_env(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "out",
                       CFG_OVERRIDES=json.dumps({"agent.algorithm.learnin_rate": "1e-3"}))
    done = run_launcher(env, *train_args(1), cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output
    refusal = [line for line in output.splitlines() if "unknown override" in line]
    assert len(refusal) == 1 and "did you mean agent.algorithm.learning_rate" in refusal[0]
    assert not list((tmp_path / "out").rglob("model_*.pt"))  # nothing was trained


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "learning_rate"), [
    ("rsl_rl", "agent.algorithm.learning_rate"), ("skrl", "agent.agent.learning_rate")])
def test_a_launched_run_logs_its_resolved_cfgs_and_typed_overrides(tmp_path: Path, backend,
                                                                   learning_rate):
    """Both backends leave params/env.yaml (the env cfg make_env resolved) and
    params/agent.yaml, and one `override.*` param per override, typed."""
    import yaml
    from launcher_runs import run_id_from
    from mlflow import MlflowClient

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    given = {learning_rate: "3e-4", "env.num_envs": "3", "env.reset_noise_scale": "0.05",
             "agent.seed": "9"}
    env = launcher_env(store, tmp_path / "out", CFG_OVERRIDES=json.dumps(given))
    done = run_launcher(env, *train_args(1, "--backend", backend), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    client = MlflowClient(store)
    run_id = run_id_from(done.stdout)
    params = client.get_run(run_id).data.params
    assert {k: v for k, v in params.items() if k.startswith("override.")} == {
        f"override.{learning_rate}": "0.0003", "override.env.num_envs": "3",
        "override.env.reset_noise_scale": "0.05", "override.agent.seed": "9"}
    files = Path(client.download_artifacts(run_id, "params", str(tmp_path / "got")))
    env_cfg = yaml.safe_load((files / "env.yaml").read_text())
    assert env_cfg == {"id": TASK, "seed": 9, "num_envs": 3, "reset_noise_scale": 0.05}
    agent_cfg = yaml.safe_load((files / "agent.yaml").read_text())
    assert "0.0003" in (files / "agent.yaml").read_text() and agent_cfg["seed"] == 9
