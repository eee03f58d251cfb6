"""`--sweep KEY=V1,V2,...`: one workflow with one task per combination of the grid.

Each `--sweep` is one axis; the grid is their product. A KEY is `seed` or another template
value (set after `--` as `key=value`), or a cfg override path (`agent.<path>`, `env.<path>`).
Every combination is rendered from the template on its own, exactly as a single submission
with those values would be, and validated; its task is then renamed `<task>-<index>` and
placed in one workflow whose tasks have no inputs from each other, so OSMO schedules them side
by side, each with the normal resources. With `--nodes N` a combination is a group of N tasks:
the group and each of its tasks get the `-<index>` suffix (their `{{host:...}}` follows), and
the workflow holds one group per combination. A task's `WORKFLOW_ID` is OSMO's id plus `-t<index>`:
the identity the runtime tags its MLflow run with and that auto-resume looks runs up by, so a
retried task resumes its own run, never a sibling's. `SWEEP_ID` and `SWEEP_TASK` say which
sweep and combination a task is, `SWEEP_VALUES` (a JSON object, key -> value text, written
as the overrides' `CFG_OVERRIDES`) its values, which the runtime tags its run with. The
client records each sweep in `.tmp/sweeps/<id>.json` (grid, tasks, their workflow ids) for
`--sweep-report`.

More than MAX_TASKS tasks need `--yes`: a typo in a grid must not book a cluster.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import yaml

from osmo_inline import groups
from osmo_inline import overrides as cfg_overrides
from osmo_inline.errors import BadInput

MAX_TASKS = 16
_AXIS = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)=(.+)", re.DOTALL)


class Axis(NamedTuple):
    key: str
    values: tuple[str, ...]


class Combination(NamedTuple):
    index: int
    values: dict[str, str]  # axis key -> value text

    @property
    def label(self) -> str:
        return ",".join(f"{key}={value}" for key, value in self.values.items())


def _split_values(text: str) -> list[str]:
    """`1e-3,3e-4` -> two values; commas inside [...] or {...} belong to a list value."""
    values, depth, current = [], 0, ""
    for char in text:
        depth += char in "[{"
        depth -= char in "]}"
        if char == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += char
    values.append(current.strip())
    return values


def parse_axes(tokens: Sequence[str], flag_variables: Sequence[str]) -> tuple[Axis, ...]:
    """The `--sweep` flags as axes; BadInput for a malformed one."""
    axes: dict[str, Axis] = {}
    for token in tokens:
        match = _AXIS.fullmatch(token)
        if not match:
            raise BadInput(f"bad --sweep {token!r}: write KEY=V1,V2,... (e.g. seed=1,2,3 or "
                           "agent.algorithm.learning_rate=1e-3,3e-4)")
        key, values = match.group(1), _split_values(match.group(2))
        if "." in key:
            cfg_overrides.check_key(key, token)
        elif key in flag_variables:
            raise BadInput(f"--sweep {key}: {key} is set by a flag; sweep a template value "
                           "(seed, ...) or a cfg override (agent.<path>, env.<path>)")
        if any(not value for value in values) or len(set(values)) != len(values):
            raise BadInput(f"--sweep {token!r}: every value must be given once and not empty")
        if key in axes:
            raise BadInput(f"--sweep {key} is given twice: list all its values in one --sweep")
        axes[key] = Axis(key, tuple(values))
    return tuple(axes.values())


def check_not_given_twice(axes: Sequence[Axis], *after_dashes: Mapping[str, str]) -> None:
    """BadInput for a swept key that is also set after `--` (a template value or a cfg
    override): which one should win is the user's call, not a merge order's."""
    for axis in axes:
        for given in after_dashes:
            if axis.key in given:
                raise BadInput(f"--sweep {axis.key} and {axis.key}={given[axis.key]} after -- "
                               f"both set {axis.key}: drop one of them")


def parse_jobs(text: str | None, sweep_flags: Sequence[str], local: bool) -> int:
    """`-j/--jobs N`: how many tasks of a local sweep run at a time (1 when not given)."""
    if text is None:
        return 1
    if not re.fullmatch(r"\d+", text.strip()) or int(text) < 1:
        raise BadInput(f"-j/--jobs must be a positive integer, not {text!r}")
    if not (sweep_flags and local):
        raise BadInput("-j/--jobs only applies to a local sweep (--local --sweep KEY=...)")
    return int(text)


def grid(axes: Sequence[Axis]) -> list[Combination]:
    products = itertools.product(*(axis.values for axis in axes))
    return [Combination(index, dict(zip([a.key for a in axes], chosen, strict=True)))
            for index, chosen in enumerate(products)]


def check_size(combinations: Sequence[Combination], yes: bool, nodes: int = 1) -> None:
    tasks = len(combinations) * nodes
    if tasks > MAX_TASKS and not yes:
        shape = f" ({len(combinations)} groups of {nodes} nodes)" if nodes > 1 else ""
        raise BadInput(f"this sweep is {tasks} tasks{shape}, more than {MAX_TASKS}: "
                       "pass --yes if you mean it")


def split_values(combination: Combination) -> tuple[dict[str, str], dict[str, str]]:
    """(template values, cfg overrides) that one combination sets."""
    template_values = {k: v for k, v in combination.values.items() if "." not in k}
    overrides = {k: v for k, v in combination.values.items() if "." in k}
    return template_values, overrides


def new_sweep_id() -> str:
    import secrets  # only for a sweep: a dry run without one never loads it

    return time.strftime("sweep-%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def task_workflow_id(workflow_id: str, combination: Combination) -> str:
    """The task's own identity (tagged on its run, the auto-resume key)."""
    return f"{workflow_id}-t{combination.index}"


