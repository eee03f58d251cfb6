"""Step 4: rendered spec -> list of problems, by the rules in docs/osmo.md (OSMO's models).

Pure. Each problem is one line naming where it is (`workflow.tasks[0].environment.X: ...`).
An empty list means OSMO's checks we know of will pass.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import yaml

from osmo_inline.render import JINJA_MARKERS, SPECIAL_TOKEN, load_yaml

ARG_LIMIT = 128 * 1024  # Linux MAX_ARG_STRLEN: one argv or environment string
FILE_LIMIT = 1024 * 1024  # a files: entry is one Kubernetes Secret

TOP_LEVEL = {"version", "workflow", "default-values"}
WORKFLOW_KEYS = {"name", "pool", "labels", "timeout", "resources", "tasks", "groups"}
TIMEOUT_KEYS = {"exec_timeout", "queue_timeout"}
RESOURCE_KEYS = {"cpu", "gpu", "memory", "storage", "platform"}
TASK_KEYS = {
    "name", "image", "command", "args", "environment", "files", "inputs", "outputs",
    "credentials", "resource", "lead", "exitActions", "checkpoint", "privileged",
    "hostNetwork", "volumeMounts",
}
GROUP_KEYS = {"name", "barrier", "ignoreNonleadStatus", "tasks"}
FILE_KEYS = {"path", "contents", "base64"}
# inputs: exactly one source per entry, each optionally filtered by a regex
INPUT_SOURCES = ("task", "url", "dataset")
INPUT_KEYS = {*INPUT_SOURCES, "regex"}
URL_SCHEMES = ("s3://", "gs://", "azure://")
LOCAL_URL_SCHEMES = ("file:///",)  # a directory on this machine: only a --local run reads it
EXIT_ACTIONS = ("COMPLETE", "FAIL", "RESCHEDULE")
EXIT_CODES = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")  # "0,1-10,16"

NAME = re.compile(r"[a-zA-Z]([a-zA-Z0-9_-]*[a-zA-Z0-9])?")
NAME_MAX = 64
TIMEOUT = re.compile(r"\d+[smhd]")
_TOKEN_LIKE = re.compile(r"\{\{[^{}]*\}\}")


def validate_spec(text: str, *, local: bool = False) -> list[str]:
    """Every problem found in the rendered spec text, one line each. `local`: the spec is for
    a --local run, whose url inputs may also be file:/// directories of this machine."""
    problems = _jinja_leftovers(text)
    try:
        spec = load_yaml(text)
    except yaml.YAMLError as error:
        return problems + ["spec is not valid YAML: " + " ".join(str(error).split())]
    if not isinstance(spec, dict):
        return problems + ["spec must be a mapping with a workflow: key"]
    return problems + _check_spec(spec, local)


def _jinja_leftovers(text: str) -> list[str]:
    # OSMO renders the submitted file again: any marker left but a special token breaks it.
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        bare = SPECIAL_TOKEN.sub("", line)
        for marker in JINJA_MARKERS:
            if marker in bare:
                token = _TOKEN_LIKE.search(bare)
                hint = f" ({token.group(0)!r}: OSMO tokens take no spaces)" if token else ""
                problems.append(f"line {number}: leftover Jinja syntax '{marker}'{hint}")
                break
    return problems


def _check_spec(spec: dict[str, Any], local: bool) -> list[str]:
    problems = [f"unknown top-level key: {key}" for key in spec if key not in TOP_LEVEL]
    if "version" in spec and spec["version"] != 2:
        problems.append(f"version must be 2, not {spec['version']!r}")
    workflow = spec.get("workflow")
    if not isinstance(workflow, dict):
        return problems + ["workflow: required, and must be a mapping"]
    problems += _unknown(workflow, WORKFLOW_KEYS, "workflow")
    problems += _name(workflow.get("name"), "workflow.name")
    problems += _timeout(workflow.get("timeout"))
    resources = workflow.get("resources") or {}
    problems += _resources(resources)
    has_tasks, has_groups = "tasks" in workflow, "groups" in workflow
    if has_tasks == has_groups:
        return problems + ["workflow: needs exactly one of tasks: or groups:"]
    if has_tasks:
        tasks = _list_of_dicts(workflow["tasks"], "workflow.tasks", problems)
        located = [(f"workflow.tasks[{i}]", task) for i, task in enumerate(tasks)]
        # OSMO makes each task of a tasks: workflow a group of its own (WorkflowSpec.parse)
        hosts = {where: [task.get("name")] for where, task in located}
        group_names = []
    else:
        located, hosts = _groups(workflow["groups"], problems)
        group_names = [g.get("name") for g in workflow["groups"] if isinstance(g, dict)]
    names = [task.get("name") for _, task in located]
    # Tasks and groups share one namespace (OSMO's WorkflowSpec.validate_tasks_groups).
    problems += _unique_names([*(("group", n) for n in group_names),
                               *(("task", n) for n in names)])
    profiles = set(resources) if isinstance(resources, dict) else set()
    for where, task in located:
        problems += _task(task, where, profiles, names, hosts[where])
        problems += _inputs(task.get("inputs", []), f"{where}.inputs", names, local)
    return problems


