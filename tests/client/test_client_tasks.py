"""The payload's own tasks and requirements, as the client sees them without running the
payload: `-t` checked against the ids its registration calls name (read statically), the
task modules carried to the container, and requirements lines that would replace the image's
packages refused, all before anything is written or submitted."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from support.isaaclab_extension import ISAACLAB_EXTENSION

from osmo_inline import requirements
from osmo_inline.payload_tasks import GYMNASIUM_IDS_FILE, gymnasium_ids

REGISTRATION = '''\
import gymnasium

gymnasium.register(id="GantryReach-v0", entry_point=f"{__name__}.env:GantryReachEnv")
'''


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


@pytest.fixture
def own_task(project: Path) -> Path:
    write(project / "src/training/tasks/__init__.py", '"""Our tasks."""\n')
    write(project / "src/training/tasks/gantry_reach/__init__.py", REGISTRATION)
    return project


def spec_environment(stdout: str) -> dict[str, str]:
    return yaml.safe_load(stdout)["workflow"]["tasks"][0]["environment"]


def test_dry_run_lists_the_payload_tasks(own_task, submit) -> None:
    result = submit("-t", "GantryReach-v0", "--dry-run")
    assert result.code == 0, result.stderr
    assert "payload tasks: GantryReach-v0 (tasks/gantry_reach/__init__.py)" in result.stderr
    assert spec_environment(result.stdout)["TASK"] == "GantryReach-v0"


def test_a_misspelt_payload_task_is_refused_with_the_payload_id(own_task, submit) -> None:
    result = submit("-t", "GantryRaech-v0", "--dry-run")
    assert result.code == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "unknown task 'GantryRaech-v0': did you mean GantryReach-v0?" in line
    assert not (own_task / ".tmp").exists()  # nothing written


def test_submit_checks_the_task_before_calling_osmo(own_task, submit, fake_osmo) -> None:
    result = submit("-t", "GantryRaech-v0")
    assert result.code == 2 and "did you mean GantryReach-v0?" in result.stderr
    assert fake_osmo.calls() == []


@pytest.mark.parametrize(("task", "accepted"), [
    ("HalfCheetah-v5", True),  # gymnasium's own, from the committed list
    ("Isaac-Cartpole-v0", True),  # Isaac Lab's (the image's registry decides)
    ("HalfCheetah-v9", False),
])
def test_gymnasium_and_isaaclab_ids_need_no_payload_registration(project, submit, task,
                                                                 accepted) -> None:
    result = submit("-t", task, "--dry-run", "-q")
    assert (result.code == 0) is accepted, result.stderr
    if not accepted:
        assert "did you mean HalfCheetah-v5" in result.stderr


def test_an_extension_package_named_by_task_module_is_read_and_sent(project, submit) -> None:
    for name, text in ISAACLAB_EXTENSION.items():
        write(project / "src/training" / name, text)
    result = submit("-t", "MyRobot-Reach-v0", "--task-module", "my_robot", "--task-module",
                    "training.my_robot.tasks", "--dry-run")
    assert result.code == 0, result.stderr
    assert "payload tasks: MyRobot-Reach-v0 (my_robot/tasks/reach/__init__.py)" in result.stderr
    assert spec_environment(result.stdout)["TASK_MODULES"] == "my_robot,training.my_robot.tasks"
    # Without the module the registration is not imported in the container: refused, saying
    # what to pass.
    result = submit("-t", "MyRobot-Reach-v0", "--dry-run", "-q")
    assert result.code == 2
    assert result.stderr.splitlines() == [
        "submit-training: error: task MyRobot-Reach-v0 is registered in "
        "src/training/my_robot/tasks/reach/__init__.py, which the container does not import: "
        "pass --task-module my_robot (or move it under src/training/tasks/)"]


def test_task_modules_from_the_environment(project, submit, monkeypatch) -> None:
    monkeypatch.setenv("TASK_MODULES", "vendor_tasks, other.tasks")
    result = submit("-t", "Vendor-Reach-v0", "--dry-run")
    # Modules not in the payload come from the image: their ids cannot be read here.
    assert result.code == 0, result.stderr
    assert "task module vendor_tasks is not in the payload" in result.stderr
    assert spec_environment(result.stdout)["TASK_MODULES"] == "vendor_tasks,other.tasks"


@pytest.mark.parametrize(("argv", "message"), [
    (["--task-module", "training.tasks.nope"], "task module training.tasks.nope is not in "
     "the payload"),
    (["--task-module", "my-robot"], "--task-module: 'my-robot' is not a dotted Python module"),
])
def test_bad_task_modules_are_one_line(own_task, submit, argv, message) -> None:
    result = submit("-t", "GantryReach-v0", *argv, "--dry-run")
    assert result.code == 2
    (line,) = result.stderr.splitlines()
    assert message in line


def test_registration_forms_the_static_read_understands(project, submit) -> None:
    write(project / "src/training/tasks/forms/__init__.py", '''\
        from gymnasium.envs.registration import register as add_task
        import gymnasium.envs

        add_task("Positional-v0", entry_point="x:Y")
        gymnasium.envs.registration.register(id="Dotted-v0", entry_point="x:Y")
        for size in (1, 2):
            add_task(id=f"Sized{size}-v0", entry_point="x:Y")
        ''')
    write(project / "src/training/tasks/other/__init__.py",
          'def register(id):\n    pass\n\nregister(id="NotGymnasium-v0")\n')
    result = submit("-t", "Positional-v0", "--dry-run", "-q")
    assert result.code == 0, result.stderr
    result = submit("-t", "Dotted-v0", "--dry-run")
    assert "payload tasks: Dotted-v0 (tasks/forms/__init__.py), Positional-v0" in result.stderr
    assert "NotGymnasium" not in result.stderr
    # An id that is not a literal may be the one asked for: a note, not a refusal.
    result = submit("-t", "Sized2-v0", "--dry-run")
    assert result.code == 0, result.stderr
    assert "1 id(s) that are not literal strings" in result.stderr


def test_a_torch_pin_in_requirements_is_refused_before_anything(own_task, submit,
                                                                 fake_osmo) -> None:
    write(own_task / "src/training/requirements.txt",
          "mlflow>=2.16\nmy-extra==1.0  # ours\ntorch==2.5.0\nIsaacLab_Tasks\n")
    for argv in (["--dry-run"], []):
        result = submit("-t", "GantryReach-v0", *argv)
        assert result.code == 2
        (line,) = result.stderr.splitlines()
        assert "'torch==2.5.0' (line 3), 'IsaacLab_Tasks' (line 4) would replace" in line
        assert "my-extra" not in line
    assert fake_osmo.calls() == [] and not (own_task / ".tmp").exists()


def test_the_client_and_the_runtime_refuse_the_same_packages() -> None:
    from training import deps

    assert requirements.IMAGE_DISTRIBUTIONS == deps.IMAGE_DISTRIBUTIONS
    assert requirements.IMAGE_FAMILIES == deps.IMAGE_FAMILIES


def test_the_gymnasium_id_list_is_the_installed_gymnasiums() -> None:
    # A fresh interpreter: what gymnasium registers on import, not what other tests of this
    # process (a pytest-xdist worker runs many) registered since (GantryReach-v0, ...).
    listed = subprocess.run([sys.executable, "-c", "import gymnasium\n"
                             "print('\\n'.join(sorted(gymnasium.registry)))"],
                            capture_output=True, text=True, check=True, timeout=120)
    assert gymnasium_ids() == listed.stdout.split(), (
        f"{GYMNASIUM_IDS_FILE.name} is stale: run scripts/gymnasium_ids.py")

