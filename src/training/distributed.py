"""Several training processes (ranks) as one job: torchrun on each node, one MLflow writer.

Two roles of ``python -m training.launch``:

- **the node's supervisor**, when ``nproc_per_node * nnodes > 1`` and it is not itself inside
  torchrun (no ``RANK``/``LOCAL_RANK``): :func:`supervise` starts ``python -m
  torch.distributed.run`` (static rendezvous on ``master_addr:master_port``) with the same
  arguments, forwards SIGTERM/SIGINT to it and exits with one code for the node (see
  :func:`node_exit_code`). It starts no Isaac Sim app and imports nothing heavy.
- **a rank**, started by torchrun: :func:`for_this_rank` gives it ``cuda:<local rank>`` (cpu
  without a GPU), :func:`join` opens the process groups (gloo on CPU, nccl on CUDA, both with
  :data:`COLLECTIVE_TIMEOUT_S`) plus a small gloo group for our own control messages, and
  :class:`Rank` says whether this process is the job's one writer (global rank 0: the MLflow
  run, metrics, checkpoints, uploads, registration, the auto-resume look-up). The others train
  and write nothing.

Keeping the ranks in step:

- the starting point (auto-resume look-up, the checkpoint to start from) is decided by rank 0
  and sent to every rank, checkpoint bytes included (:func:`shared_by_writer`);
- a stop signal to any rank stops all of them at the same iteration boundary: the
  ``should_stop`` hook all-reduces the local flag (one tiny gloo all-reduce per iteration,
  :func:`join` plugs it into training.stop); rank 0 saves and uploads, every rank exits 75, the
  other ranks wait for rank 0 at a last barrier (bounded by the stop grace) so that torchrun does
  not cut rank 0's upload short;
- a rank that dies: its sockets close and the others' next collective fails at once (gloo;
  NCCL's watchdog), or after :data:`COLLECTIVE_TIMEOUT_S` when a node hangs or vanishes; the
  failure is :class:`PeerLost` (exit 75, retryable), and torchrun stops the node's other ranks.

Seeds: each rank's seed is the task's seed plus its **global** rank (:func:`seed_offset`);
Isaac Lab's rsl-rl script adds the local rank, so its seeds repeat on every node.

Standard library only at import: the supervisor runs before the dependency check.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import datetime
import math
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from training.store import first_line

if TYPE_CHECKING:
    from training.config import RunConfig
    from training.stop import GracefulStop

EXIT_RETRYABLE = 75  # training.launch.EXIT_RETRYABLE (imported lazily there: no cycle here)
EXIT_BAD_INPUT = 2
# torchrun's static rendezvous: how long node 0 waits for the other nodes (and they for it).
RENDEZVOUS_TIMEOUT_S = 600
# How long any collective (gradients, our control messages, rank 0's start-up broadcast) may
# wait for a peer that is alive but silent (a hung or unreachable node). A peer whose process
# died fails the next collective at once.
COLLECTIVE_TIMEOUT_S = 600
# torchrun waits this long after the stop grace before it SIGKILLs ranks that have not exited.
SHUTDOWN_MARGIN_S = 5
# Each rank writes its exit code into this directory (set by the supervisor for its torchrun).
EXIT_CODES_DIR_VARIABLE = "TRAINING_RANK_EXIT_DIR"
# Markers of an error raised by a collective whose peer failed (gloo, NCCL, the c10d store).
_PEER_FAILURE_MARKERS = ("gloo", "nccl", "connection closed", "connection reset",
                         "processgroup", "timed out", "broken pipe")

T = TypeVar("T")


class PeerLost(Exception):
    """Another rank failed or vanished (exit 75: OSMO reschedules the group)."""


# --- the supervisor ----------------------------------------------------------------------------


def keep_lines_whole(*streams: Any) -> None:
    """One write per printed line on ``streams`` (default: stdout and stderr), flushed at each
    newline. The ranks and their supervisor share the node's stdout; with PYTHONUNBUFFERED (our
    local executor sets it, as many images do) Python writes a print's text and its newline in
    two writes, and two ranks' lines came out spliced ("... iteration 4rank 1: ..."). A line
    written at once (shorter than PIPE_BUF) reaches a pipe whole."""
    for stream in streams or (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):  # not a text file
            stream.reconfigure(line_buffering=True, write_through=False)


def inside_torchrun(environ: Mapping[str, str]) -> bool:
    return "RANK" in environ or "LOCAL_RANK" in environ


def supervise(config: RunConfig, argv: Sequence[str],
              environ: Mapping[str, str] = os.environ) -> int | None:
    """The node's exit code after its ranks ran under torchrun, or None when this process is
    to train itself (one process in all, already a rank, or an evaluation or export: one
    process runs the policy, whatever the task's GPUs)."""
    if config.world_size == 1 or config.run_mode != "train" or inside_torchrun(environ):
        return None
    refusal = unsupported(config)
    if refusal is not None:
        print(f"error: {refusal}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    with tempfile.TemporaryDirectory(prefix="rank-exits-") as exits_dir:
        env = {**environ, EXIT_CODES_DIR_VARIABLE: exits_dir}
        command = torchrun_command(config, argv)
        print(f"{config.world_size} ranks ({config.nnodes} node(s) x {config.nproc_per_node}); "
              f"node {config.node_rank}: torchrun with rendezvous at "
              f"{config.master_addr}:{config.master_port}", flush=True)
        stopped: list[int] = []
        child = subprocess.Popen(command, env=env, start_new_session=True,
                                 preexec_fn=_die_with_parent)

        def forward(signum: int, frame: object) -> None:
            stopped.append(signum)
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)

        previous = {signum: signal.signal(signum, forward)
                    for signum in (signal.SIGTERM, signal.SIGINT)}
        try:
            torchrun_code = child.wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        codes = rank_exit_codes(Path(exits_dir))
    code = node_exit_code(codes, config.nproc_per_node, torchrun_code, bool(stopped))
    print(f"ranks exited with {format_codes(codes, config.nproc_per_node)}; node exit {code}",
          flush=True)
    return code


def unsupported(config: RunConfig) -> str | None:
    """Why this job cannot run with several ranks here (exit 2 before training), or None."""
    if config.backend == "skrl" and not _cuda_device(config.device):
        # skrl's own multi-GPU set-up runs at import (skrl/__init__.py, 1.4.3 and 2.1.1): with
        # WORLD_SIZE > 1 it calls init_process_group("nccl") and torch.cuda.set_device, which
        # cannot work without a GPU.
        return ("skrl trains with several ranks only on CUDA GPUs (it initialises nccl "
                "itself); use --backend rsl_rl on CPU, or one process")
    if _cuda_device(config.device):
        import torch

        visible = torch.cuda.device_count()
        if visible < config.nproc_per_node:  # else CUDA's "invalid device ordinal", deep down
            return (f"{config.nproc_per_node} ranks per node need as many GPUs, but this node "
                    f"has {visible} visible: ask for no more ranks per node (--gpu) than GPUs "
                    "the pool gives a node")
    return None


def torchrun_command(config: RunConfig, argv: Sequence[str]) -> list[str]:
    grace_s = math.ceil(config.stop_grace_s) + SHUTDOWN_MARGIN_S
    return [
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes", str(config.nnodes), "--node-rank", str(config.node_rank),
        "--nproc-per-node", str(config.nproc_per_node),
        "--master-addr", config.master_addr, "--master-port", str(config.master_port),
        "--rdzv-conf", f"timeout={RENDEZVOUS_TIMEOUT_S}",
        "--max-restarts", "0",  # a failed rank fails the node: OSMO retries the whole group
        "--monitor-interval", "0.5",
        "--shutdown-timeout", str(grace_s),
        "-m", "training.launch", *argv,
    ]


def _die_with_parent() -> None:
    """In torchrun's process: SIGTERM it (it stops its ranks) if the supervisor dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def rank_exit_codes(exits_dir: Path) -> dict[int, int]:
    """{local rank: exit code} of the ranks that reported one (a rank killed by a signal did
    not)."""
    codes = {}
    for path in exits_dir.glob("rank-*.code"):
        with contextlib.suppress(ValueError, OSError):
            codes[int(path.stem.split("-")[1])] = int(path.read_text())
    return codes


def node_exit_code(codes: Mapping[int, int], nproc: int, torchrun_code: int,
                   signalled: bool) -> int:
    """0 when every rank trained; the first rank's code that is neither 0 nor 75 (a real
    failure: bad input, unusable checkpoint ...); otherwise 75: a rank was stopped by a
    signal, killed, or lost a peer, or the rendezvous failed."""
    failures = [code for _, code in sorted(codes.items()) if code not in (0, EXIT_RETRYABLE)]
    if failures:
        return failures[0]
    if len(codes) == nproc and all(code == 0 for code in codes.values()) \
            and torchrun_code == 0 and not signalled:
        return 0
    return EXIT_RETRYABLE


def format_codes(codes: Mapping[int, int], nproc: int) -> str:
    return ", ".join(f"local rank {index}: {codes.get(index, 'killed')}"
                     for index in range(nproc))


# --- a rank ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rank:
    global_rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    nnodes: int = 1

    @property
    def is_writer(self) -> bool:
        """The one process that talks to MLflow and writes checkpoints."""
        return self.global_rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def params(self) -> dict[str, str]:
        """What the run records about its ranks (none for a single process)."""
        if not self.distributed:
            return {}
        return {"world_size": str(self.world_size), "nnodes": str(self.nnodes),
                "nproc_per_node": str(self.world_size // self.nnodes)}


def this_rank(environ: Mapping[str, str] = os.environ) -> Rank:
    """This process's place in the job, from torchrun's variables (a single process without)."""
    world_size = int(environ.get("WORLD_SIZE") or 1)
    if world_size == 1:
        return Rank()
    local_world = int(environ.get("LOCAL_WORLD_SIZE") or world_size)
    return Rank(global_rank=int(environ.get("RANK") or 0),
                local_rank=int(environ.get("LOCAL_RANK") or 0),
                world_size=world_size, nnodes=max(1, world_size // local_world))


def seed_offset(environ: Mapping[str, str] = os.environ) -> int:
    """Added to every rank's seed: the global rank (distinct across nodes; see module doc)."""
    return this_rank(environ).global_rank


