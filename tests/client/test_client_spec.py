"""Rendering by OSMO's rules and validation by osmo.md's, on spec text (no processes)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from osmo_inline.render import load_template, render
from osmo_inline.validate import validate_spec

TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "isaaclab-inline.yaml"
FILLED = {"payload_b64": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==", "payload_sha256": "0" * 64,
          "bootstrap_b64": "cHJpbnQoKQo="}


def rendered_default() -> str:
    return render(load_template(TEMPLATE), {}, FILLED)


def test_default_template_renders_and_validates():
    text = rendered_default()
    assert validate_spec(text) == []
    spec = yaml.safe_load(text)
    assert set(spec) == {"version", "workflow"}  # default-values dropped, as OSMO's dry-run
    task = spec["workflow"]["tasks"][0]
    assert task["command"] == ["bash", "-c"]
    assert {f["path"]: f["base64"] for f in task["files"]} == {
        "/workspace/osmo_inline/bootstrap.py": True, "/workspace/osmo_inline/payload.zip": True}
    assert task["environment"]["PAYLOAD_ARCHIVE"] == "/workspace/osmo_inline/payload.zip"


def test_only_osmo_special_tokens_survive_rendering():
    text = rendered_default()
    leftovers = re.findall(r"\{\{.*?\}\}|\{%|\{#", text)
    assert leftovers and set(leftovers) <= {"{{workflow_id}}", "{{output}}"}
    env = yaml.safe_load(text)["workflow"]["tasks"][0]["environment"]
    assert env["WORKFLOW_ID"] == "{{workflow_id}}"
    assert env["TRAINING_OUTPUT_DIR"] == "{{output}}"


def test_a_preempted_evicted_or_gracefully_stopped_task_is_rescheduled():
    task = yaml.safe_load(rendered_default())["workflow"]["tasks"][0]
    assert task["exitActions"] == {"COMPLETE": "0", "RESCHEDULE": "75,3004,3006"}
    assert task["environment"]["AUTO_RESUME"] == "true"
    assert task["environment"]["SAVE_INTERVAL"] == ""


def test_template_variables_are_discovered_not_hard_coded():
    variables = load_template(TEMPLATE).variables
    assert {"task", "num_envs", "azure_client_id", "payload_b64", "workflow_name"} <= variables
    assert "workflow_id" not in variables and "output" not in variables


GOOD = """\
version: 2
workflow:
  name: train
  timeout: {exec_timeout: 23h}
  resources:
    default: {cpu: 8, gpu: 1, memory: 48Gi, storage: 80Gi}
  tasks:
  - name: a
    image: img
    command: [bash]
    args: ["echo {{workflow_id}}"]
    environment: {X: "1"}
    files:
    - {path: /w/f.txt, contents: hello}