def combine(specs: Sequence[str], combinations: Sequence[Combination], sweep_id: str) -> str:
    """One spec with the unit (task, or group of --nodes tasks) of every rendered
    single-combination spec, renamed and marked."""
    loaded = [yaml.safe_load(text) for text in specs]
    base = loaded[0]
    key = "groups" if "groups" in base["workflow"] else "tasks"
    units = []
    for spec, combination in zip(loaded, combinations, strict=True):
        (unit,) = groups.units(spec["workflow"])
        groups.rename_group(unit, str(combination.index))
        for task in unit["tasks"]:
            env = task.setdefault("environment", {})
            env["WORKFLOW_ID"] = task_workflow_id(env.get("WORKFLOW_ID", "{{workflow_id}}"),
                                                  combination)
            env["SWEEP_ID"] = sweep_id
            env["SWEEP_TASK"] = combination.label
            # its values as JSON, for the runtime to tag the run with at its start
            env["SWEEP_VALUES"] = cfg_overrides.to_spec_json(combination.values)
        units.append(unit if key == "groups" else unit["tasks"][0])
    base["workflow"][key] = units
    return yaml.safe_dump(base, sort_keys=False, width=1 << 30)


def describe(spec_text: str, sweep_id: str) -> list[str]:
    """Every task (or group) with its values, and the total resources the sweep asks for."""
    workflow = yaml.safe_load(spec_text)["workflow"]
    found = groups.units(workflow)
    kind = "groups" if "groups" in workflow else "tasks"
    lines = [f"sweep {sweep_id}: {len(found)} {kind}, in parallel"]
    for unit in found:
        size = len(unit["tasks"])
        nodes = f" ({size} nodes)" if kind == "groups" else ""
        label = groups.lead_of(unit)["environment"].get("SWEEP_TASK", "")
        lines.append(f"  {unit['name']}{nodes}: {label}")
    lines.append("  " + groups.total_resources(workflow))
    return lines


def record_path(tmp_dir: Path, sweep_id: str) -> Path:
    return tmp_dir / "sweeps" / f"{sweep_id}.json"


def write_record(tmp_dir: Path, sweep_id: str, *, task: str, axes: Sequence[Axis],
                 combinations: Sequence[Combination], workflow_id: str,
                 experiment_name: str, tracking_uri: str) -> Path:
    """What `--sweep-report` needs to find the sweep's runs again."""
    from osmo_inline.artifacts import write_atomically

    record = {
        "sweep_id": sweep_id, "task": task, "experiment_name": experiment_name,
        "tracking_uri": tracking_uri, "workflow_id": workflow_id,
        "axes": {axis.key: list(axis.values) for axis in axes},
        "tasks": [{"index": c.index, "values": c.values, "label": c.label,
                   "workflow_id": task_workflow_id(workflow_id, c)} for c in combinations],
    }
    path = record_path(tmp_dir, sweep_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, (json.dumps(record, indent=2) + "\n").encode())
    return path


def read_record(tmp_dir: Path, sweep_id: str) -> Path:
    path = record_path(tmp_dir, sweep_id)
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.json")) if path.parent.is_dir() \
            else []
        raise BadInput(f"no sweep {sweep_id!r} recorded in {path.parent}"
                       + (f"; known: {', '.join(known[-5:])}" if known else ""))
    return path
