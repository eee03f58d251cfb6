"""Shared by the fault-injection tests and bench/chaos.py: a process whose output is read
line by line while it runs (so a fault can be injected at a chosen iteration), the runtime's
log lines they parse, and an audit of the checkpoints a run holds in the MLflow store.

Plain Python (no pytest), so that the chaos benchmark can import it too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The runtime's log lines (the contract of issue 5; keep in step with src/training).
PROGRESS = re.compile(r"^it (\d+)/(\d+)\b")
RUN_STARTED = re.compile(r"^run (\w+): ")
RESUMED = re.compile(
    r"^auto-resume: workflow (\S+): resuming run (\w+) from model_(\d+)\.pt \(iteration (\d+)\)"
)
SKIPPED = re.compile(
    r"^auto-resume: skipping model_(\d+)\.pt \((.*)\); "
    r"(?:falling back to model_(\d+)\.pt|no earlier checkpoint)"
)
STOP_REQUESTED = re.compile(r"^stop requested \(SIGTERM\): saving at the next iteration boundary")
STOPPED = re.compile(
    r"^stopped at iteration (\d+): model_(\d+)\.pt stored; exiting 75 \(retryable\)"
)
TRAINING_DONE = re.compile(r"^training done at iteration (\d+); (.*)")

EXIT_RETRYABLE = 75
CHECKPOINT_FILE = re.compile(r"^model_(\d+)\.pt$")


class StreamedProcess:
    """A child in its own process group (like a pod's processes) whose stdout and stderr,
    merged, are collected line by line with the time each line arrived."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> None:
        self.argv = list(argv)
        self.lines: list[str] = []
        self.arrival: list[float] = []  # time.monotonic() of each line
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            self.argv, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self.arrival.append(time.monotonic())
                self._changed.notify_all()
        with self._changed:  # end of output: wake waiters so they see the exit
            self._changed.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def tail(self, count: int = 40) -> str:
        return "\n".join(self.lines[-count:])

    def wait_for(self, pattern: re.Pattern[str] | str, timeout: float,
                 start: int = 0) -> re.Match[str]:
        """The first line at index >= start matching pattern; waits for it to be printed.
        AssertionError (with the output's tail) when the process ends or time runs out."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        checked = start
        with self._changed:
            while True:
                for index in range(checked, len(self.lines)):
                    match = regex.search(self.lines[index])
                    if match:
                        return match
                checked = max(checked, len(self.lines))
                ended = not self._reader.is_alive()
                left = deadline - time.monotonic()
                if ended or left <= 0:
                    why = "the process ended" if ended else f"{timeout:.0f} s passed"
                    raise AssertionError(
                        f"{why} without a line matching {regex.pattern!r}; output tail:\n"
                        + self.tail()
                    )
                self._changed.wait(min(left, 0.5))

    def progress(self) -> int:
        """Iterations done according to the last progress line so far (0 before any)."""
        return last_progress(self.lines)

    def signal_process(self, sig: int) -> None:
        """sig to the process itself, as Kubernetes signals a container's main process."""
        self.process.send_signal(sig)

    def kill_group(self) -> None:
        """SIGKILL to the whole process group: what an OOM kill or a lost node leaves."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def finish(self, timeout: float) -> int:
        """Wait for the exit and for the last line of output; the exit code (-N: signal N)."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            self.process.wait()
            self._reader.join(10)
            raise AssertionError(f"still running after {timeout:.0f} s; output tail:\n"
                                 + self.tail()) from None
        self._reader.join(30)
        return code

    def stop_if_running(self) -> None:
        if self.process.poll() is None:
            self.kill_group()
            self.process.wait()


def last_progress(lines: Sequence[str]) -> int:
    for line in reversed(lines):
        match = PROGRESS.match(line)
        if match:
            return int(match.group(1))
    return 0


def first_progress(lines: Sequence[str]) -> int | None:
    return next((int(m.group(1)) for line in lines if (m := PROGRESS.match(line))), None)


def find_line(lines: Sequence[str], pattern: re.Pattern[str]) -> re.Match[str] | None:
    return next((m for line in lines if (m := pattern.search(line))), None)


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               poll_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(poll_s)


# --- the store ---------------------------------------------------------------------------

def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class StoredCheckpoints:
    """What a run's `checkpoints/` artifacts hold, checked byte for byte."""

    intact: set[int] = field(default_factory=set)  # model_N.pt whose sha256 matches its sidecar
    corrupt: dict[int, str] = field(default_factory=dict)  # N -> what is wrong
    final_iteration: int | None = None  # checkpoints/final's checkpoint.json, if it checks out
    final_problem: str | None = None  # why checkpoints/final does not check out

    def highest_intact(self) -> int | None:
        return max(self.intact, default=None)


def audit_checkpoints(client: Any, run_id: str) -> StoredCheckpoints:
    """Download the run's `checkpoints/` and check every model_N.pt against its .sha256
    sidecar, and checkpoints/final against its sidecar and checkpoint.json."""
    audit = StoredCheckpoints()
    with tempfile.TemporaryDirectory(prefix="audit-") as scratch:
        try:
            root = Path(client.download_artifacts(run_id, "checkpoints", scratch))
        except Exception:  # noqa: BLE001 - MLflow raises many types; no artifacts yet
            return audit
        for path in root.glob("model_*.pt"):
            iteration = int(CHECKPOINT_FILE.match(path.name).group(1))
            problem = _digest_problem(path)
            if problem is None:
                audit.intact.add(iteration)
            else:
                audit.corrupt[iteration] = problem
        audit.final_iteration, audit.final_problem = _check_final(root / "final")
    return audit


def _digest_problem(checkpoint: Path) -> str | None:
    sidecar = checkpoint.with_name(checkpoint.name + ".sha256")
    if not sidecar.is_file():
        return "no .sha256 sidecar"
    recorded = sidecar.read_text().split()[0]
    actual = sha256_of(checkpoint)
    if actual != recorded:
        return (f"sha256 {actual[:12]}... differs from the recorded {recorded[:12]}... "
                f"({checkpoint.stat().st_size} bytes)")
    return None


def _check_final(final_dir: Path) -> tuple[int | None, str | None]:
    manifest_path = final_dir / "checkpoint.json"
    if not manifest_path.is_file():
        return None, "no checkpoints/final/checkpoint.json"
    manifest = json.loads(manifest_path.read_text())
    checkpoint = final_dir / manifest["file"]
    if not checkpoint.is_file():
        return None, f"checkpoints/final/{manifest['file']} is missing"
    problem = _digest_problem(checkpoint)
    if problem is None and sha256_of(checkpoint) != manifest.get("sha256"):
        problem = "sha256 differs from checkpoint.json"
    if problem is not None:
        return None, f"checkpoints/final/{manifest['file']}: {problem}"
    return int(manifest["iteration"]), None


def runs_of_workflow(client: Any, experiment_name: str, workflow_id: str) -> list[Any]:
    """Every run of the experiment tagged with the workflow id, oldest first."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    return client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.workflow_id = '{workflow_id}'",
        order_by=["attributes.start_time ASC"],
    )


def expected_saves(max_iterations: int, save_interval: int) -> set[int]:
    """The iterations a complete run leaves in the store: every multiple of the interval
    and the last iteration."""
    return set(range(save_interval, max_iterations + 1, save_interval)) | {max_iterations}