def for_this_rank(config: RunConfig) -> RunConfig:
    """The config with this rank's device: ``cuda:<local rank>`` when training on CUDA (a
    rank's GPU is its local rank's, as torchrun and Isaac Lab assign them), else cpu."""
    rank = this_rank()
    if not rank.distributed:
        return config
    device = f"cuda:{rank.local_rank}" if _cuda_device(config.device) else "cpu"
    return dataclasses.replace(config, device=device)


def _cuda_device(requested: str | None) -> bool:
    if requested is not None:
        return requested.startswith("cuda")
    import torch

    return bool(torch.cuda.is_available())


@dataclass
class _Joined:
    control: Any  # a gloo process group for our own messages (CPU tensors, whatever device)
    stop: GracefulStop
    peer_lost: bool = False


_joined: _Joined | None = None  # set once by join(): this process is a rank of several


def join(config: RunConfig, stop: GracefulStop) -> Rank:
    """Connect this rank to the others (nothing to do for a single process); the libraries'
    own distributed code then finds the default process group ready."""
    global _joined
    rank = this_rank()
    if not rank.distributed or _joined is not None:
        return rank
    import torch
    import torch.distributed as dist

    timeout = datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S)
    device = config.device or "cpu"
    if not dist.is_initialized():  # skrl initialises nccl itself when imported (unsupported)
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo",
                                rank=rank.global_rank, world_size=rank.world_size,
                                timeout=timeout)
    if device.startswith("cuda"):
        torch.cuda.set_device(rank.local_rank)
    _joined = _Joined(control=dist.new_group(backend="gloo", timeout=timeout), stop=stop)
    stop.agree_with(_any_rank_stopped)
    print(f"rank {rank.global_rank} of {rank.world_size} (local rank {rank.local_rank}, pid "
          f"{os.getpid()}) on {device}; "
          f"{'writer' if rank.is_writer else 'trains only, rank 0 writes'}", flush=True)
    return rank


