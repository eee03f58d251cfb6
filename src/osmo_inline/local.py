"""Run a rendered workflow spec on this machine: `submit-training --local`.

The same spec that OSMO would get: its files are written into a run directory
`<project>/.osmo-inline/runs/<local-id>/`, its environment is set as rendered (container paths
and OSMO's tokens remapped, see local_plan), and its command runs as a child process whose
exit code becomes ours. A group's tasks (`--nodes N`) run side by side, each in
`<run>/<task name>/`, on 127.0.0.1 with a free rendezvous port; the group's exit code is
ours (local_process.run_group). Stdlib + pyyaml only: the runtime runs in the child, never
in here.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sys
import time
from pathlib import Path

from osmo_inline.errors import BadInput
from osmo_inline.local_plan import LocalPlan, LocalUnit, build_plan, select_tasks
from osmo_inline.local_process import Member, run_group
from osmo_inline.redact import redact, redact_tree

RUNS_DIR = Path(".osmo-inline") / "runs"
LOOPBACK = "127.0.0.1"  # every task's host in a local run: a group's tasks run side by side
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


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 right now: a local run's rendezvous port, instead of the
    template's fixed one, so that local runs side by side do not clash."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _plans(unit: LocalUnit, run_dir: Path, project_dir: Path, workflow_id: str
           ) -> list[tuple[LocalPlan, Path]]:
    """Each task's plan and its own directory: the run directory for a single task, else
    `<run>/<task name>/` (each task is its own pod on a cluster: its own files, payload and
    output)."""
    hosts = {str(task.get("name")): LOOPBACK for task in unit.tasks}
    port = free_loopback_port()
    plans = []
    for task in unit.tasks:
        task_dir = run_dir if len(unit.tasks) == 1 else run_dir / str(task.get("name"))
        plans.append((build_plan(task, run_dir=task_dir, project_dir=project_dir,
                                 workflow_id=workflow_id, inherited_env=os.environ,
                                 hosts=hosts, master_port=port), task_dir))
    return plans


def run_spec(
    spec: dict,
    *,
    project_dir: Path,
    quiet: bool,
    workflow_id: str | None,
) -> int:
    """Run the spec's task, or its group's tasks side by side, locally and return the exit
    code (a group's: its lead's, or the first failure that ends it).

    Raises osmo_inline.errors.BadInput (exit 2, before anything is written) when the spec
    cannot run on one machine (several tasks or groups, task inputs, a host outside the
    group) or the run directory cannot be written.
    """
    project_dir = Path(project_dir).resolve()
    local_id = new_local_id()
    run_dir = project_dir / RUNS_DIR / local_id
    # A retry of a cluster workflow keeps that workflow's id; a fresh local run has its own.
    effective_workflow_id = workflow_id or local_id
    unit = select_tasks(spec)
    plans = _plans(unit, run_dir, project_dir, effective_workflow_id)

    try:
        run_dir.mkdir(parents=True)
        for plan, task_dir in plans:
            task_dir.mkdir(exist_ok=True)
            _write_run_dir(plan, task_dir, local_id, effective_workflow_id)
    except OSError as error:
        shutil.rmtree(run_dir, ignore_errors=True)  # nothing half-written stays behind
        raise BadInput(
            f"cannot write the local run directory {run_dir}: {error.strerror or error}"
        ) from None
    notes = plans[0][0].notes
    if len(plans) > 1:
        port = plans[0][0].task_env.get("MASTER_PORT", "")
        notes = [*notes, f"group {unit.name}: {len(plans)} tasks side by side on {LOOPBACK}"
                 + (f", rendezvous port {port}" if port else "") + ", lead "
                 + plans[unit.lead][0].task_name]
    for note in notes:
        _say(f"local run {local_id}: {note}", quiet)

    members = [
        Member(plan.task_name, plan.argv, {
            **os.environ,
            **plan.task_env,
            # The child writes into a pipe: unbuffered, so its progress shows as it happens.
            "PYTHONUNBUFFERED": "1",
        }, task_dir / "task.log", task_dir)
        for plan, task_dir in plans
    ]
    exit_code, codes = run_group(members, quiet=quiet, lead=unit.lead,
                                 ignore_nonlead_status=unit.ignore_nonlead_status)

    lines = [f"local run {local_id} exited {exit_code}", f"  run directory: {run_dir}"]
    if len(members) == 1:
        lines.append(f"  task log:      {members[0].log_path}")
    else:
        lines += [f"  {member.name}: exited {code}, log {member.log_path}"
                  for member, code in zip(members, codes, strict=True)]
    resume = _resume_hint(members[unit.lead].log_path)
    if resume:
        lines.append(f"  {resume}")
    store = plans[0][0].store
    if store is not None:
        lines += [
            f"  MLflow store:  {store.tracking_uri}",
            f"  MLflow UI:     {store.ui_command()}",
        ]
    print(redact("\n".join(lines)), file=sys.stderr, flush=True)
    return exit_code
