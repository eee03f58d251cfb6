"""Turn a rendered workflow spec into what a local run executes: writes nothing.

The local executor runs the spec OSMO would get, with only these changes (documented in
docs/local.md; the moved paths are listed in `LocalPlan.path_map`):

- container paths move into the run directory: each `files:` entry `/a/b` is written to
  `<run>/files/a/b`, PAYLOAD_ROOT becomes `<run>/payload`, OSMO's `{{output}}` becomes
  `<run>/output`; every occurrence of those container paths in `command`, `args` and
  `environment` is rewritten;
- OSMO's run-time tokens are substituted the way OSMO does (`{{workflow_id}}`, `{{output}}`,
  `{{uuid}}`); `{{input:N}}` of a `url: file:///...` input (storage delivery to a local
  directory) becomes that object's directory here; the ones a single machine cannot satisfy
  (other inputs, `{{host:x}}` of a task outside the group) are refused; a group's own
  `{{host:<task>}}` is 127.0.0.1, where all its tasks run side by side;
- a non-empty MASTER_PORT (the template's fixed rendezvous port) becomes a free loopback port
  that the executor picks, so that local runs side by side do not clash.

On top of that the local defaults apply: PYTHON is the interpreter running the client, and an
empty MLFLOW_TRACKING_URI (with no Azure ML workspace) points at a store in the project.
"""

from __future__ import annotations

import base64
import binascii
import re
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from osmo_inline.errors import BadInput

# OSMO's special tokens, written without spaces: {{output}}, {{workflow_id}}, {{uuid}},
# {{input:0}}, {{input:taskname}}, {{host:taskname}}.
_TOKEN = re.compile(r"\{\{([A-Za-z_]+)(?::([^{}]*))?\}\}")
_TASK_NAME = re.compile(r"[A-Za-z0-9_-]+")

# The Azure ML workspace values: when all are set the runtime tracks there, so the local
# store default must not override it.
AZURE_WORKSPACE_VARS = ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME")


@dataclass(frozen=True)
class LocalStore:
    """The project-local MLflow store that local runs share, so runs accumulate and a
    `runs:/` URI from one local run resumes in the next."""

    db_path: Path
    artifact_root: Path

    @classmethod
    def in_project(cls, project_dir: Path) -> LocalStore:
        state = project_dir.resolve() / ".osmo-inline"
        return cls(db_path=state / "mlflow.db", artifact_root=state / "mlartifacts")

    @property
    def tracking_uri(self) -> str:
        # sqlite:/// + an absolute path gives the four slashes SQLAlchemy expects.
        return f"sqlite:///{self.db_path}"

    def environment(self) -> dict[str, str]:
        """What points the runtime's MLflow at this store: the sqlite URI, and
        MLFLOW_ARTIFACT_LOCATION (the runtime's own setting: experiments it creates keep their
        artifacts there, through MLflow's public `create_experiment(artifact_location=...)`;
        a sqlite store's default would be `./mlruns` of the task's working directory)."""
        return {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_ARTIFACT_LOCATION": self.artifact_root.as_uri(),
        }

    def ui_command(self) -> str:
        return (
            f"mlflow ui --backend-store-uri {self.tracking_uri} "
            f"--default-artifact-root {self.artifact_root}"
        )


@dataclass(frozen=True)
class LocalFile:
    container_path: str
    host_path: Path
    data: bytes


@dataclass(frozen=True)
class LocalPlan:
    """Everything a local run does, decided before anything is written."""

    task_name: str
    image: str
    argv: list[str]
    # The task's environment after remapping (what the spec sets, not the inherited one).
    task_env: dict[str, str]
    files: list[LocalFile]
    path_map: dict[str, Path]  # container path -> host path
    output_dir: Path
    payload_dir: Path
    store: LocalStore | None  # the project-local store, when the run uses it
    notes: list[str]  # one line each, said before the run starts


class LocalUnit(NamedTuple):
    """What one local run executes: one task, or every task of one group, side by side."""

    name: str
    tasks: list[dict]
    lead: int  # index of the lead task (the task itself when there is one)
    # OSMO's ignoreNonleadStatus (default true): a non-lead task's failure does not end the
    # group. The template sets false, so that any node's failure ends every node.
    ignore_nonlead_status: bool