def _any_rank_stopped(stopped_here: bool) -> bool:
    """For GracefulStop.should_stop at every iteration boundary: whether any rank was asked
    to stop. A failed all-reduce (a peer died) also stops: this rank saves what it has."""
    import torch
    import torch.distributed as dist

    assert _joined is not None
    if _joined.peer_lost:
        return True
    flag = torch.tensor([1 if stopped_here else 0], dtype=torch.int32)
    try:
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=_joined.control)
    except Exception as error:
        _joined.peer_lost = True
        print(f"another rank is gone ({first_line(error)}); stopping", flush=True)
        return True
    return bool(flag.item())


def shared_by_writer(rank: Rank, decide: Callable[[], T], download_dir: Path) -> T:
    """``decide()`` run by rank 0 alone, its result given to every rank. Checkpoint objects in
    it (attribute ``path``) travel with their file's bytes and point at a local copy on the
    other ranks. When rank 0 fails, it raises its error; the others raise PeerLost."""
    if not rank.distributed:
        return decide()
    import torch.distributed as dist

    assert _joined is not None
    outcome: BaseException | None = None
    message: list[Any] = [None]
    if rank.is_writer:
        try:
            result = decide()
            message = [("ok", result, _files_in(result))]
        except BaseException as error:  # StopRequested too: the others must not wait
            outcome = error
            message = [("failed", first_line(error), {})]
    try:
        dist.broadcast_object_list(message, src=0, group=_joined.control)
    except Exception as error:
        if outcome is not None:
            raise outcome from None
        raise PeerLost(f"rank 0 could not be reached before training: "
                       f"{first_line(error)}") from error
    if outcome is not None:
        raise outcome
    kind, value, files = message[0]
    if kind != "ok":
        raise PeerLost(f"rank 0 could not start training ({value})")
    if not rank.is_writer:
        value = _with_local_files(value, files, download_dir)
    for item in value if isinstance(value, tuple) else (value,):
        if dataclasses.is_dataclass(item) and hasattr(item, "iteration"):
            print(f"rank {rank.global_rank}: starting from {Path(item.path).name}, iteration "
                  f"{item.iteration}", flush=True)
    return value


