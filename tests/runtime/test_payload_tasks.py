"""The payload's own tasks in the runtime: registered before the task is looked up (every
package under training/tasks/, then --task-module / TASK_MODULES), import failures as one
line, Isaac Lab style entry points into the payload resolved by Isaac Lab's own code, and
requirements lines that would replace the image's packages refused before any install.

Each test runs a copy of the payload (src/training) in a subprocess, as the bootstrap does
(the copy's ``src`` first on PYTHONPATH), so that what a user adds to the payload is what
the runtime sees."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from launcher_runs import assert_clean_failure, launcher_env, run_launcher
from support.isaaclab_extension import ISAACLAB_EXTENSION
from support.lib_versions import DEPS_DIR

from training.config import ConfigError, parse_config

REPO_SRC = Path(__file__).resolve().parents[2] / "src"
ISAACLAB_30 = DEPS_DIR / "isaaclab-3.0.0"  # scripts/setup.sh installs the wheel's sources


def payload_copy(root: Path) -> Path:
    """A copy of src/training under root/src, as the bootstrap extracts it; returns root/src."""
    shutil.copytree(REPO_SRC / "training", root / "src" / "training",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return root / "src"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def payload_env(src: Path, tmp_path: Path, *front: Path, **extra: str) -> dict[str, str]:
    env = launcher_env(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "out", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(src), *map(str, front), env["PYTHONPATH"]])
    return env


def run_python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_task_modules_come_from_flags_or_the_environment() -> None:
    environ = {"TASK": "GantryReach-v0", "TASK_MODULES": "my_robot.tasks, vendor,x"}
    assert parse_config([], environ).task_modules == ("my_robot.tasks", "vendor", "x")
    assert parse_config(["--task-module", "a", "--task-module", "b.c"],
                        environ).task_modules == ("a", "b.c")
    assert parse_config([], {"TASK": "t", "TASK_MODULES": ""}).task_modules == ()
    with pytest.raises(ConfigError, match="'my-robot' is not a dotted Python module name"):
        parse_config(["--task-module", "my-robot"], environ)


@pytest.mark.slow
def test_a_task_package_that_raises_on_import_is_one_line_exit_2(tmp_path: Path) -> None:
    src = payload_copy(tmp_path / "payload")
    write(src / "training/tasks/broken/__init__.py", '''\
        import gymnasium

        gymnasium.register(id="Broken-v0", entry_point="nowhere:Env")
        raise RuntimeError("reward terms are not defined yet")
        ''')
    result = run_launcher(payload_env(src, tmp_path), "--task", "Broken-v0", "--num_envs", "2",
                          cwd=tmp_path)
    assert_clean_failure(result, 2, "cannot import task module training.tasks.broken",
                         "RuntimeError: reward terms are not defined yet")
    # Where it failed is in the task log (stdout), not on the user's screen.
    assert "Traceback" in result.stdout and 'raise RuntimeError("reward' in result.stdout


@pytest.mark.slow
def test_a_top_level_task_module_in_the_payload_registers_its_task(tmp_path: Path) -> None:
    """--task-module names a package shipped at src/training/<name>/ by its own name: its
    absolute imports of itself work, and make_env builds the task it registers."""
    src = payload_copy(tmp_path / "payload")
    write(src / "training/my_robot/__init__.py", '''\
        import gymnasium

        from my_robot.tasks import ENTRY_POINT  # the package imports itself by its own name

        gymnasium.register(id="MyRobot-Reach-v0", entry_point=ENTRY_POINT,
                           max_episode_steps=50)
        ''')
    write(src / "training/my_robot/tasks.py",
          'ENTRY_POINT = "training.tasks.gantry_reach.env:GantryReachEnv"\n')
    result = run_python('''\
        from training.backends import load_backend
        from training.envs import make_env

        handle = make_env("MyRobot-Reach-v0", backend=load_backend("rsl_rl"), num_envs=2,
                          seed=3, device="cpu", task_modules=["my_robot"])
        print("built", handle.kind, handle.env.num_envs, handle.env.num_actions)
        ''', payload_env(src, tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "payload tasks registered: GantryReach-v0, MyRobot-Reach-v0" in result.stdout
    assert "built gymnasium 2 2" in result.stdout


@pytest.mark.slow
def test_a_torch_pin_is_refused_before_anything_is_installed(tmp_path: Path) -> None:
    src = payload_copy(tmp_path / "payload")
    requirements = src / "training/requirements.txt"
    # A missing package first: were the pin not refused first, pip would be run for it.
    requirements.write_text(requirements.read_text() + "osmo-inline-absent>=1\ntorch==2.5.0\n")
    env = payload_env(src, tmp_path)
    env.pop("SKIP_PIP_INSTALL")  # installing is allowed: the refusal must come before it
    env["PIP_NO_INDEX"] = "1"  # and were it to come after, pip would still stay offline
    result = run_launcher(env, "--task", "GantryReach-v0", "--num_envs", "2", cwd=tmp_path)
    assert_clean_failure(result, 2, "requirements.txt: torch==2.5.0 would replace what the "
                         "image ships")
    assert "installing" not in result.stdout + result.stderr
    assert "osmo-inline-absent" not in result.stdout + result.stderr


@pytest.mark.slow
def test_isaaclab_entry_points_into_the_payload_resolve_with_isaaclabs_own_code(
    tmp_path: Path,
) -> None:
    """Isaac Lab 3.0's real ``load_cfg_from_registry`` (its isaaclab_tasks imports without
    Isaac Sim) resolves all three cfg kinds of a payload task our registration imported."""
    if not (ISAACLAB_30 / "isaaclab_tasks").is_dir():
        pytest.fail(f"{ISAACLAB_30} is missing: run scripts/setup.sh")
    src = payload_copy(tmp_path / "payload")
    for name, text in ISAACLAB_EXTENSION.items():
        write(src / "training" / name, text)
    result = run_python('''\
        import json

        from training.envs.tasks import register_payload_tasks

        registered = register_payload_tasks(["my_robot"])
        from isaaclab_tasks.utils.parse_cfg import load_cfg_from_registry

        task = "MyRobot-Reach-v0"
        env_cfg = load_cfg_from_registry(task, "env_cfg_entry_point")
        agent_cfg = load_cfg_from_registry(task, "rsl_rl_cfg_entry_point")
        skrl_cfg = load_cfg_from_registry(task, "skrl_cfg_entry_point")
        print("RESULT " + json.dumps({
            "registered": registered,
            "env_cfg": [type(env_cfg).__qualname__, env_cfg.episode_length_s],
            "agent_cfg": [type(agent_cfg).__module__, agent_cfg.experiment_name,
                          agent_cfg.to_dict()["num_steps_per_env"]],
            "skrl_cfg": skrl_cfg,
        }))
        ''', payload_env(src, tmp_path, ISAACLAB_30), tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    found = json.loads(line.removeprefix("RESULT "))
    assert "MyRobot-Reach-v0" in found["registered"]
    assert found["env_cfg"] == ["ReachEnvCfg", 4.0]
    assert found["agent_cfg"] == ["my_robot.tasks.reach.agents.rsl_rl_ppo_cfg",
                                  "my_robot_reach", 24]
    assert found["skrl_cfg"] == {"seed": 42, "agent": {"class": "PPO", "rollouts": 24},
                                 "trainer": {"timesteps": 7200}}


def test_a_payload_isaaclab_registration_without_isaaclab_says_so() -> None:
    """A registration with an env_cfg_entry_point is an Isaac Lab task, never handed to the
    gymnasium adapter; without Isaac Lab that is one line saying so."""
    import gymnasium

    from training.backends import load_backend
    from training.envs import TaskError, make_env

    gymnasium.register(id="MyRobot-Stand-v0", entry_point="isaaclab.envs:ManagerBasedRLEnv",
                       kwargs={"env_cfg_entry_point": "my_robot.stand:StandEnvCfg"})
    try:
        with pytest.raises(TaskError, match="MyRobot-Stand-v0 is an Isaac Lab task but "
                                            "isaaclab is not installed here"):
            make_env("MyRobot-Stand-v0", backend=load_backend("rsl_rl"), num_envs=2, seed=0,
                     device="cpu")
    finally:
        del gymnasium.registry["MyRobot-Stand-v0"]


@pytest.mark.slow
def test_the_launcher_imports_task_modules(tmp_path: Path) -> None:
    src = payload_copy(tmp_path / "payload")
    write(src / "training/my_robot/__init__.py", 'raise ImportError("imported by the launcher")\n')
    result = run_launcher(payload_env(src, tmp_path, TASK_MODULES="my_robot"),
                          "--task", "MyRobot-Reach-v0", "--num_envs", "2", cwd=tmp_path)
    assert_clean_failure(result, 2, "cannot import task module my_robot: ImportError: "
                         "imported by the launcher")