def select_tasks(spec: Mapping) -> LocalUnit:
    """The task, or the one group's tasks, that a local run executes.

    One task: that task. One group: all its tasks at once, as OSMO starts them together
    (barrier), with `{{host:<task>}}` on loopback. More tasks or groups: refused, since they
    would be separate workloads that OSMO schedules each on its own.
    """
    workflow = spec.get("workflow") or {}
    tasks = workflow.get("tasks")
    groups = workflow.get("groups")
    if tasks:
        if len(tasks) > 1:
            names = ", ".join(str(t.get("name")) for t in tasks)
            raise BadInput(
                f"local runs execute one task; this workflow has {len(tasks)} ({names}): "
                "submit it to OSMO instead"
            )
        return LocalUnit(str(tasks[0].get("name")), [tasks[0]], 0, True)
    if groups:
        if len(groups) > 1:
            names = ", ".join(str(g.get("name")) for g in groups)
            raise BadInput(
                f"local runs execute one group; this workflow has {len(groups)} "
                f"groups ({names}): submit it to OSMO instead"
            )
        group = groups[0]
        group_tasks = list(group.get("tasks") or [])
        leads = [i for i, t in enumerate(group_tasks) if t.get("lead") is True]
        if not group_tasks or (len(group_tasks) > 1 and len(leads) != 1):
            raise BadInput(
                f"group {group.get('name')!r} needs exactly one task with lead: true "
                "to run locally"
            )
        names = [str(t.get("name")) for t in group_tasks]
        if len(set(names)) != len(names) or not all(map(_TASK_NAME.fullmatch, names)):
            # each task gets <run>/<its name>/: one directory each, inside the run
            raise BadInput(f"group {group.get('name')!r} needs task names that are unique "
                           "and made of letters, digits, - and _: " + ", ".join(names))
        return LocalUnit(str(group.get("name")), group_tasks, leads[0] if leads else 0,
                         group.get("ignoreNonleadStatus", True) is not False)
    raise BadInput("the workflow has no tasks to run")


def substitute_tokens(text: str, values: Mapping[str, str], where: str) -> str:
    """Replace OSMO's run-time tokens in `text`; refuse those a local run cannot satisfy."""

    def replace(match: re.Match[str]) -> str:
        name, argument = match.group(1), match.group(2)
        key = name if argument is None else f"{name}:{argument}"  # "output", "input:0"
        if key in values:
            return values[key]
        if name == "input":
            raise BadInput(
                f"{where} uses {match.group(0)}: task inputs (/osmo/data/input) are not "
                "available in a local run; remove the input or submit to OSMO"
            )
        if name == "host":
            raise BadInput(
                f"{where} uses {match.group(0)}: only the hosts of tasks in the same group "
                "exist in a local run (on 127.0.0.1); submit to OSMO instead"
            )
        raise BadInput(f"{where} uses {match.group(0)}, which is not an OSMO token")

    return _TOKEN.sub(replace, text)


def remap_paths(text: str, path_map: Mapping[str, Path]) -> str:
    """Rewrite each container path in `text` to its host path.

    A path only matches whole: `/workspace/isaac_payload` is rewritten in
    `/workspace/isaac_payload/src` but not in `/workspace/isaac_payload2`. Longer paths go
    first so a file inside a mapped folder keeps its own mapping.
    """
    for container in sorted(path_map, key=len, reverse=True):
        pattern = re.escape(container) + r"(?=$|[/\s\"':;=,)])"
        host = str(path_map[container])
        text = re.sub(pattern, lambda _m, host=host: host, text)
    return text


def local_inputs(task: Mapping) -> dict[str, Path]:
    """`input:N` -> the directory here for each `url: file:///...` input: the object's
    directory when the URL names a file (storage delivery's `<sha256>.zip`), else the
    directory itself. Other inputs (another task, a bucket) stay unavailable locally."""
    found = {}
    for index, entry in enumerate(task.get("inputs") or []):
        url = entry.get("url") if isinstance(entry, Mapping) else None
        if not isinstance(url, str) or not url.startswith("file:///"):
            continue
        path = Path(url.removeprefix("file://"))
        directory = path if path.is_dir() else path.parent
        if not directory.is_dir():
            raise BadInput(f"input {index} ({url}) is not a directory on this machine")
        found[f"input:{index}"] = directory
    return found


def _host_path_for(container_path: str, files_root: Path) -> Path:
    parts = [part for part in PurePosixPath(container_path).parts if part != "/"]
    if not parts or ".." in parts:
        # Every file must land inside the run directory, as a file.
        raise BadInput(f"files entry path {container_path!r} is not a file path")
    return files_root.joinpath(*parts)