def _unknown(mapping: dict[str, Any], allowed: set[str], where: str) -> list[str]:
    return [f"{where}: unknown field '{key}'" for key in mapping if key not in allowed]


def _name(value: Any, where: str) -> list[str]:
    if not isinstance(value, str) or not value:
        return [f"{where}: required"]
    if not NAME.fullmatch(value) or len(value) > NAME_MAX:
        return [
            f"{where}: '{value}' must start with a letter, hold only letters, digits, - and _, "
            f"end with a letter or digit, and be at most {NAME_MAX} characters"
        ]
    return []


def _timeout(timeout: Any) -> list[str]:
    if timeout is None:
        return []
    if not isinstance(timeout, dict):
        return ["workflow.timeout: must be a mapping"]
    problems = _unknown(timeout, TIMEOUT_KEYS, "workflow.timeout")
    for key in TIMEOUT_KEYS & set(timeout):
        value = timeout[key]
        if isinstance(value, bool) or not (
            isinstance(value, int) or (isinstance(value, str) and TIMEOUT.fullmatch(value))
        ):
            problems.append(
                f"workflow.timeout.{key}: '{value}' must be <int><s|m|h|d> (one unit, e.g. "
                "23h) or a number of seconds"
            )
    return problems


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _resources(resources: Any) -> list[str]:
    if not isinstance(resources, dict):
        return ["workflow.resources: must be a mapping of profile: {cpu, gpu, memory, ...}"]
    problems = []
    for profile, spec in resources.items():
        where = f"workflow.resources.{profile}"
        if not isinstance(spec, dict):
            problems.append(f"{where}: must be a mapping")
            continue
        problems += _unknown(spec, RESOURCE_KEYS, where)
        for key in ("cpu", "gpu"):
            if key in spec and not (_is_int(spec[key]) and spec[key] >= 0):
                problems.append(f"{where}.{key}: must be a non-negative integer, not "
                                f"{spec[key]!r}")
        for key in ("memory", "storage", "platform"):
            if key in spec and not isinstance(spec[key], str):
                problems.append(f"{where}.{key}: must be a string such as \"48Gi\"")
    return problems


def _list_of_dicts(value: Any, where: str, problems: list[str]) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        problems.append(f"{where}: must be a non-empty list")
        return []
    good = [item for item in value if isinstance(item, dict)]
    if len(good) != len(value):
        problems.append(f"{where}: every entry must be a mapping")
    return good


def _groups(groups: Any, problems: list[str]
            ) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, list[Any]]]:
    """Every group's tasks (where, task), and for each task the names its {{host:x}} tokens
    may use: OSMO substitutes them per group, so only tasks of its own group resolve
    (docs/osmo.md, Groups)."""
    located: list[tuple[str, dict[str, Any]]] = []
    hosts: dict[str, list[Any]] = {}
    for g, group in enumerate(_list_of_dicts(groups, "workflow.groups", problems)):
        where = f"workflow.groups[{g}]"
        problems += _unknown(group, GROUP_KEYS, where)
        problems += _name(group.get("name"), f"{where}.name")
        for key in ("barrier", "ignoreNonleadStatus"):
            if key in group and not isinstance(group[key], bool):
                problems.append(f"{where}.{key}: must be true or false, not {group[key]!r}")
        tasks = _list_of_dicts(group.get("tasks"), f"{where}.tasks", problems)
        problems += _one_lead(tasks, where, group.get("name"))
        members = [task.get("name") for task in tasks]
        for t, task in enumerate(tasks):
            located.append((f"{where}.tasks[{t}]", task))
            hosts[f"{where}.tasks[{t}]"] = members
    return located, hosts


