"""A stand-in for the `osmo` CLI (tests only): records what would reach OSMO, then answers.

Each call appends {argv, spec, longest_env} to $FAKE_OSMO_RECORD (JSON lines); `spec` is the
text of the file named after `workflow submit`. FAKE_OSMO_EXIT picks the exit code, for every
call or, with FAKE_OSMO_FAIL_ON="data upload" (say), only for calls that start so.

`data list` and `data upload` keep their objects in the directory $FAKE_OSMO_BUCKET:
`s3://bucket/a/b.zip` is the file `$FAKE_OSMO_BUCKET/s3/bucket/a/b.zip`.

`workflow submit` / `workflow validate` apply OSMO's rules for the shape of a workflow (tasks
or groups, names, leads, host tokens) as its server does, and reject a spec that breaks one
with exit 1 and `Error message: ...` (docs/osmo.md lines 24-25, 79-81 and 110-131; the code
each rule imitates is named at the rule). Written here on their own, not with
osmo_inline.validate: the client's own checks are what these test.
"""

import json
import os
import re
import shutil
import sys
from pathlib import Path

import yaml

argv = sys.argv[1:]
spec = None
if argv[:2] == ["workflow", "submit"] and len(argv) > 2 and Path(argv[2]).is_file():
    spec = Path(argv[2]).read_text(encoding="utf-8")
with open(os.environ["FAKE_OSMO_RECORD"], "a", encoding="utf-8") as record:
    record.write(json.dumps({
        "argv": argv,
        "spec": spec,
        "longest_env": max(len(f"{k}={v}") for k, v in os.environ.items()),
    }) + "\n")



def shape_errors(spec: dict) -> list[str]:
    """OSMO's rules for a workflow's tasks and groups, as its server applies them."""
    workflow = spec.get("workflow") or {}
    # NVIDIA/OSMO src/utils/job/workflow.py WorkflowSpec.validate_tasks_groups: not both
    # tasks: and groups:, and not neither (docs/osmo.md line 24).
    if workflow.get("tasks") and workflow.get("groups"):
        return ["Cannot use both groups and tasks in the same workflow."]
    if not workflow.get("tasks") and not workflow.get("groups"):
        return ["Workflows need to have at least one group or one task."]
    errors = []
    # The same validator: the names of all tasks and groups are unique by
    # kb_objects.k8s_name (lower case, "_" read as "-").
    names = [group.get("name") for group in workflow.get("groups") or []]
    names += [task.get("name") for group in workflow.get("groups") or []
              for task in group.get("tasks") or []]
    names += [task.get("name") for task in workflow.get("tasks") or []]
    seen = set()
    for name in names:
        key = str(name).lower().replace("_", "-")
        if key in seen:
            errors.append(f'Multiple tasks/groups have the same name: "{key}".')
        seen.add(key)
    # WorkflowSpec.parse: each task of a tasks: workflow becomes a group of its own.
    groups = workflow.get("groups") or [{"name": f"{task.get('name')}-group", "tasks": [task]}
                                        for task in workflow.get("tasks") or []]
    for group in groups:
        tasks = group.get("tasks") or []
        # src/utils/job/task.py TaskGroupSpec.validate_tasks: a group of one task makes it
        # the lead; otherwise exactly one has lead: true (docs/osmo.md lines 116-118).
        leaders = 1 if len(tasks) == 1 else sum(1 for task in tasks if task.get("lead") is True)
        if leaders != 1:
            errors.append(f'Group "{group.get("name")}" has {leaders} leader(s) but must have '
                          "exactly one.")
        # src/utils/job/task.py, TaskGroupSpec's token substitution: `host:<task>` tokens
        # exist for the tasks of this group only (docs/osmo.md lines 120-121).
        members = {task.get("name") for task in tasks}
        for task in tasks:
            text = json.dumps([task.get("args"), task.get("environment")])
            for name in re.findall(r"\{\{host:([A-Za-z0-9_-]+)\}\}", text):
                if name not in members:
                    errors.append(f"Task {task.get('name')}: no host {name} in group "
                                  f"{group.get('name')}")
    return errors


if spec is not None or argv[:2] == ["workflow", "validate"]:
    text = spec if spec is not None else Path(argv[2]).read_text(encoding="utf-8")
    problems = shape_errors(yaml.safe_load(text))
    if problems:
        # docs/osmo.md lines 79-81: a rejected submission exits 1, errors on stdout.
        print("Error message: " + "; ".join(problems))
        sys.exit(1)
    if argv[:2] == ["workflow", "validate"]:
        print("Workflow validation successful.")
        sys.exit(0)

code = int(os.environ.get("FAKE_OSMO_EXIT", "0"))
if code and " ".join(argv).startswith(os.environ.get("FAKE_OSMO_FAIL_ON", "")):
    print("Error message: " + os.environ.get("FAKE_OSMO_MESSAGE", "something went wrong"))
    sys.exit(code)


def bucket_path(uri: str) -> tuple[Path, str]:
    """(the directory standing in for the URI, the URI's key prefix inside its bucket)"""
    scheme, _, rest = uri.partition("://")
    bucket, _, prefix = rest.partition("/")
    return Path(os.environ["FAKE_OSMO_BUCKET"], scheme, bucket, prefix), prefix


if argv[:2] == ["data", "upload"]:
    # NVIDIA/OSMO src/cli/data.py, `upload`: `osmo data upload REMOTE_URI LOCAL_PATH...`
    # (`local_path` nargs='+'); _run_upload_command hands the paths to
    # storage_client.upload_objects, which stores each file under REMOTE_URI by its name
    # (the parser's epilog: `osmo data upload s3://bucket/ /path/to/file`).
    folder, _ = bucket_path(argv[2])
    folder.mkdir(parents=True, exist_ok=True)
    for local in argv[3:]:
        shutil.copyfile(local, folder / Path(local).name)
    sys.exit(0)
if argv[:2] == ["data", "list"]:
    # NVIDIA/OSMO src/cli/data.py, `list`: without --no-pager (or an output file) the keys
    # go to `less`/`more`; with it _emit_list_results writes one `obj.key` a line to stdout,
    # and the `finally:` prints "\nTotal N objects found".
    if "--no-pager" not in argv:
        sys.exit("fake osmo: data list without --no-pager would open a pager")
    folder, prefix = bucket_path(argv[2])
    keys = sorted(str(Path(prefix, p.relative_to(folder))) for p in folder.glob("*")
                  if p.is_file()) if folder.is_dir() else []
    for key in keys:
        print(key)
    print(f"\nTotal {len(keys)} objects found")
    sys.exit(0)

name = "isaaclab-inline-training-7"
url = f"https://osmo.example.com/workflows/{name}"
if "--format-type" in argv and argv[argv.index("--format-type") + 1] == "json":
    print(json.dumps({"name": name, "overview": url, "logs": url + "/logs", "spec": "..."}))
else:
    print(f"Workflow submit successful.\nWorkflow ID - {name}\nWorkflow Overview - {url}")