def _files_in(value: Any) -> dict[str, bytes]:
    """{path: bytes} of the files that the checkpoints in ``value`` name."""
    files: dict[str, bytes] = {}
    for item in value if isinstance(value, tuple) else (value,):
        path = getattr(item, "path", None)
        if isinstance(path, Path) and path.is_file():
            files[str(path)] = path.read_bytes()
    return files


def _with_local_files(value: Any, files: Mapping[str, bytes], download_dir: Path) -> Any:
    if not files:
        return value
    local = {}
    for index, (remote, data) in enumerate(files.items()):
        path = download_dir / "from-rank-0" / str(index) / Path(remote).name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        local[remote] = path

    def relocated(item: Any) -> Any:
        path = getattr(item, "path", None)
        if dataclasses.is_dataclass(item) and str(path) in local:
            return dataclasses.replace(item, path=local[str(path)])
        return item

    if isinstance(value, tuple):
        return tuple(relocated(item) for item in value)
    return relocated(value)


def report_parameters(iteration: int, parameters: Mapping[str, Any]) -> None:
    """One line per rank with a digest of its networks' parameters ({name: tensor}): equal on
    every rank when the ranks trained in step (the gradients are all-reduced)."""
    import hashlib

    rank = this_rank()
    if not rank.distributed:
        return
    digest = hashlib.sha256()
    for name, tensor in sorted(parameters.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    print(f"rank {rank.global_rank}: parameters sha256 {digest.hexdigest()[:16]} at iteration "
          f"{iteration}", flush=True)


def raise_if_peer_lost(error: BaseException) -> None:
    """In a rank: a library's collective that failed because a peer failed is PeerLost (75)."""
    if _joined is None:
        return
    text = str(error).lower()
    if _joined.peer_lost or any(marker in text for marker in _PEER_FAILURE_MARKERS):
        _joined.peer_lost = True
        raise PeerLost(f"another rank failed during training ({first_line(error)})") from error


def peer_was_lost() -> bool:
    return _joined is not None and _joined.peer_lost


def leave(code: int) -> None:
    """Before a rank's process ends: tell the supervisor its code; after a stop, wait for rank
    0 (saving and uploading) so that torchrun does not stop it early. The stop grace's watchdog
    bounds the wait."""
    exits_dir = os.environ.get(EXIT_CODES_DIR_VARIABLE)
    if exits_dir:
        with contextlib.suppress(OSError):
            local_rank = this_rank().local_rank
            Path(exits_dir, f"rank-{local_rank}.code").write_text(str(code))
    if _joined is None or _joined.peer_lost:
        return
    import torch.distributed as dist

    with contextlib.suppress(Exception):
        if _joined.stop.requested:
            dist.barrier(group=_joined.control)
        dist.destroy_process_group()


def end_process(code: int) -> int:
    """A rank ends at once with ``code`` (stdio flushed): its interpreter's teardown after
    training took seconds here (C++ destructors, no Python frame), time the stop grace and
    torchrun's shutdown do not have. A single process returns ``code`` to its caller."""
    if _joined is None:
        return code
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)
