"""Several ranks: `python -m training.launch` with NPROC_PER_NODE / NNODES becomes torchrun's
supervisor; the ranks train with gloo on this CPU machine, rank 0 alone writes to MLflow.
Real processes (torchrun, ranks), real signals, real rsl-rl training, a real `mlflow server`
on 127.0.0.1; every rendezvous on a free loopback port."""

from __future__ import annotations

import io
import os
import re
import signal
import time
import uuid
from pathlib import Path

import mlflow
import pytest
from launcher_runs import (
    all_runs,
    artifact_names,
    assert_clean_failure,
    background_launcher,
    launcher_env,
    metric_steps,
    run_launcher,
    train_args,
)
from mlflow import MlflowClient
from support.mlflow_server import MlflowServer, free_port
from support.rslrl_versions import VENV_VERSION
from support.streamed import StreamedProcess, wait_until

from training.distributed import keep_lines_whole, node_exit_code

GRACE_S = 20.0
RANK_LINE = re.compile(r"^rank (\d+) of (\d+) \(local rank \d+, pid (\d+)\)")
DIGEST = re.compile(r"^rank (\d+): parameters sha256 (\w+) at iteration (\d+)$", re.MULTILINE)
STARTS = re.compile(r"^rank (\d+): starting from model_(\d+)\.pt, iteration (\d+)$",
                    re.MULTILINE)
NODE_EXIT = re.compile(r"^ranks exited with (.*); node exit (\d+)$", re.MULTILINE)
OWN_SHARE = re.compile(r"^rank (\d+): training on (\S+), seed (\d+), log dir (.+)$",
                       re.MULTILINE)


def _env(server: MlflowServer, tmp_path: Path, workflow: str, version: str = VENV_VERSION,
         **extra: str) -> dict[str, str]:
    return launcher_env(server.url, tmp_path / "out", version, WORKFLOW_ID=workflow,
                        EXPERIMENT_NAME=f"ranks-{workflow}", STOP_GRACE_S=str(GRACE_S),
                        PYTHONUNBUFFERED="1",  # as in our local executor and many images
                        **extra)


def _digests(output: str) -> dict[int, str]:
    return {int(rank): digest for rank, digest, _ in DIGEST.findall(output)}


def _rank_pids(launcher: StreamedProcess) -> dict[int, int]:
    return {int(match[1]): int(match[3]) for line in list(launcher.lines)
            if (match := RANK_LINE.search(line))}


def _checkpoint_files(root: Path) -> list[Path]:
    return sorted(root.rglob("model_*.pt"))


class _Writes(io.RawIOBase):
    """A file that records each write it is given."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.writes.append(bytes(data))
        return len(data)


def test_a_printed_line_is_one_write_even_unbuffered() -> None:
    """Two ranks print to one pipe: a line written in two pieces (text, then newline: what
    PYTHONUNBUFFERED gives) came out spliced with the other rank's line."""
    raw = _Writes()
    stdout = io.TextIOWrapper(raw, write_through=True)  # sys.stdout under PYTHONUNBUFFERED
    keep_lines_whole(stdout)
    print("rank 1: starting from model_4.pt, iteration 4", file=stdout)
    print("rank 1: parameters sha256 7519e54d54e21387 at iteration 6", file=stdout)
    assert raw.writes == [b"rank 1: starting from model_4.pt, iteration 4\n",
                          b"rank 1: parameters sha256 7519e54d54e21387 at iteration 6\n"]


