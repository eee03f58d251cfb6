"""`--sweep`: one validated workflow with one task per combination, shown at --dry-run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from osmo_inline.sweep import MAX_TASKS
from osmo_inline.validate import validate_spec

REPO = Path(__file__).resolve().parents[2]
GRID = ["--sweep", "agent.algorithm.learning_rate=1e-3,3e-4", "--sweep", "seed=1,2"]


@pytest.fixture
def agents(project):
    shutil.copytree(REPO / "src" / "training" / "agents", project / "src/training/agents")
    return project


def test_a_2x2_sweep_is_one_valid_spec_with_a_task_per_combination(agents, submit):
    result = submit("-t", "InvertedPendulum-v5", "-q", *GRID, "--", "--dry-run",
                    "agent.algorithm.gamma=0.98")
    assert result.code == 0, result.stderr
    assert validate_spec(result.stdout) == []
    tasks = yaml.safe_load(result.stdout)["workflow"]["tasks"]
    assert [t["name"] for t in tasks] == [f"isaac-training-{i}" for i in range(4)]
    seen = []
    for index, task in enumerate(tasks):
        env = task["environment"]
        overrides = json.loads(env["CFG_OVERRIDES"])
        seen.append((overrides["agent.algorithm.learning_rate"], env["SEED"]))
        assert overrides["agent.algorithm.gamma"] == "0.98"  # the fixed override stays
        assert env["WORKFLOW_ID"] == f"{{{{workflow_id}}}}-t{index}"  # its own resume key
        assert env["SWEEP_TASK"] == (f"agent.algorithm.learning_rate="
                                     f"{seen[-1][0]},seed={seen[-1][1]}")
        assert json.loads(env["SWEEP_VALUES"]) == {  # what the run is tagged with at start
            "agent.algorithm.learning_rate": seen[-1][0], "seed": seen[-1][1]}
        assert "inputs" not in task  # no task waits for another: they run side by side
    assert seen == [("1e-3", "1"), ("1e-3", "2"), ("3e-4", "1"), ("3e-4", "2")]
    assert len({t["environment"]["SWEEP_ID"] for t in tasks}) == 1


def test_dry_run_lists_every_task_and_the_total_resources(agents, submit):
    result = submit("-t", "InvertedPendulum-v5", "--gpu", "2", "--memory", "16Gi", *GRID,
                    "--", "--dry-run")
    assert result.code == 0, result.stderr
    assert ": 4 tasks, in parallel" in result.stderr
    for label in ("agent.algorithm.learning_rate=1e-3,seed=1",
                  "agent.algorithm.learning_rate=3e-4,seed=2"):
        assert label in result.stderr
    assert "total: gpu 8, cpu 32, memory 64Gi, storage 320Gi" in result.stderr


def test_a_sweep_over_the_limit_needs_yes(agents, submit):
    many = ",".join(str(n) for n in range(MAX_TASKS + 1))
    refused = submit("-t", "InvertedPendulum-v5", "--sweep", f"seed={many}", "--",
                     "--dry-run")
    assert refused.code == 2 and refused.stdout == ""
    assert f"{MAX_TASKS + 1} tasks, more than {MAX_TASKS}: pass --yes" in refused.stderr
    allowed = submit("-t", "InvertedPendulum-v5", "-q", "--yes", "--sweep", f"seed={many}",
                     "--", "--dry-run")
    assert allowed.code == 0, allowed.stderr
    assert len(yaml.safe_load(allowed.stdout)["workflow"]["tasks"]) == MAX_TASKS + 1


def test_list_values_keep_their_commas(agents, submit):
    result = submit("-t", "InvertedPendulum-v5", "-q", "--sweep",
                    "agent.actor.hidden_dims=[32,32],[64,64]", "--", "--dry-run")
    assert result.code == 0, result.stderr
    tasks = yaml.safe_load(result.stdout)["workflow"]["tasks"]
    assert [json.loads(t["environment"]["CFG_OVERRIDES"]) for t in tasks] == [
        {"agent.actor.hidden_dims": "[32,32]"}, {"agent.actor.hidden_dims": "[64,64]"}]


@pytest.mark.parametrize(("sweep", "after", "message"), [
    ("seed", (), "bad --sweep 'seed'"),
    ("seed=1,,2", (), "every value must be given once"),
    ("seed=1,1", (), "every value must be given once"),
    ("num_envs=4,8", (), "num_envs is set by a flag"),
    ("agent.algorithm.learnin_rate=1,2", (), "did you mean agent.algorithm.learning_rate"),
    ("seeds=1,2", (), "unknown template value 'seeds': did you mean seed?"),
    # the same key swept and given after --: neither may silently win
    ("seed=1,2", ("seed=5",), "--sweep seed and seed=5 after -- both set seed"),
    ("agent.algorithm.learning_rate=1e-3,1e-4", ("agent.algorithm.learning_rate=3e-4",),
     "--sweep agent.algorithm.learning_rate and agent.algorithm.learning_rate=3e-4 after -- "
     "both set agent.algorithm.learning_rate"),
])
def test_a_bad_sweep_is_one_line_and_exit_2(agents, submit, sweep, after, message):
    result = submit("-t", "InvertedPendulum-v5", "--sweep", sweep, "--", "--dry-run", *after)
    assert result.code == 2
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_submitting_a_sweep_records_it_for_the_report(agents, submit, fake_osmo):
    result = submit("-t", "InvertedPendulum-v5", "-q", *GRID, "--",
                    "mlflow_tracking_uri=http://127.0.0.1:5000")
    assert result.code == 0, result.stderr
    (submitted,) = [c for c in fake_osmo.calls() if c["argv"][:2] == ["workflow", "submit"]]
    (record_file,) = (agents / ".tmp" / "sweeps").glob("*.json")
    record = json.loads(record_file.read_text())
    assert record["tracking_uri"] == "http://127.0.0.1:5000"
    assert [t["values"] for t in record["tasks"]][0] == {
        "agent.algorithm.learning_rate": "1e-3", "seed": "1"}
    workflow_id = record["workflow_id"]
    assert workflow_id and [t["workflow_id"] for t in record["tasks"]] == [
        f"{workflow_id}-t{i}" for i in range(4)]
    assert f"--sweep-report {record['sweep_id']}" in result.stderr


@pytest.mark.parametrize(("flags", "message"), [
    (["-j", "0", "--local", "--sweep", "seed=1,2"], "-j/--jobs must be a positive integer, "
     "not '0'"),
    (["-j", "-2", "--local", "--sweep", "seed=1,2"], "not '-2'"),
    (["--jobs", "two", "--local", "--sweep", "seed=1,2"], "not 'two'"),
    (["-j", "1.5", "--local", "--sweep", "seed=1,2"], "not '1.5'"),
    (["-j", "2", "--sweep", "seed=1,2"], "-j/--jobs only applies to a local sweep"),
    (["-j", "2", "--local"], "-j/--jobs only applies to a local sweep"),
])
def test_a_bad_jobs_count_is_one_line_and_exit_2(agents, submit, flags, message):
    result = submit("-t", "InvertedPendulum-v5", *flags, "--", "--dry-run")
    assert result.code == 2 and result.stdout == ""
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not (agents / ".tmp").exists() and not (agents / ".osmo-inline").exists()


def test_sweep_values_with_quotes_arrive_as_written(agents, submit):
    """SWEEP_VALUES is JSON inside YAML: a quote in a value must not end either."""
    result = submit("-t", "InvertedPendulum-v5", "-q", "--sweep", "env.name=it's \"x\",b",
                    "--", "--dry-run")
    assert result.code == 0, result.stderr
    assert validate_spec(result.stdout) == []
    tasks = yaml.safe_load(result.stdout)["workflow"]["tasks"]
    assert [json.loads(t["environment"]["SWEEP_VALUES"]) for t in tasks] == [
        {"env.name": "it's \"x\""}, {"env.name": "b"}]
