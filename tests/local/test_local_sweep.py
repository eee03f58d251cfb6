"""A local sweep end to end: four real training runs under one MLflow parent, the report's
table and a real PNG plot; a retried sweep task resumes its own run, not a sibling's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_local_end_to_end import copy_repo_layout, store_client

pytestmark = pytest.mark.slow

SUBMIT = Path(sys.executable).with_name("submit-training")
TINY = ["-t", "InvertedPendulum-v5", "-n", "4", "-q"]


def submit(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SUBMIT), "--local", *args], cwd=repo, capture_output=True,
                          text=True, timeout=580)


def test_a_2x2_sweep_makes_four_runs_under_a_parent_a_table_and_a_plot(tmp_path: Path):
    from PIL import Image

    repo = copy_repo_layout(tmp_path / "repo")
    result = submit(repo, *TINY, "-m", "3", "--sweep",
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
    again = submit(repo, *TINY, "-m", "3", *sweep)  # the retry: same workflow id, more work
    assert again.returncode == 0, again.stdout + again.stderr
    assert runs_by_seed() == before  # no new run, none continued by the other seed
    for (run_id,) in before.values():
        steps = [m.step for m in client.get_metric_history(run_id, "Train/mean_reward")]
        assert sorted(steps) == [0, 1, 2]  # continued to iteration 3 in the same run
