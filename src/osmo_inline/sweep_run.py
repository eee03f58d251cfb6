"""A sweep's flow: render every combination, combine, validate, then dry-run, submit or run
here (`-j N` tasks at a time, sweep_jobs.py); and `--sweep-report`, which runs the runtime's
report module (training/sweep_report.py) as a process, since the client never imports
MLflow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from osmo_inline import cli, groups, sweep
from osmo_inline.config import SubmitConfig
from osmo_inline.errors import BadInput, SpecInvalid
from osmo_inline.local_plan import LocalStore
from osmo_inline.payload import build_payload
from osmo_inline.render import load_yaml
from osmo_inline.validate import validate_spec

REPORT_MODULE = "training.sweep_report"


def _combination_config(config: SubmitConfig, combination: sweep.Combination) -> SubmitConfig:
    template_values, overrides = sweep.split_values(combination)
    return config._replace(template_values={**config.template_values, **template_values},
                           overrides={**config.overrides, **overrides}, sweep=())


def run_sweep(config: SubmitConfig) -> int:
    combinations = sweep.grid(config.sweep)
    sweep.check_size(combinations, config.yes, config.nodes)
    if not (config.dry_run or config.local):
        from osmo_inline.osmo import find_osmo

        find_osmo()
    payload = build_payload(config.source)
    prepared = [cli.prepare(_combination_config(config, c), payload) for c in combinations]
    _, _, values, delivery, task_lines = prepared[0]
    sweep_id = sweep.new_sweep_id()
    spec_text = sweep.combine([p[0] for p in prepared], combinations, sweep_id)
    problems = validate_spec(spec_text, local=config.local)
    if problems:
        raise SpecInvalid(problems)
    stored = cli.announce_and_place(config, payload, delivery, task_lines)
    for line in sweep.describe(spec_text, sweep_id):
        print(line, file=sys.stderr)
    if config.dry_run:
        cli.print_dry_run(config, spec_text, payload, delivery, stored)
        return 0
    record = {"task": config.task, "axes": config.sweep, "combinations": combinations,
              "experiment_name": str(values.get("experiment_name") or "")}
    if config.local:
        return _run_locally(config, spec_text, sweep_id, record,
                            str(values.get("mlflow_tracking_uri") or ""))
    submission = cli.submit(config, spec_text, payload, values, delivery,
                            extra={"sweep_id": sweep_id})
    path = sweep.write_record(config.tmp_dir, sweep_id, workflow_id=submission.workflow_id,
                              tracking_uri=str(values.get("mlflow_tracking_uri") or ""),
                              **record)
    print(f"sweep {sweep_id} recorded in {path}; when it is done: submit-training "
          f"--sweep-report {sweep_id}", file=sys.stderr)
    return 0


def _run_locally(config: SubmitConfig, spec_text: str, sweep_id: str, record: dict,
                 tracking_uri: str) -> int:
    """The tasks (or groups) as local runs, `config.jobs` at a time (sweep_jobs); then the
    report. Exit: the first failed task's code (grid order), else the report's; a signal skips
    the tasks not yet started and the report (exit 75 unless a task failed)."""
    from osmo_inline import local, sweep_jobs

    workflow_id = config.workflow_id or local.new_local_id()
    store_uri = tracking_uri or LocalStore.in_project(config.project_dir).tracking_uri
    sweep.write_record(config.tmp_dir, sweep_id, workflow_id=workflow_id,
                       tracking_uri=store_uri, **record)
    tasks = groups.group_specs(load_yaml(spec_text))
    _prepare_store(config, store_uri)
    codes, stopped_by = sweep_jobs.run_tasks(
        tasks, jobs=config.jobs, project_dir=config.project_dir, quiet=config.quiet,
        workflow_id=workflow_id, sweep_id=sweep_id)
    failed = sweep_jobs.sweep_exit_code(codes, stopped_by)
    if stopped_by is not None:
        left = sum(code is None for code in codes)
        print(f"sweep {sweep_id}: stopped by {signal.Signals(stopped_by).name}, {left} of "
              f"{len(tasks)} tasks not started; run the same command with --workflow-id "
              f"{workflow_id} to continue, --sweep-report {sweep_id} for the table",
              file=sys.stderr)
        return failed
    code = report(config, sweep_id)
    return failed if failed is not None else code


def _runtime_process(config: SubmitConfig, tracking_uri: str, *args: str,
                     quiet: bool = False) -> subprocess.CompletedProcess:
    """`python -m training.sweep_report ARGS` against the store at tracking_uri (its output
    kept, not shown, when quiet)."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri,
           "PYTHONPATH": os.pathsep.join([str(Path(config.source).parent),
                                          os.environ.get("PYTHONPATH", "")])}
    local_store = LocalStore.in_project(config.project_dir)
    if tracking_uri == local_store.tracking_uri:
        env.update(local_store.environment())
    command = [sys.executable, "-m", REPORT_MODULE, *args]
    try:
        return subprocess.run(command, env=env, check=False, capture_output=quiet, text=True)
    except OSError as error:
        raise BadInput(f"cannot run the sweep report: {error}") from None


def _prepare_store(config: SubmitConfig, tracking_uri: str) -> None:
    """A sqlite store gets its tables before tasks start side by side (sweep_report's
    prepare_store says why); a server creates its own."""
    if config.jobs > 1 and tracking_uri.startswith("sqlite:"):
        done = _runtime_process(config, tracking_uri, "--prepare-store", quiet=True)
        if done.returncode:
            last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            raise BadInput(f"cannot prepare the tracking store {tracking_uri}: {last}")


def report(config: SubmitConfig, sweep_id: str) -> int:
    """Run the runtime's report on a recorded sweep; its exit code is ours."""
    path = sweep.read_record(config.tmp_dir, sweep_id)
    recorded = json.loads(path.read_text())
    tracking_uri = config.template_values.get("mlflow_tracking_uri") or recorded["tracking_uri"]
    if not tracking_uri:
        raise BadInput(f"sweep {sweep_id} has no tracking URI on record: pass "
                       "mlflow_tracking_uri=... after --")
    return _runtime_process(config, tracking_uri, str(path), "--png",
                            str(path.with_suffix(".png"))).returncode
