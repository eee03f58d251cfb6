"""training.sweep_report: the numbers of a sweep's table and plot, and the tags a sweep
task's run gets at its start (before any report links it)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from training.sweep_report import summarise, sweep_tags


def test_a_combination_is_the_mean_and_std_over_its_seeds():
    (row,) = summarise({"lr=1e-3": [("1", {0: 1.0, 1: 3.0, 2: 5.0}),
                                    ("2", {0: 3.0, 1: 5.0, 2: 3.0})]})
    assert row["combination"] == "lr=1e-3" and row["seeds"] == ["1", "2"]
    assert row["final_mean"] == 4.0 and row["final_std"] == 1.0  # finals 5 and 3
    assert row["steps"] == [0, 1, 2] and row["means"] == [2.0, 4.0, 4.0]
    assert row["stds"] == [1.0, 1.0, 1.0]
    assert row["best_iteration"] == 1  # the first best step of the seed-mean curve


def test_curves_of_different_lengths_meet_on_the_steps_all_have():
    (row,) = summarise({"a": [("1", {0: 1.0, 1: 2.0, 2: 9.0}), ("2", {0: 3.0, 1: 4.0})]})
    assert row["steps"] == [0, 1] and row["means"] == [2.0, 3.0]
    assert row["final_mean"] == 6.5  # each run's own last value: 9 and 4


def test_a_run_without_metrics_does_not_empty_its_row():
    """A task that failed before its first iteration has a run but no curve."""
    (row,) = summarise({"a": [("1", {0: 1.0, 1: 2.0}), ("2", {})]})
    assert row["seeds"] == ["1", "2"]
    assert row["steps"] == [0, 1] and row["means"] == [1.0, 2.0] and row["stds"] == [0, 0]
    assert row["final_mean"] == 2.0 and row["best_iteration"] == 1


def test_a_combination_with_no_metrics_at_all_has_no_numbers():
    (row,) = summarise({"a": [("1", {})]})
    assert math.isnan(row["final_mean"]) and row["best_iteration"] is None
    assert row["steps"] == [] and row["means"] == []


def test_a_sweep_task_is_tagged_with_its_values_at_start():
    environ = {"SWEEP_ID": "sweep-1", "SWEEP_TASK": "agent.x=1e-3,seed=2",
               "SWEEP_VALUES": json.dumps({"agent.x": "1e-3", "seed": "2"})}
    assert sweep_tags(environ) == {"sweep.id": "sweep-1", "sweep.task": "agent.x=1e-3,seed=2",
                                   "sweep.value.agent.x": "1e-3", "sweep.value.seed": "2"}
    assert sweep_tags({}) == {}  # not a sweep
    # a hand-made task without (or with broken) values keeps its id and label
    assert sweep_tags({**environ, "SWEEP_VALUES": "{"}) == {
        "sweep.id": "sweep-1", "sweep.task": "agent.x=1e-3,seed=2"}


@pytest.mark.slow
def test_a_launch_in_a_sweep_tags_its_run_with_its_values(tmp_path: Path):
    from launcher_runs import launcher_env, run_id_from, run_launcher, train_args
    from mlflow import MlflowClient

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = launcher_env(store, tmp_path / "out", SWEEP_ID="sweep-20260101-000000-abcd",
                       SWEEP_TASK="agent.algorithm.gamma=0.9,seed=3",
                       SWEEP_VALUES=json.dumps({"agent.algorithm.gamma": "0.9", "seed": "3"}))
    done = run_launcher(env, *train_args(1, "--backend", "rsl_rl"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    tags = MlflowClient(store).get_run(run_id_from(done.stdout)).data.tags
    assert tags["sweep.id"] == "sweep-20260101-000000-abcd"
    assert tags["sweep.value.agent.algorithm.gamma"] == "0.9"
    assert tags["sweep.value.seed"] == "3"
