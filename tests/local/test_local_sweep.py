"""A local sweep end to end: four real training runs under one MLflow parent, the report's
table and a real PNG plot; a retried sweep task resumes its own run, not a sibling's."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from local_specs import run_dirs
from test_local_end_to_end import copy_repo_layout, store_client

pytestmark = pytest.mark.slow

SUBMIT = Path(sys.executable).with_name("submit-training")
TINY = ["-t", "InvertedPendulum-v5", "-n", "4", "-q", "-b", "rsl_rl"]  # rsl-rl's names


def submit(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SUBMIT), "--local", *args], cwd=repo, capture_output=True,
                          text=True, timeout=580)


def most_at_once(runs) -> int:
    """The most runs that were under way at the same moment (from MLflow's start/end)."""
    events = sorted([(r.info.start_time, 1) for r in runs] + [(r.info.end_time, -1) for r in runs])
    running = most = 0
    for _, change in events:  # an end at the same millisecond as a start counts first
        running += change
        most = max(most, running)
    return most


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_2x2_sweep_makes_four_runs_under_a_parent_a_table_and_a_plot(tmp_path: Path, jobs):
    from PIL import Image

    repo = copy_repo_layout(tmp_path / "repo")
    result = submit(repo, *TINY, "-m", "3", "-j", jobs, "--sweep",
                    "agent.algorithm.learning_rate=1e-3,3e-4", "--sweep", "seed=1,2")
    assert result.returncode == 0, result.stdout + result.stderr
    client = store_client(repo)
    (parent,) = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                   filter_string="tags.`sweep.parent` = 'true'")
    sweep_id = parent.data.tags["sweep.id"]
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted((r.data.tags["sweep.value.agent.algorithm.learning_rate"],
                   r.data.tags["sweep.value.seed"]) for r in children) == [
        ("1e-3", "1"), ("1e-3", "2"), ("3e-4", "1"), ("3e-4", "2")]
    assert {r.data.tags["sweep.id"] for r in children} == {sweep_id}
    assert sorted(r.data.params["seed"] for r in children) == ["1", "1", "2", "2"]
    # -j N: N tasks' runs under way at once, never more (a run lies within its process)
    assert most_at_once(children) == int(jobs)
    for index in range(4):  # every line a task printed carries its name
        assert f"[isaac-training-{index}] local run " in result.stderr
    assert len(run_dirs(repo)) == 4  # each task its own run directory

    table = result.stdout.splitlines()
    header = next(i for i, line in enumerate(table) if line.startswith("combination"))
    assert "final mean return" in table[header] and "best iteration" in table[header]
    rows = table[header + 1: header + 3]
    assert [row.split()[0] for row in rows] == ["agent.algorithm.learning_rate=1e-3",
                                                "agent.algorithm.learning_rate=3e-4"]
    assert all(row.split()[1] == "1,2" and "±" in row for row in rows)

    png = repo / ".tmp" / "sweeps" / f"{sweep_id}.png"
    with Image.open(png) as image:
        image.load()  # decodes the whole file
        assert image.format == "PNG" and image.size == (800, 500)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colours) > 2  # not a blank canvas: lines, bands, text
    assert {(31, 119, 180), (255, 127, 14)} <= {c for _, c in colours}  # one per combination
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "sweep")}
    assert logged == {f"sweep/{sweep_id}.png", "sweep/report.txt"}


def test_a_retried_sweep_task_resumes_its_own_run(tmp_path: Path):
    """Both tasks share OSMO's workflow id; each must continue its own run (its seed's)."""
    repo = copy_repo_layout(tmp_path / "repo")
    sweep = ["--workflow-id", "wf-retry", "--sweep", "seed=1,2", "--", "save_interval=1"]
    first = submit(repo, *TINY, "-m", "2", *sweep)
    assert first.returncode == 0, first.stdout + first.stderr
    client = store_client(repo)
    experiments = [e.experiment_id for e in client.search_experiments()]

    def runs_by_seed() -> dict[str, list[str]]:
        runs = client.search_runs(experiments, filter_string="tags.workflow_id LIKE 'wf-retry%'")
        by_seed: dict[str, list[str]] = {}
        for run in runs:
            by_seed.setdefault(run.data.params["seed"], []).append(run.info.run_id)
        return by_seed

    before = runs_by_seed()
    assert sorted(before) == ["1", "2"] and all(len(ids) == 1 for ids in before.values())
    # the report on its own, later, from the record the sweep left
    (record,) = (repo / ".tmp" / "sweeps").glob("*.json")
    report = subprocess.run([str(SUBMIT), "--sweep-report", record.stem], cwd=repo,
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stdout + report.stderr
    lines = report.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("combination"))
    assert lines[header + 1].split()[:2] == ["(all)", "1,2"] and "±" in lines[header + 1]
    assert (repo / ".tmp" / "sweeps" / f"{record.stem}.png").is_file()
    unknown = subprocess.run([str(SUBMIT), "--sweep-report", "sweep-nope"], cwd=repo,
                             capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr.count("\n") == 1 and "no sweep 'sweep-nope' recorded" in unknown.stderr
    assert record.stem in unknown.stderr  # the known ids are named
    again = submit(repo, *TINY, "-m", "3", *sweep)  # the retry: same workflow id, more work
    assert again.returncode == 0, again.stdout + again.stderr
    assert runs_by_seed() == before  # no new run, none continued by the other seed
    for (run_id,) in before.values():
        steps = [m.step for m in client.get_metric_history(run_id, "Train/mean_reward")]
        assert sorted(steps) == [0, 1, 2]  # continued to iteration 3 in the same run


def test_ctrl_c_during_a_parallel_sweep_stops_every_running_task(tmp_path: Path):
    """-j 2 over three seeds: the signal reaches both running tasks, each stores its
    checkpoint and exits 75 as a single local run does, and the third never starts.
    (SIGTERM takes the same handler, sweep_jobs._Stop.)"""
    signum = signal.SIGINT
    repo = copy_repo_layout(tmp_path / "repo")
    process = subprocess.Popen(
        [str(SUBMIT), "--local", "-t", "InvertedPendulum-v5", "-b", "rsl_rl", "-n", "4",
         "-m", "10000", "-j", "2", "--sweep", "seed=1,2,3"],
        cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        training = set()
        for line in process.stdout:  # wait until both tasks are training
            if line.split("] ", 1)[-1].startswith("it 2/"):
                training.add(line.split("]", 1)[0])
                if len(training) == 2:
                    break
        process.send_signal(signum)
        out, err = process.communicate(timeout=180)
    finally:
        process.kill()
    assert process.returncode == 75, out + err
    assert training == {"[isaac-training-0", "[isaac-training-1"}
    client = store_client(repo)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 2  # the third task never started
    assert f"stopped by {signal.Signals(signum).name}, 1 of 3 tasks not started" in err
    assert "[isaac-training-2]" not in out + err
    for index in (0, 1):
        stopped = re.search(rf"\[isaac-training-{index}\] stopped at iteration (\d+): "
                            r"(model_\1\.pt) stored; exiting 75", out)
        assert stopped, out + err
        (run,) = [r for r in runs if r.data.tags["workflow_id"].endswith(f"-t{index}")]
        assert run.info.status in ("FAILED", "KILLED")
        # tagged with its values at its start: no report ran to link them
        assert run.data.tags["sweep.value.seed"] == str(index + 1)
        stored = {Path(a.path).name for a in client.list_artifacts(run.info.run_id,
                                                                   "checkpoints")}
        assert stopped.group(2) in stored, stored
        assert f"[isaac-training-{index}] local run " in err
    assert "combination" not in out  # no report after a stop