"""
BIG = "x" * (128 * 1024 + 1)

# (id, edit applied to GOOD, text the single problem contains)
INVALID = [
    ("unknown-top-level", lambda s: s + "extra: 1\n", "unknown top-level key: extra"),
    ("version", lambda s: s.replace("version: 2", "version: 1"), "version must be 2"),
    ("unknown-field", lambda s: s.replace("  name: train", "  name: train\n  nmae: x"),
     "workflow: unknown field 'nmae'"),
    ("bad-name", lambda s: s.replace("name: train", "name: train-"), "workflow.name"),
    ("cpu-float", lambda s: s.replace("cpu: 8", "cpu: 8.5"), "default.cpu: must be a non-neg"),
    ("gpu-string", lambda s: s.replace("gpu: 1", "gpu: one"), "default.gpu"),
    ("mixed-timeout", lambda s: s.replace("23h", "1h30m"), "exec_timeout: '1h30m'"),
    ("no-command", lambda s: s.replace("    command: [bash]\n", ""), ".command: required"),
    ("no-image", lambda s: s.replace("    image: img\n", ""), ".image: required"),
    ("env-not-string", lambda s: s.replace('X: "1"', "X: 1"), "environment.X: must be a str"),
    ("env-too-big", lambda s: s.replace('X: "1"', f'X: "{BIG}"'), "over the 131072 byte"),
    ("arg-too-big", lambda s: s.replace("echo {{workflow_id}}", BIG), "argument 1 is"),
    ("file-too-big", lambda s: s.replace("contents: hello", "contents: " + "y" * (1 << 20) + "z"),
     "over the 1048576 byte limit"),
    ("file-under-osmo", lambda s: s.replace("/w/f.txt", "/osmo/f.txt"), "reserves"),
    ("bad-base64", lambda s: s.replace("contents: hello", "contents: '!!', base64: true"),
     "not valid base64"),
    ("spaced-token", lambda s: s.replace("{{workflow_id}}", "{{ workflow_id }}"),
     "leftover Jinja syntax '{{' ('{{ workflow_id }}': OSMO tokens take no spaces)"),
    ("jinja-comment", lambda s: s.replace("echo", "echo ${#arr[@]}"), "leftover Jinja syntax '{#'"),
    ("host-unknown", lambda s: s.replace("{{workflow_id}}", "{{host:b}}"), "{{host:b}} names no"),
    ("input-unknown", lambda s: s.replace("{{workflow_id}}", "{{input:0}}"), "names no input"),
    ("tasks-and-groups", lambda s: s + "  groups: []\n", "exactly one of tasks: or groups:"),
    ("unknown-profile", lambda s: s.replace("    image: img", "    image: img\n    resource: big"),
     "no resource profile 'big'"),
    ("not-yaml", lambda s: s.replace("name: a", "name: [a"), "spec is not valid YAML"),
    ("exit-action-unknown", lambda s: s + '    exitActions: {RETRY: "75"}\n',
     "unknown action 'RETRY'"),
    ("exit-codes-garbled", lambda s: s + '    exitActions: {RESCHEDULE: "75;3006"}\n',
     "'75;3006' must be exit codes"),
    ("exit-codes-backwards", lambda s: s + '    exitActions: {FAIL: "10-1"}\n',
     "range 10-1 runs backwards"),
    ("input-bad-scheme", lambda s: s + '    inputs: [{url: "http://x/y.zip"}]\n',
     "inputs[0].url: 'http://x/y.zip' must start with s3://, gs://, azure://"),
    ("input-local-dir-for-osmo", lambda s: s + '    inputs: [{url: "file:///tmp/x"}]\n',
     "must start with s3://"),
    ("input-two-sources", lambda s: s + '    inputs: [{url: "s3://b/k", task: a}]\n',
     "inputs[0]: needs exactly one of task, url, dataset"),
    ("input-unknown-task", lambda s: s + "    inputs: [{task: b}]\n", "'b' names no task"),
    ("input-unknown-field", lambda s: s + '    inputs: [{url: "s3://b/k", path: x}]\n',
     "inputs[0]: unknown field 'path'"),
    ("exit-codes-overlap", lambda s: s + '    exitActions: {COMPLETE: "0-80", RESCHEDULE: "75"}\n',
     "exit code 75 is under both COMPLETE and RESCHEDULE"),
]


def test_the_good_spec_is_valid():
    assert validate_spec(GOOD) == []
    with_exit_actions = GOOD + '    exitActions: {COMPLETE: 0, RESCHEDULE: "75,3000-3006"}\n'
    assert validate_spec(with_exit_actions) == []


@pytest.mark.parametrize(("edit", "message"), [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_each_rule_is_one_problem(edit, message):
    problems = validate_spec(edit(GOOD))
    assert len(problems) == 1, problems
    assert message in problems[0]


def test_a_url_input_and_its_token_are_valid_and_a_local_directory_only_for_local_runs():
    spec = GOOD.replace("{{workflow_id}}", "{{input:0}}") + "    inputs:\n"
    assert validate_spec(spec + '    - url: "s3://bucket/osmo-inline/abc.zip"\n') == []
    assert validate_spec(spec + '    - {url: "gs://b/k", regex: ".*zip"}\n') == []
    local = spec + '    - url: "file:///tmp/store/osmo-inline/abc.zip"\n'
    assert validate_spec(local, local=True) == []
    assert len(validate_spec(local)) == 1


def test_duplicate_task_names_ignore_case_and_dash_underscore():
    text = GOOD.replace("name: a", "name: a-b") + "  - name: A_b\n    image: i\n    command: [x]\n"
    assert validate_spec(text) == ["task name 'A_b' clashes with 'a-b'"]


def test_readme_contract_table_names_every_variable_of_the_task():
    """README's contract table is the user's reference for the task's environment: it must
    neither miss a variable the template sets nor list one it does not."""
    readme = (TEMPLATE.parents[1] / "README.md").read_text()
    table = readme[readme.index("| Variable |"):].split("\n\n", 1)[0]
    documented = {name for row in table.splitlines()[2:]
                  for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", row.split("|")[1])}
    environment = yaml.safe_load(rendered_default())["workflow"]["tasks"][0]["environment"]
    assert documented == set(environment)
