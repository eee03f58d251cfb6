"""A task of the user's own, end to end: the example in src/training/tasks/gantry_reach
(its own MJCF robot) goes through the real client (listed at packaging), bootstrap,
registration and rsl-rl, and its checkpoint resumes; a task package that fails to import
stops the run with one line naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_local_end_to_end import copy_repo_layout, store_client

pytestmark = pytest.mark.slow

SUBMIT = Path(sys.executable).with_name("submit-training")
TASK = "GantryReach-v0"


def submit_local(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SUBMIT), "--local", *args], cwd=repo, capture_output=True,
                          text=True, timeout=300)


def reward_steps(repo: Path, run_id: str) -> list[int]:
    history = store_client(repo).get_metric_history(run_id, "Train/mean_reward")
    return sorted(m.step for m in history)


def test_the_example_task_trains_and_resumes(tmp_path: Path) -> None:
    repo = copy_repo_layout(tmp_path / "repo")
    first = submit_local(repo, "-t", TASK, "-b", "rsl_rl", "-n", "4", "-m", "4")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert f"payload tasks: {TASK} (tasks/gantry_reach/__init__.py)" in first.stderr
    assert f"payload tasks registered: {TASK}" in first.stdout
    assert "it 4/4" in first.stdout
    client = store_client(repo)
    (run,) = client.search_runs(
        [client.get_experiment_by_name(f"isaaclab-{TASK}").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["env_kind"] == "gymnasium"
    assert reward_steps(repo, run.info.run_id) == [0, 1, 2, 3]

    second = submit_local(repo, "-t", TASK, "-b", "rsl_rl", "-n", "4", "-m", "6", "-M", "resume",
                          "-c", f"runs:/{run.info.run_id}/checkpoints/final")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "it 6/6" in second.stdout and "it 1/" not in second.stdout
    resumed = client.search_runs([run.info.experiment_id],
                                 order_by=["attributes.start_time DESC"])[0]
    assert resumed.info.run_id != run.info.run_id
    assert reward_steps(repo, resumed.info.run_id) == [4, 5]


def test_a_task_package_that_fails_to_import_is_named_in_one_line(tmp_path: Path) -> None:
    repo = copy_repo_layout(tmp_path / "repo")
    broken = repo / "src/training/tasks/broken/__init__.py"
    broken.parent.mkdir()
    broken.write_text('import gymnasium\n\ngymnasium.register(id="Broken-v0", '
                      'entry_point="nowhere:Env")\nimport reward_terms_not_written_yet\n')
    result = submit_local(repo, "-t", "Broken-v0", "-n", "2", "-m", "1")
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: cannot import task module training.tasks.broken: "
                      "ModuleNotFoundError: No module named 'reward_terms_not_written_yet'"]
    # The traceback is in the task log, for whoever debugs it.
    (log,) = (repo / ".osmo-inline" / "runs").glob("*/task.log")
    assert "Traceback" in log.read_text()


def test_the_example_task_trains_with_skrl_too(tmp_path: Path) -> None:
    """The same task package, -b skrl: registered the same way, skrl's default cfg
    (agents/skrl/default.yaml), its own metric names and our checkpoints."""
    repo = copy_repo_layout(tmp_path / "repo")
    result = submit_local(repo, "-t", TASK, "-b", "skrl", "-n", "4", "-m", "3")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"payload tasks registered: {TASK}" in result.stdout and "it 3/3" in result.stdout
    client = store_client(repo)
    (run,) = client.search_runs(
        [client.get_experiment_by_name(f"isaaclab-{TASK}").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["backend"] == "skrl"
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id,
                                                             "Loss / Value loss"))
    assert steps == [0, 1, 2]
    assert "model_3.pt" in {Path(f.path).name for f in
                            client.list_artifacts(run.info.run_id, "checkpoints/final")}