def _decode_file(entry: Mapping, where: str) -> bytes:
    contents = entry.get("contents", "")
    if not isinstance(contents, str):
        raise BadInput(f"{where}: contents must be a string")
    if not entry.get("base64"):
        return contents.encode()
    try:
        return base64.b64decode(contents, validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadInput(f"{where}: contents are not valid base64 ({error})") from None


def build_plan(
    task: Mapping,
    *,
    run_dir: Path,
    project_dir: Path,
    workflow_id: str,
    inherited_env: Mapping[str, str],
    hosts: Mapping[str, str] | None = None,
    master_port: int | None = None,
    python: str = sys.executable,
) -> LocalPlan:
    """What running `task` locally in `run_dir` means, or BadInput if it cannot run here.

    `hosts`: task name -> address, for the `{{host:<task>}}` of the task's group (loopback).
    `master_port`: replaces a non-empty MASTER_PORT (the template's fixed rendezvous port), so
    that local runs side by side do not clash."""
    notes: list[str] = []
    name = str(task.get("name"))
    command = [str(word) for word in task.get("command") or []]
    if not command:
        raise BadInput(f"task {name!r} has no command")
    args = [str(word) for word in task.get("args") or []]
    environment = {
        str(key): "" if value is None else str(value)
        for key, value in (task.get("environment") or {}).items()
    }

    output_dir = run_dir / "output"
    payload_dir = run_dir / "payload"
    for path in (str(run_dir), python):
        if any(char.isspace() for char in path):
            # The task's command word-splits ${PYTHON} and the bootstrap path, as on the
            # cluster; a path with a space would silently become two words.
            raise BadInput(f"local runs need paths without spaces: {path!r}")
    tokens = {"workflow_id": workflow_id, "output": str(output_dir), "uuid": str(uuid.uuid4())}
    tokens.update({f"host:{task_name}": address for task_name, address in (hosts or {}).items()})
    inputs = local_inputs(task)
    tokens.update({key: str(directory) for key, directory in inputs.items()})

    # Container paths -> run directory. PAYLOAD_ROOT's rendered value is a container path
    # like the files' ones: anything that mentions it follows it into the run.
    files_root = run_dir / "files"
    entries = [(str(entry.get("path", "")), entry) for entry in task.get("files") or []]
    path_map = {path: _host_path_for(path, files_root) for path, _ in entries}
    # OSMO puts input N at /osmo/data/input/N: a spec that names that path gets the same
    # directory as its {{input:N}} token.
    path_map.update({f"/osmo/data/input/{key.removeprefix('input:')}": directory
                     for key, directory in inputs.items()})
    container_payload_root = environment.get("PAYLOAD_ROOT", "")
    if container_payload_root:
        path_map[container_payload_root] = payload_dir

    def localise(text: str, where: str) -> str:
        return remap_paths(substitute_tokens(text, tokens, where), path_map)

    files: list[LocalFile] = []
    for index, (container_path, entry) in enumerate(entries):
        where = f"task {name!r} files[{index}] ({container_path})"
        data = _decode_file(entry, where)
        if not entry.get("base64"):
            # OSMO substitutes tokens in plain-text files, never in base64 ones.
            data = localise(data.decode(), where).encode()
        files.append(LocalFile(container_path, path_map[container_path], data))

    argv = [remap_paths(word, path_map) for word in command]
    argv += [localise(word, f"task {name!r} args") for word in args]
    task_env = {key: localise(value, f"environment {key}") for key, value in environment.items()}
    if "PAYLOAD_ROOT" in task_env:
        task_env["PAYLOAD_ROOT"] = str(payload_dir)
    task_env["PYTHON"] = python
    if master_port is not None and task_env.get("MASTER_PORT"):
        task_env["MASTER_PORT"] = str(master_port)

    # The local store only when the run would otherwise track nowhere useful: no tracking
    # URI (from the spec, or inherited when the spec does not set one) and no Azure ML
    # workspace (the runtime tracks there when all three values are set).
    effective = {**inherited_env, **task_env}
    store = None
    if not effective.get("MLFLOW_TRACKING_URI") and not all(
        effective.get(var) for var in AZURE_WORKSPACE_VARS
    ):
        store = LocalStore.in_project(project_dir)
        task_env.update(store.environment())

    image = str(task.get("image", ""))
    notes.append(f"image {image or '(none)'} is not used locally: the task runs with {python}")
    return LocalPlan(
        task_name=name,
        image=image,
        argv=argv,
        task_env=task_env,
        files=files,
        path_map=path_map,
        output_dir=output_dir,
        payload_dir=payload_dir,
        store=store,
        notes=notes,
    )