@pytest.mark.slow
def test_two_local_ranks_train_one_run_in_step(mlflow_server: MlflowServer, tmp_path: Path,
                                               rslrl_version: str) -> None:
    workflow = f"wf-{uuid.uuid4().hex[:8]}"
    env = _env(mlflow_server, tmp_path, workflow, rslrl_version, NPROC_PER_NODE="2",
               MASTER_PORT=str(free_port()))
    result = run_launcher(env, *train_args(3, num_envs=4), cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "local rank 0: 0, local rank 1: 0; node exit 0" in output

    mlflow.set_tracking_uri(mlflow_server.url)
    client = MlflowClient()
    runs = [run for run in all_runs(client) if run.data.tags.get("workflow_id") == workflow]
    assert len(runs) == 1  # one writer: rank 1 created no run
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert {key: run.data.params[key] for key in ("world_size", "nnodes", "nproc_per_node")} \
        == {"world_size": "2", "nnodes": "1", "nproc_per_node": "2"}
    assert run.data.params["rsl_rl_version"] == rslrl_version
    # Rank 1 samples its own experience: the seed is offset by its global rank.
    (own,) = OWN_SHARE.findall(output)
    assert own[:3] == ("1", "cpu", str(int(run.data.params["seed"]) + 1)), own
    assert metric_steps(client, run.info.run_id, "Train/mean_reward") == [0, 1, 2]
    # Only rank 0 wrote checkpoints, all in its run's log dir; rank 1 wrote none.
    files = _checkpoint_files(tmp_path / "out")
    assert files and {path.parent for path in files} == {
        tmp_path / "out" / "runs" / run.info.run_id}
    assert "model_3.pt" in artifact_names(client, run.info.run_id, "checkpoints")
    # The gradients were all-reduced: both ranks end with the same weights.
    digests = _digests(output)
    assert set(digests) == {0, 1} and digests[0] == digests[1], output[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("target", ["supervisor", "rank 1"])
def test_sigterm_stops_both_ranks_and_the_retry_resumes_both(
        mlflow_server: MlflowServer, tmp_path: Path, target: str) -> None:
    """SIGTERM to the launcher (what Kubernetes signals: the pod's main process) or to rank 1
    alone (not the writer): both ranks stop at one boundary, rank 0 stores the checkpoint,
    all exit 75 within the grace; the retry resumes both ranks from it in the same run."""
    workflow = f"wf-{uuid.uuid4().hex[:8]}"
    env = _env(mlflow_server, tmp_path, workflow, NPROC_PER_NODE="2",
               MASTER_PORT=str(free_port()))
    mlflow.set_tracking_uri(mlflow_server.url)
    client = MlflowClient()
    with background_launcher(env, *train_args(1000, "--save-interval", "500", num_envs=4),
                             cwd=tmp_path) as launcher:
        launcher.wait_for(r"^run (\w+): ", 180)
        wait_until(lambda: len(_rank_pids(launcher)) == 2, 60, "both ranks' lines")
        launcher.wait_for("^it 3/", 120)
        if target == "supervisor":
            launcher.signal_process(signal.SIGTERM)
        else:  # rank 1 only: rank 0 must stop with it
            os.kill(_rank_pids(launcher)[1], signal.SIGTERM)
        signalled = time.monotonic()
        assert launcher.finish(120) == 75, launcher.tail(60)
        seconds = time.monotonic() - signalled
    output = launcher.output
    assert seconds < GRACE_S + 5, output[-3000:]
    if target == "rank 1":
        assert "stop requested by another rank: saving at this iteration boundary" in output, \
            output[-5000:]
    assert "local rank 0: 75, local rank 1: 75; node exit 75" in output
    stopped = re.search(r"^stopped at iteration (\d+): model_(\d+)\.pt stored; exiting 75",
                        output, re.MULTILINE)
    assert stopped, output[-3000:]
    iteration = int(stopped[1])
    digests = _digests(output)
    assert digests[0] == digests[1]  # stopped at the same boundary, in step
    (run,) = [r for r in all_runs(client) if r.data.tags.get("workflow_id") == workflow]
    assert f"model_{iteration}.pt" in artifact_names(client, run.info.run_id, "checkpoints")

    # The retry: rank 0 finds the checkpoint, both ranks load it, the same run continues.
    env["MASTER_PORT"] = str(free_port())
    result = run_launcher(env, *train_args(iteration + 2, num_envs=4), cwd=tmp_path)
    retry = result.stdout + result.stderr
    assert result.returncode == 0, retry[-4000:]
    starts = {int(rank): int(it) for rank, _, it in STARTS.findall(retry)}
    assert starts == {0: iteration, 1: iteration}, retry[-3000:]
    digests = _digests(retry)
    assert digests[0] == digests[1]
    runs = [r for r in all_runs(client) if r.data.tags.get("workflow_id") == workflow]
    assert [r.info.run_id for r in runs] == [run.info.run_id]
    assert metric_steps(client, run.info.run_id, "Train/mean_reward") == list(
        range(iteration + 2))


@pytest.mark.slow
def test_two_nodes_on_loopback_a_killed_rank_ends_the_other_and_the_retry_resumes(
        mlflow_server: MlflowServer, tmp_path: Path) -> None:
    """Two supervisors as two nodes (NNODES=2, NODE_RANK=0/1, one rank each). SIGKILL of node
    1's rank: node 0's rank loses its peer (no signal reaches it), saves, exits 75 at once;
    the retry of both nodes resumes in the same run and trains to the end."""
    workflow = f"wf-{uuid.uuid4().hex[:8]}"
    port = str(free_port())

    def node(index: int, iterations: int) -> StreamedProcess:
        env = _env(mlflow_server, tmp_path, workflow, NNODES="2", NODE_RANK=str(index),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                   TRAINING_OUTPUT_DIR=str(tmp_path / f"node{index}"))
        return background_launcher(env, *train_args(iterations, "--save-interval", "2",
                                                    num_envs=4), cwd=tmp_path)

    mlflow.set_tracking_uri(mlflow_server.url)
    client = MlflowClient()
    with node(0, 1000) as lead, node(1, 1000) as other:
        lead.wait_for(r"^run (\w+): ", 180)
        pid = int(other.wait_for(RANK_LINE, 180)[3])
        lead.wait_for("^it 5/", 120)
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        assert other.finish(60) == 75, other.tail()
        assert lead.finish(120) == 75, lead.tail(60)
        seconds = time.monotonic() - killed
    assert seconds < GRACE_S + 5, lead.output[-3000:]
    assert "another rank is gone" in lead.output or "another rank failed" in lead.output
    assert "local rank 0: killed; node exit 75" in other.output
    (run,) = [r for r in all_runs(client) if r.data.tags.get("workflow_id") == workflow]
    stored = sorted(int(name[6:-3]) for name in artifact_names(client, run.info.run_id,
                                                               "checkpoints")
                    if name.startswith("model_") and name.endswith(".pt"))
    assert stored and stored[-1] >= 4
    assert not _checkpoint_files(tmp_path / "node1")  # only rank 0 (on node 0) writes
    # Rank 1 kept its own node's output directory (rank 0's start decision is all it takes)
    (own,) = OWN_SHARE.findall(other.output)
    assert Path(own[3]) == tmp_path / "node1" / "rank-1", own
    assert not (tmp_path / "node0" / "rank-1").exists()

    port = str(free_port())
    last = stored[-1] + 2
    with node(0, last) as lead, node(1, last) as other:
        assert lead.finish(300) == 0, lead.tail(60)
        assert other.finish(60) == 0, other.tail()
    starts = {int(rank): int(it) for rank, _, it in STARTS.findall(lead.output + "\n"
                                                                    + other.output)}
    assert starts == {0: stored[-1], 1: stored[-1]}
    digests = _digests(lead.output + "\n" + other.output)
    assert digests[0] == digests[1]
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    # Every step is there; the steps after the last stored checkpoint twice when the peer's
    # death interrupted an update (no save at that boundary), as after any SIGKILL.
    assert set(metric_steps(client, run.info.run_id, "Train/mean_reward")) == set(range(last))


def test_skrl_with_several_ranks_on_cpu_is_refused_before_training(tmp_path: Path) -> None:
    env = launcher_env(None, tmp_path / "out", NPROC_PER_NODE="2", TRAINING_DEVICE="cpu")
    result = run_launcher(env, *train_args(2), "--backend", "skrl", cwd=tmp_path, timeout=60)
    assert_clean_failure(result, 2, "skrl", "CUDA", "rsl_rl")
    assert not (tmp_path / "out").exists()


def test_more_ranks_than_gpus_is_refused_before_torchrun(tmp_path: Path) -> None:
    """--gpu 2 on a node without 2 GPUs (here none): one line naming both counts, instead of
    CUDA's "invalid device ordinal" from deep in each rank and torchrun's traceback."""
    env = launcher_env(None, tmp_path / "out", NPROC_PER_NODE="2", TRAINING_DEVICE="cuda")
    result = run_launcher(env, *train_args(2), cwd=tmp_path, timeout=60)
    assert_clean_failure(result, 2, "2 ranks per node", "0 visible", "--gpu")
    assert "torchrun" not in result.stdout


@pytest.mark.parametrize(("variables", "requested", "device", "offset"), [
    ({}, "cuda:0", "cuda:0", 0),  # one process: as asked
    ({"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2", "RANK": "3", "LOCAL_RANK": "1"},
     "cuda", "cuda:1", 3),  # node 1's second rank: its node's GPU 1, the job's seed + 3
    ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}, "cpu", "cpu", 1),
])
def test_each_rank_gets_its_local_gpu_and_a_seed_offset_by_its_global_rank(
        monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], requested: str,
        device: str, offset: int) -> None:
    import dataclasses

    import torch

    from training.app import launcher_kwargs
    from training.config import parse_config
    from training.distributed import for_this_rank, seed_offset
    from training.envs import read_agent_cfg

    for name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # a node of 2 GPUs
    config = dataclasses.replace(parse_config(["--task", "InvertedPendulum-v5"], {}),
                                 device=requested)
    assert for_this_rank(config).device == device
    assert seed_offset() == offset
    assert read_agent_cfg("InvertedPendulum-v5", 40)["seed"] == 40 + offset
    # Isaac Sim's app is told too (AppLauncher's --distributed: a GPU and CPU share per rank)
    assert launcher_kwargs("2.3", config)["distributed"] is bool(variables)


def test_a_node_rank_outside_the_nodes_is_bad_input(tmp_path: Path) -> None:
    env = launcher_env(None, tmp_path / "out", NNODES="2", NODE_RANK="1")
    result = run_launcher(env, *train_args(2), "--node-rank", "2", cwd=tmp_path, timeout=60)
    assert_clean_failure(result, 2, "node_rank must be 0 .. 1", "got 2")


@pytest.mark.parametrize(("codes", "torchrun_code", "signalled", "expected"), [
    ({0: 0, 1: 0}, 0, False, 0),  # every rank trained
    ({0: 75, 1: 75}, 1, True, 75),  # stopped by a signal
    ({0: 75}, 1, False, 75),  # rank 1 was killed: retryable
    ({0: 7, 1: 75}, 1, False, 7),  # rank 0's checkpoint was unusable: the failing rank's code
    ({}, 1, False, 75),  # the rendezvous failed: no rank ran
])
def test_the_node_exit_code(codes: dict[int, int], torchrun_code: int, signalled: bool,
                            expected: int) -> None:
    assert node_exit_code(codes, 2, torchrun_code, signalled) == expected