def _one_lead(tasks: list[dict[str, Any]], where: str, name: Any) -> list[str]:
    """A group of one task makes it the lead; a larger one names exactly one lead: true."""
    not_bool = [f"{where}.tasks[{t}].lead: must be true or false, not {task['lead']!r}"
                for t, task in enumerate(tasks)
                if "lead" in task and not isinstance(task["lead"], bool)]
    if not_bool:
        return not_bool
    leads = [str(task.get("name")) for task in tasks if task.get("lead") is True]
    if len(tasks) > 1 and len(leads) != 1:
        named = f" ({', '.join(leads)})" if leads else ""
        return [f"{where} ({name}): {len(leads)} tasks have lead: true{named}, but a group "
                f"of {len(tasks)} tasks needs exactly one"]
    return []


def _unique_names(named: list[tuple[str, Any]]) -> list[str]:
    """(kind, name) of every group and task: unique as OSMO compares them, ignoring case and
    with - and _ equal."""
    seen: dict[str, str] = {}
    problems = []
    for kind, name in named:
        if not isinstance(name, str):
            continue
        key = name.lower().replace("_", "-")  # OSMO treats these as the same name
        if key in seen:
            problems.append(f"{kind} name '{name}' clashes with '{seen[key]}'")
        seen.setdefault(key, name)
    return problems


def _task(task: dict[str, Any], where: str, profiles: set[str], names: list[Any],
          hosts: list[Any]) -> list[str]:
    problems = _unknown(task, TASK_KEYS, where)
    problems += _name(task.get("name"), f"{where}.name")
    if not isinstance(task.get("image"), str) or not task.get("image"):
        problems.append(f"{where}.image: required")
    command = task.get("command")
    if not (isinstance(command, list) and command and all(isinstance(c, str) for c in command)):
        problems.append(f"{where}.command: required, a non-empty list of strings")
    args = task.get("args", [])
    if not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
        problems.append(f"{where}.args: must be a list of strings")
    else:
        for i, arg in enumerate([*(command if isinstance(command, list) else []), *args]):
            if isinstance(arg, str) and len(arg.encode()) > ARG_LIMIT:
                problems.append(f"{where}: argument {i} is {len(arg.encode())} bytes, over "
                                f"the {ARG_LIMIT} byte limit of one argv string")
    problems += _environment(task.get("environment", {}), f"{where}.environment")
    problems += _files(task.get("files", []), f"{where}.files")
    problems += _exit_actions(task.get("exitActions"), f"{where}.exitActions")
    resource = task.get("resource", "default")
    if profiles and resource not in profiles:
        problems.append(f"{where}.resource: no resource profile '{resource}'")
    problems += _token_references(task, where, names, hosts)
    return problems


def _environment(env: Any, where: str) -> list[str]:
    if not isinstance(env, dict):
        return [f"{where}: must be a mapping of NAME: \"value\""]
    problems = []
    for name, value in env.items():
        if not isinstance(value, str):
            problems.append(f"{where}.{name}: must be a string (quote it), not {value!r}")
        elif len(f"{name}={value}".encode()) > ARG_LIMIT:
            problems.append(f"{where}.{name}: {len(value.encode())} bytes, over the "
                            f"{ARG_LIMIT} byte limit of one environment string")
    return problems


