"""Shared by the fault-injection tests and bench/chaos.py: a process whose output is read
line by line while it runs (so a fault can be injected at a chosen iteration), the runtime's
log lines they parse, and an audit of the checkpoints a run holds in the MLflow store.

Plain Python (no pytest), so that the chaos benchmark can import it too.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Sequence
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
    sidecar = checkpoint.with_suffix(".sha256")
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
