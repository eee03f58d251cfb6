"""The tasks of a local sweep, `-j/--jobs N` of them at a time, each in its own process.

Each task runs as a child `python -m osmo_inline.sweep_jobs`, which reads its one-task spec
on stdin and runs it exactly as a single `--local` run does (local.run_spec: its own run
directory and MLflow run, the task's output in its task.log, Ctrl-C forwarded with the grace
period, the task's exit code as its own). The parent keeps N children running
(concurrent.futures: one thread per running child waits on it and copies its output), writes
every line a child prints with the task's name in front (`[isaac-training-1] ...`), and on
SIGINT/SIGTERM starts no further task and passes the signal once to every running child, which
stops its task as a single local run does (checkpoint stored, exit 75); a second signal is
passed on again, and the children then kill their tasks at once.

The children get their own sessions, so the terminal's Ctrl-C reaches only the parent: each
child sees one signal, the one passed on, and so waits out its task's grace period.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import osmo_inline
from osmo_inline import groups
from osmo_inline.local_process import exit_code_of

EXIT_STOPPED = 75  # the runtime's exit for a task stopped by a signal (retry resumes it)
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Stop:
    """Our SIGINT/SIGTERM handler while the sweep runs; it also starts the children, under
    one lock with the handler, so that a child is either never started or sees the signal."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()

    def __call__(self, signum: int, _frame: object) -> None:
        self.signum = signum
        with self._lock:
            running = list(self._running)
        for child in running:
            child.send_signal(signum)  # a no-op for a child already reaped

    def start(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes] | None:
        """A running child, or None once a signal has stopped the sweep."""
        with self._lock:
            if self.signum is not None:
                return None
            child = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
            self._running.add(child)
            return child

    def finished(self, child: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._running.discard(child)


class _Output:
    """Children's lines on our stdout/stderr, whole lines, each with its task's name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed: set[int] = set()  # our streams whose reader went away (`| head`)

    def say(self, text: str) -> None:
        self.write(sys.stderr, "", text.encode() + b"\n")

    def write(self, stream, prefix: str, line: bytes) -> None:
        target = getattr(stream, "buffer", stream)
        with self._lock:
            if id(target) in self._closed:
                return
            try:
                target.write(prefix.encode() + line)
                target.flush()
            except (OSError, ValueError):  # keep draining the child, or it blocks on a pipe
                self._closed.add(id(target))

    def copy(self, source: BinaryIO, stream, prefix: str) -> None:
        for line in iter(source.readline, b""):
            self.write(stream, prefix, line if line.endswith(b"\n") else line + b"\n")
        source.close()


def _child_env() -> dict[str, str]:
    # The child imports this package from where the parent did (an editable install, a
    # PYTHONPATH or the project's src/).
    package_root = str(Path(osmo_inline.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_root, path) if p)}


def run_tasks(task_specs: Sequence[dict], *, jobs: int, project_dir: Path, quiet: bool,
              workflow_id: str, sweep_id: str) -> tuple[list[int | None], int | None]:
    """Run every one-task spec, `jobs` at a time. Returns each task's exit code (None: not
    started, the sweep was stopped first) and the signal that stopped the sweep, if any.

    Call from the main thread (signal handlers can only be installed there)."""
    stop, output, env = _Stop(), _Output(), _child_env()
    argv = [sys.executable, "-m", __name__]

    def run_one(number: int, spec: dict) -> int | None:
        (unit,) = groups.units(spec["workflow"])  # a task, or a group of --nodes tasks
        label = groups.lead_of(unit)["environment"]["SWEEP_TASK"]
        child = stop.start(argv, env)
        if child is None:
            return None
        prefix = f"[{unit['name']}] "
        output.say(f"sweep {sweep_id}: task {number}/{len(task_specs)} {unit['name']} "
                   f"({label}) started")
        assert child.stdin is not None and child.stdout is not None
        try:
            child.stdin.write(json.dumps({"spec": spec, "project_dir": str(project_dir),
                                          "quiet": quiet, "workflow_id": workflow_id}).encode())
            child.stdin.close()
        except BrokenPipeError:
            pass  # the child died at start; its stderr says why
        errors = threading.Thread(target=output.copy, args=(child.stderr, sys.stderr, prefix))
        errors.start()
        output.copy(child.stdout, sys.stdout, prefix)
        errors.join()
        code = exit_code_of(child.wait())
        stop.finished(child)
        return code

    previous = {sig: signal.signal(sig, stop) for sig in _SIGNALS}
    try:
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="sweep-task") as pool:
            futures = [pool.submit(run_one, number, spec)
                       for number, spec in enumerate(task_specs, start=1)]
            codes = [future.result() for future in futures]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return codes, stop.signum


def sweep_exit_code(codes: Sequence[int | None], stopped_by: int | None) -> int | None:
    """The sweep's exit code from its tasks': the first failed task's (in grid order), else
    75 after a signal; None when every task succeeded (the report's code is then ours)."""
    failed = [code for code in codes if code]
    if failed:
        return failed[0]
    return EXIT_STOPPED if stopped_by is not None else None


def main() -> int:
    """A child: run the one-task spec on stdin as `submit-training --local` would."""
    from osmo_inline import local
    from osmo_inline.cli import PROG
    from osmo_inline.errors import ClientError
    from osmo_inline.redact import redact

    job = json.loads(sys.stdin.read())
    try:
        return local.run_spec(job["spec"], project_dir=Path(job["project_dir"]),
                              quiet=job["quiet"], workflow_id=job["workflow_id"])
    except ClientError as error:
        print(f"{PROG}: error: {redact(str(error))}", file=sys.stderr)
        return error.exit_code
    except _StoppedEarly:
        print("stopped before the task started", file=sys.stderr)
        return EXIT_STOPPED


class _StoppedEarly(Exception):
    """A signal before the task's own handler (local_process.run_task) took over: no task
    process exists yet, so none is started."""


def _stopped_early(_signum: int, _frame: object) -> None:
    raise _StoppedEarly


if __name__ == "__main__":
    for _sig in _SIGNALS:  # first thing: a signal passed on at once must not be lost
        signal.signal(_sig, _stopped_early)
    sys.exit(main())

