"""The shape of a rendered workflow: its units (a task, or a group of tasks that run together),
what each task asks for, and the lines `--dry-run` shows about them.

`--nodes N` renders one OSMO group of N tasks (templates/isaaclab-inline.yaml): node 0 is the
lead, the others rendezvous at its host, `{{host:<lead>}}` in their MASTER_ADDR, on the fixed
MASTER_PORT. A sweep of such runs is one group per combination (sweep.py). Pure: no processes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASTER_PORT = 29500  # the rendezvous port the template gives every node (README, More than one GPU)
_QUANTITY = re.compile(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|K|M|G|T|P)?")
_FACTORS = {None: 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
_HOST_TOKEN = re.compile(r"\{\{host:([A-Za-z0-9_-]+)\}\}")


def units(workflow: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each schedulable unit as a group mapping: a `tasks:` workflow's tasks as groups of one
    (what OSMO makes of them), a `groups:` workflow's groups as they are."""
    if workflow.get("groups"):
        return list(workflow["groups"])
    return [{"name": task.get("name"), "tasks": [task]} for task in workflow.get("tasks") or []]


def lead_of(group: Mapping[str, Any]) -> dict[str, Any]:
    """The group's lead task: the one with lead: true, or the only task of a group of one."""
    tasks = group.get("tasks") or []
    leads = [task for task in tasks if task.get("lead") is True]
    return leads[0] if leads else tasks[0]


def rename_group(group: dict[str, Any], suffix: str) -> None:
    """`<group>` -> `<group>-<suffix>` for the group, and so for each of its tasks
    (`isaac-training-node-1` -> `isaac-training-3-node-1`, any other name `<name>-<suffix>`),
    with the tasks' `{{host:<task>}}` tokens following the new names (a sweep places several
    copies of one group side by side, and task names must be unique in a workflow)."""
    prefix = f"{group['name']}-"

    def new_name(name: str) -> str:
        if name.startswith(prefix):
            return f"{prefix}{suffix}-{name.removeprefix(prefix)}"
        return f"{name}-{suffix}"

    renamed = {task["name"]: new_name(task["name"]) for task in group["tasks"]}
    group["name"] = f"{group['name']}-{suffix}"

    def follow(text: str) -> str:
        return _HOST_TOKEN.sub(
            lambda m: "{{host:" + renamed.get(m.group(1), m.group(1)) + "}}", text)

    for task in group["tasks"]:
        task["name"] = renamed[task["name"]]
        if "args" in task:
            task["args"] = [follow(arg) for arg in task["args"]]
        if "environment" in task:
            task["environment"] = {key: follow(value) if isinstance(value, str) else value
                                   for key, value in task["environment"].items()}


def _bytes(quantity: object) -> float:
    match = _QUANTITY.fullmatch(str(quantity))
    return float(match.group(1)) * _FACTORS[match.group(2)] if match else 0.0


def _quantity(total: float) -> str:
    for unit in ("Pi", "Ti", "Gi", "Mi", "Ki"):
        if total >= _FACTORS[unit] and total % _FACTORS[unit] == 0:
            return f"{int(total // _FACTORS[unit])}{unit}"
    return f"{int(total)}"


def total_resources(workflow: Mapping[str, Any]) -> str:
    """`total: gpu 12, cpu 24, memory 144Gi, storage 240Gi`: every task's profile, added up."""
    profiles = workflow.get("resources") or {}
    totals = {"cpu": 0.0, "gpu": 0.0, "memory": 0.0, "storage": 0.0}
    for group in units(workflow):
        for task in group.get("tasks") or []:
            profile = profiles.get(task.get("resource", "default"), {})
            for name in ("cpu", "gpu"):
                totals[name] += float(profile.get(name, 0))
            for name in ("memory", "storage"):
                totals[name] += _bytes(profile.get(name, "0"))
    return (f"total: gpu {int(totals['gpu'])}, cpu {int(totals['cpu'])}, memory "
            f"{_quantity(totals['memory'])}, storage {_quantity(totals['storage'])}")


def describe_group(group: Mapping[str, Any]) -> list[str]:
    """One line for the group, one per task: its node rank, ranks and rendezvous."""
    tasks = group.get("tasks") or []
    lead = lead_of(group)
    lines = [f"group {group.get('name')}: {len(tasks)} tasks started together, lead "
             f"{lead.get('name')}"]
    for task in tasks:
        env = task.get("environment") or {}
        role = " (lead)" if task is lead else ""
        where = env.get("MASTER_ADDR") or "this task"
        lines.append(f"  {task.get('name')}{role}: node rank {env.get('NODE_RANK', '?')}, "
                     f"{env.get('NPROC_PER_NODE', '1')} ranks, rendezvous at "
                     f"{where}:{env.get('MASTER_PORT', MASTER_PORT)}")
    return lines


def describe(spec: Mapping[str, Any]) -> list[str]:
    """What --dry-run says about a workflow of groups (nothing for plain tasks)."""
    workflow = spec.get("workflow") or {}
    if not workflow.get("groups"):
        return []
    lines = [line for group in workflow["groups"] for line in describe_group(group)]
    return [*lines, "  " + total_resources(workflow)]


def group_specs(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The workflow as one spec per unit (a task or a group), for a local run of one at a
    time."""
    workflow = spec["workflow"]
    key = "groups" if workflow.get("groups") else "tasks"
    return [{**spec, "workflow": {**workflow, key: [unit]}} for unit in workflow[key]]


