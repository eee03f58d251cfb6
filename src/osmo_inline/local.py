"""Run a rendered workflow spec on this machine: `submit-training --local`.

The same spec that OSMO would get: its files are written into a run directory
`<project>/.osmo-inline/runs/<local-id>/`, its environment is set as rendered (container paths
and OSMO's tokens remapped, see local_plan), and its command runs as a child process whose
exit code becomes ours. Stdlib + pyyaml only: the runtime runs in the child, never in here.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from osmo_inline.errors import BadInput
from osmo_inline.local_plan import LocalPlan, build_plan
from osmo_inline.local_process import run_task
from osmo_inline.redact import redact, redact_tree

RUNS_DIR = Path(".osmo-inline") / "runs"
# The runtime's closing line (training.launch) that tells how to continue; repeated in our
# summary so that it is the last thing a user sees, also with --quiet.
RESUME_LINE_PREFIX = "resume with:"


def new_local_id() -> str:
    """Sortable and unique enough for one machine: local-20260130-142501-3fa9."""
    return time.strftime("local-%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        print(redact(message), file=sys.stderr, flush=True)


def _write_run_dir(plan: LocalPlan, run_dir: Path, local_id: str, workflow_id: str) -> None:
    for directory in (plan.output_dir, plan.payload_dir):
        directory.mkdir(parents=True, exist_ok=True)
    for file in plan.files:
        file.host_path.parent.mkdir(parents=True, exist_ok=True)
        file.host_path.write_bytes(file.data)
    # What ran, for the record: the next person debugging this run reads it here (with any
    # password in a value hidden: the task itself gets the real environment).
    record = redact_tree({
        "local_id": local_id,
        "workflow_id": workflow_id,
        "task": plan.task_name,
        "image": plan.image,
        "argv": plan.argv,
        "environment": plan.task_env,
        "path_map": {container: str(host) for container, host in plan.path_map.items()},
    })
    (run_dir / "local-run.json").write_text(json.dumps(record, indent=2) + "\n")


def _resume_hint(log_path: Path) -> str | None:
    with open(log_path, "rb") as log:
        log.seek(max(0, log.seek(0, os.SEEK_END) - 65536))
        tail = log.read().decode(errors="replace")
    hints = [line for line in tail.splitlines() if line.startswith(RESUME_LINE_PREFIX)]
    return hints[-1] if hints else None


def run_spec(
    spec: dict,
    *,
    project_dir: Path,
    quiet: bool,
    workflow_id: str | None,
) -> int:
    """Run the spec's task locally and return its exit code.

    Raises osmo_inline.errors.BadInput (exit 2, before anything is written) when the spec
    cannot run on one machine (several tasks, task inputs, another task's host) or the run
    directory cannot be written.
    """
    project_dir = Path(project_dir).resolve()
    local_id = new_local_id()
    run_dir = project_dir / RUNS_DIR / local_id
    # A retry of a cluster workflow keeps that workflow's id; a fresh local run has its own.
    effective_workflow_id = workflow_id or local_id
    plan = build_plan(
        spec,
        run_dir=run_dir,
        project_dir=project_dir,
        workflow_id=effective_workflow_id,
        inherited_env=os.environ,
    )

    try:
        run_dir.mkdir(parents=True)
        _write_run_dir(plan, run_dir, local_id, effective_workflow_id)
    except OSError as error:
        shutil.rmtree(run_dir, ignore_errors=True)  # nothing half-written stays behind
        raise BadInput(
            f"cannot write the local run directory {run_dir}: {error.strerror or error}"
        ) from None
    for note in plan.notes:
        _say(f"local run {local_id}: {note}", quiet)

    env: Mapping[str, str] = {
        **os.environ,
        **plan.task_env,
        # The child writes into a pipe: unbuffered, so its progress shows as it happens.
        "PYTHONUNBUFFERED": "1",
    }
    log_path = run_dir / "task.log"
    exit_code = run_task(plan.argv, env, log_path=log_path, cwd=run_dir, quiet=quiet)

    lines = [
        f"local run {local_id} exited {exit_code}",
        f"  run directory: {run_dir}",
        f"  task log:      {log_path}",
    ]
    resume = _resume_hint(log_path)
    if resume:
        lines.append(f"  {resume}")
    if plan.store is not None:
        lines += [
            f"  MLflow store:  {plan.store.tracking_uri}",
            f"  MLflow UI:     {plan.store.ui_command()}",
        ]
    print(redact("\n".join(lines)), file=sys.stderr, flush=True)
    return exit_code