def _files(files: Any, where: str) -> list[str]:
    problems: list[str] = []
    paths: set[str] = set()
    for i, entry in enumerate(_list_of_dicts(files, where, problems) if files else []):
        at = f"{where}[{i}]"
        problems += _unknown(entry, FILE_KEYS, at)
        path, contents = entry.get("path"), entry.get("contents")
        if not isinstance(path, str) or not path.startswith("/"):
            problems.append(f"{at}.path: required, an absolute path")
        elif path == "/osmo" or path.startswith("/osmo/"):
            problems.append(f"{at}.path: {path} is under /osmo, which OSMO reserves")
        elif path in paths:
            problems.append(f"{at}.path: {path} appears twice in this task")
        else:
            paths.add(path)
        if not isinstance(contents, str):
            problems.append(f"{at}.contents: required, a string")
            continue
        size = len(contents.encode())
        if entry.get("base64") is True:
            try:
                size = len(base64.b64decode(contents, validate=True))
            except (binascii.Error, ValueError):
                problems.append(f"{at}.contents: not valid base64")
                continue
        if size > FILE_LIMIT:
            problems.append(f"{at}: {size} bytes, over the {FILE_LIMIT} byte limit of a file "
                            "(one Kubernetes Secret)")
    return problems


def _inputs(inputs: Any, where: str, names: list[Any], local: bool) -> list[str]:
    """[{task: NAME} | {url: s3://|gs://|azure://...} | {dataset: {...}}, optional regex]."""
    problems: list[str] = []
    schemes = URL_SCHEMES + (LOCAL_URL_SCHEMES if local else ())
    for i, entry in enumerate(_list_of_dicts(inputs, where, problems) if inputs else []):
        at = f"{where}[{i}]"
        problems += _unknown(entry, INPUT_KEYS, at)
        sources = [key for key in INPUT_SOURCES if key in entry]
        if len(sources) != 1:
            problems.append(f"{at}: needs exactly one of " + ", ".join(INPUT_SOURCES))
        elif "url" in entry:
            url = entry["url"]
            if not isinstance(url, str) or not url.startswith(schemes):
                problems.append(f"{at}.url: {url!r} must start with " + ", ".join(schemes))
        elif "task" in entry and entry["task"] not in names:
            problems.append(f"{at}.task: {entry['task']!r} names no task of this workflow")
    return problems


def _exit_actions(actions: Any, where: str) -> list[str]:
    """{COMPLETE|FAIL|RESCHEDULE: "0,1-10,16"}, and no exit code under two actions."""
    if actions is None:
        return []
    if not isinstance(actions, dict):
        return [f"{where}: must be a mapping of action: \"codes\" (e.g. RESCHEDULE: \"75\")"]
    problems = [f"{where}: unknown action '{action}'; use " + ", ".join(EXIT_ACTIONS)
                for action in actions if action not in EXIT_ACTIONS]
    claimed: list[tuple[int, int, str]] = []  # (low, high, action)
    for action, codes in actions.items():
        text = str(codes).replace(" ", "") if _is_int(codes) or isinstance(codes, str) else ""
        if not EXIT_CODES.fullmatch(text):
            problems.append(f"{where}.{action}: {codes!r} must be exit codes such as "
                            "\"0,1-10,16\"")
            continue
        for part in text.split(","):
            first, _, last = part.partition("-")
            low, high = int(first), int(last or first)
            if low > high:
                problems.append(f"{where}.{action}: range {part} runs backwards")
                continue
            for other_low, other_high, other in claimed:
                if other != action and low <= other_high and other_low <= high:
                    problems.append(f"{where}: exit code {max(low, other_low)} is under both "
                                    f"{other} and {action}")
            claimed.append((low, high, action))
    return problems


def _token_references(task: dict[str, Any], where: str, names: list[Any],
                      hosts: list[Any]) -> list[str]:
    # {{input:N}} / {{input:task}} / {{host:task}} must point at something that exists; a
    # host only within the task's own group (`hosts`).
    strings = [*(task.get("command") or []), *(task.get("args") or [])]
    if isinstance(task.get("environment"), dict):
        strings += task["environment"].values()
    text = "\n".join(s for s in strings if isinstance(s, str))
    inputs = task.get("inputs") or []
    problems = []
    for token in sorted(set(SPECIAL_TOKEN.findall(text))):
        kind, _, ref = token.strip("{}").partition(":")
        if kind == "host" and ref not in hosts:
            problems.append(f"{where}: {token} names no task of this workflow" if ref not in
                            names else f"{where}: {token} names a task outside its group: "
                            "OSMO resolves hosts only within a group (each task of a tasks: "
                            "workflow is a group of its own)")
        elif kind == "input":
            ok = int(ref) < len(inputs) if ref.isdigit() else ref in names
            if not ok:
                problems.append(f"{where}: {token} names no input of this task")
    return problems
