"""A sweep's flow: render every combination, combine, validate, then dry-run, submit or run
here one task after another; and `--sweep-report`, which runs the runtime's report module
(training/sweep_report.py) as a process, since the client never imports MLflow."""

from __future__ import annotations

import json
import os
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
    """Each task (or group) in turn, as its own local run; then the report. Exit: the first
    failure's."""
    from osmo_inline import local

    workflow_id = config.workflow_id or local.new_local_id()
    store_uri = tracking_uri or LocalStore.in_project(config.project_dir).tracking_uri
    sweep.write_record(config.tmp_dir, sweep_id, workflow_id=workflow_id,
                       tracking_uri=store_uri, **record)
    failures = []
    units = groups.group_specs(load_yaml(spec_text))
    for number, unit_spec in enumerate(units, start=1):
        (unit,) = groups.units(unit_spec["workflow"])
        label = groups.lead_of(unit)["environment"]["SWEEP_TASK"]
        print(f"sweep {sweep_id}: {number}/{len(units)} {unit['name']} ({label})",
              file=sys.stderr, flush=True)
        code = local.run_spec(unit_spec, project_dir=config.project_dir, quiet=config.quiet,
                              workflow_id=workflow_id)
        if code:
            failures.append(code)
    code = report(config, sweep_id)
    return failures[0] if failures else code


def report(config: SubmitConfig, sweep_id: str) -> int:
    """Run the runtime's report on a recorded sweep; its exit code is ours."""
    path = sweep.read_record(config.tmp_dir, sweep_id)
    recorded = json.loads(path.read_text())
    tracking_uri = config.template_values.get("mlflow_tracking_uri") or recorded["tracking_uri"]
    if not tracking_uri:
        raise BadInput(f"sweep {sweep_id} has no tracking URI on record: pass "
                       "mlflow_tracking_uri=... after --")
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri,
           "PYTHONPATH": os.pathsep.join([str(Path(config.source).parent),
                                          os.environ.get("PYTHONPATH", "")])}
    local_store = LocalStore.in_project(config.project_dir)
    if tracking_uri == local_store.tracking_uri:
        env.update(local_store.environment())
    png = path.with_suffix(".png")
    command = [sys.executable, "-m", REPORT_MODULE, str(path), "--png", str(png)]
    try:
        return subprocess.run(command, env=env, check=False).returncode
    except OSError as error:
        raise BadInput(f"cannot run the sweep report: {error}") from None

