"""Several ranks through the real client, bootstrap and runtime: `--local --gpu 2` (two gloo
ranks in one task) and `--local --nodes 2 --gpu 1` (two "nodes" as two task processes meeting
on loopback) each train one MLflow run written by global rank 0 alone; a retry of the two-node
run with the same workflow id resumes that run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from test_local_end_to_end import SUBMIT, copy_repo_layout, metric_steps, runs_of

pytestmark = pytest.mark.slow

TRAIN = ["--task", "InvertedPendulum-v5", "--num-envs", "4", "--max-iterations", "4"]


def submit(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SUBMIT), "--local", *TRAIN, *args], cwd=repo,
                          capture_output=True, text=True, timeout=600)


def test_two_ranks_in_one_task_train_one_run(tmp_path: Path) -> None:
    repo = copy_repo_layout(tmp_path / "repo")
    result = submit(repo, "--gpu", "2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (run,) = runs_of(repo)  # rank 1 trained too, but never opened a run
    assert run.info.status == "FINISHED"
    assert (run.data.params["world_size"], run.data.params["nnodes"]) == ("2", "1")


def test_two_nodes_on_loopback_train_one_run_and_a_retry_resumes_it(tmp_path: Path) -> None:
    repo = copy_repo_layout(tmp_path / "repo")
    first = submit(repo, "--nodes", "2", "--gpu", "1", "--workflow-id", "two-nodes",
                   "--max-iterations", "2")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "[isaac-training-node-1]" in first.stdout + first.stderr  # both nodes ran
    (run,) = runs_of(repo)
    assert (run.data.params["world_size"], run.data.params["nnodes"]) == ("2", "2")

    # The same workflow id again (OSMO's retry of the group), now to 4 iterations in total.
    retry = submit(repo, "--nodes", "2", "--gpu", "1", "--workflow-id", "two-nodes")
    assert retry.returncode == 0, retry.stdout[-3000:] + retry.stderr[-3000:]
    (resumed,) = runs_of(repo)
    assert resumed.info.run_id == run.info.run_id
    assert resumed.info.status == "FINISHED"
    output = retry.stdout + retry.stderr
    for rank in (0, 1):  # both nodes' ranks continued from the first attempt's last checkpoint
        assert f"rank {rank}: starting from model_2.pt, iteration 2" in output, output[-3000:]
    assert metric_steps(repo, run.info.run_id) == [0, 1, 2, 3]
