"""`--nodes N`: one OSMO group of N tasks from the one template, checked offline by OSMO's
group rules (docs/osmo.md "Groups"), accepted by the fake osmo that applies them too."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from osmo_inline.validate import validate_spec

REPO = Path(__file__).resolve().parents[2]
LEAD = "isaac-training-node-0"


def group(name: str, lead: str, worker: str) -> str:
    """One group of two tasks in the shape --nodes 2 renders, as YAML under `groups:`."""
    return f"""\
  - name: {name}
    barrier: true
    ignoreNonleadStatus: false
    tasks:
    - name: {lead}
      lead: true
      image: img
      command: [bash]
      environment: {{MASTER_ADDR: "{{{{host:{lead}}}}}"}}
    - name: {worker}
      image: img
      command: [bash]
      environment: {{MASTER_ADDR: "{{{{host:{lead}}}}}"}}
"""


HEAD = """\
version: 2
workflow:
  name: train
  resources:
    default: {cpu: 8, gpu: 1, memory: 48Gi, storage: 80Gi}
  groups:
"""
GROUP_SPEC = HEAD + group("train", "a", "b")


def test_three_nodes_of_four_gpus_are_one_group_with_one_lead(project, submit):
    result = submit("-t", "InvertedPendulum-v5", "--nodes", "3", "--gpu", "4", "--dry-run")
    assert result.code == 0, result.stderr
    assert validate_spec(result.stdout) == []
    workflow = yaml.safe_load(result.stdout)["workflow"]
    assert "tasks" not in workflow
    (group,) = workflow["groups"]
    assert (group["name"], group["barrier"], group["ignoreNonleadStatus"]) == (
        "isaac-training", True, False)
    tasks = group["tasks"]
    assert [t["name"] for t in tasks] == [LEAD, "isaac-training-node-1", "isaac-training-node-2"]
    assert [t.get("lead", False) for t in tasks] == [True, False, False]
    for rank, task in enumerate(tasks):
        env = task["environment"]
        assert (env["NPROC_PER_NODE"], env["NNODES"], env["NODE_RANK"]) == ("4", "3", str(rank))
        assert (env["MASTER_ADDR"], env["MASTER_PORT"]) == (f"{{{{host:{LEAD}}}}}", "29500")
        assert task.get("resource", "default") == "default"
        # the same payload and bootstrap on every node
        assert task["files"] == tasks[0]["files"] and task["args"] == tasks[0]["args"]
    assert workflow["resources"]["default"]["gpu"] == 4  # per node
    # --dry-run shows the whole group: every task, its node rank, the total
    assert f"group isaac-training: 3 tasks started together, lead {LEAD}" in result.stderr
    assert (f"  isaac-training-node-2: node rank 2, 4 ranks, rendezvous at "
            f"{{{{host:{LEAD}}}}}:29500") in result.stderr
    assert "  total: gpu 12, cpu 24, memory 144Gi, storage 240Gi" in result.stderr


def test_the_group_is_accepted_by_osmo_s_rules(project, submit, fake_osmo):
    result = submit("-t", "InvertedPendulum-v5", "--nodes", "3", "--gpu", "4")
    assert result.code == 0, result.stderr
    (call,) = fake_osmo.calls()
    assert call["argv"][:2] == ["workflow", "submit"]
    (group,) = yaml.safe_load(call["spec"])["workflow"]["groups"]
    assert len(group["tasks"]) == 3


def test_one_node_stays_one_task(project, submit):
    result = submit("-t", "InvertedPendulum-v5", "--gpu", "2", "--dry-run", "-q")
    workflow = yaml.safe_load(result.stdout)["workflow"]
    (task,) = workflow["tasks"]
    assert "groups" not in workflow and "lead" not in task
    env = task["environment"]
    assert (env["NPROC_PER_NODE"], env["NNODES"], env["NODE_RANK"], env["MASTER_ADDR"]) == (
        "2", "1", "0", "")
    assert "group " not in result.stderr


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.replace("    - name: b\n", "    - name: b\n      lead: true\n"),
     "workflow.groups[0] (train): 2 tasks have lead: true (a, b), but a group of 2 tasks "
     "needs exactly one"),
    (lambda s: s.replace("      lead: true\n", ""),
     "workflow.groups[0] (train): 0 tasks have lead: true"),
    (lambda s: "{{host:c}}".join(s.rsplit("{{host:a}}", 1)),  # the worker's
     "workflow.groups[0].tasks[1]: {{host:c}} names no task of this workflow"),
    (lambda s: s.replace("name: b", "name: A"), "task name 'A' clashes with 'a'"),
    (lambda s: s.replace("name: train", "name: a"), "task name 'a' clashes with 'a'"),
    (lambda s: s.replace("lead: true", "lead: 'yes'"), ".tasks[0].lead: must be true or false"),
    (lambda s: s.replace("barrier: true", "barrier: 1"), ".barrier: must be true or false"),
], ids=["two-leads", "no-lead", "host-missing", "duplicate-names", "group-name-clash",
        "lead-not-bool", "barrier-not-bool"])
def test_validation_refuses_a_broken_group_in_one_line(edit, message):
    assert validate_spec(GROUP_SPEC) == []
    problems = validate_spec(edit(GROUP_SPEC))
    assert len(problems) == 1 and message in problems[0], problems


def test_a_host_of_another_group_does_not_resolve():
    two = HEAD + group("train", "a", "b") + group("eval", "e1", "e2")
    assert validate_spec(two) == []
    crossed = two.replace('MASTER_ADDR: "{{host:e1}}"', 'MASTER_ADDR: "{{host:a}}"')
    problems = validate_spec(crossed)
    assert len(problems) == 2  # both tasks of the second group
    assert "workflow.groups[1].tasks[0]: {{host:a}} names a task outside its group" \
        in problems[0]


def test_a_group_of_one_is_its_own_lead():
    one = GROUP_SPEC.split("    - name: b\n")[0].replace("      lead: true\n", "")
    assert validate_spec(one) == []


@pytest.mark.parametrize(("edit", "answer"), [
    (lambda s: s.replace("    - name: b\n", "    - name: b\n      lead: true\n"),
     'Group "train" has 2 leader(s) but must have exactly one.'),
    (lambda s: "{{host:c}}".join(s.rsplit("{{host:a}}", 1)), "Task b: no host c in group train"),
    (lambda s: s.replace("name: b", "name: A"), 'Multiple tasks/groups have the same name: "a"'),
], ids=["two-leads", "host-missing", "duplicate-names"])
def test_the_fake_osmo_rejects_what_validation_refuses(tmp_path, fake_osmo, edit, answer):
    """The stand-in holds OSMO's group rules on its own: the client's checks agree with it."""
    assert validate_spec(GROUP_SPEC) == []
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GROUP_SPEC)
    bad.write_text(edit(GROUP_SPEC))
    osmo = shutil.which("osmo")
    accepted = subprocess.run([osmo, "workflow", "validate", str(good)], capture_output=True,
                              text=True, timeout=60)
    assert accepted.returncode == 0, accepted.stdout
    refused = subprocess.run([osmo, "workflow", "validate", str(bad)], capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 1 and answer in refused.stdout
    assert validate_spec(edit(GROUP_SPEC)) != []


@pytest.fixture
def agents(project):
    shutil.copytree(REPO / "src" / "training" / "agents", project / "src/training/agents")
    return project


def test_a_sweep_of_two_node_runs_is_one_group_per_combination(agents, submit, fake_osmo):
    result = submit("-t", "InvertedPendulum-v5", "--nodes", "2", "--sweep", "seed=1,2,3")
    assert result.code == 0, result.stderr
    (call,) = fake_osmo.calls()  # accepted by OSMO's rules
    workflow = yaml.safe_load(call["spec"])["workflow"]
    assert validate_spec(call["spec"]) == []
    assert [g["name"] for g in workflow["groups"]] == [f"isaac-training-{i}" for i in range(3)]
    for index, group in enumerate(workflow["groups"]):
        lead = f"isaac-training-{index}-node-0"
        assert [t["name"] for t in group["tasks"]] == [lead, f"isaac-training-{index}-node-1"]
        envs = [t["environment"] for t in group["tasks"]]
        assert {e["MASTER_ADDR"] for e in envs} == {f"{{{{host:{lead}}}}}"}  # its own lead
        assert {e["SEED"] for e in envs} == {str(index + 1)}
        # one run identity per combination, shared by its nodes
        assert {e["WORKFLOW_ID"] for e in envs} == {f"{{{{workflow_id}}}}-t{index}"}
    assert "3 groups, in parallel" in result.stderr
    assert "  isaac-training-1 (2 nodes): seed=2" in result.stderr
    assert "total: gpu 6," in result.stderr


def test_a_sweep_of_many_nodes_needs_yes(agents, submit):
    refused = submit("-t", "InvertedPendulum-v5", "--nodes", "4", "--sweep", "seed=1,2,3,4,5",
                     "--dry-run")
    assert refused.code == 2
    assert "20 tasks (5 groups of 4 nodes), more than 16" in refused.stderr


def test_a_template_that_ignores_nodes_is_refused(project, submit):
    template = project / "templates" / "isaaclab-inline.yaml"
    single = project / "templates" / "single.yaml"
    single.write_text(template.read_text().replace("range(nodes)", "range(1)")
                      .replace("nodes > 1", "false").replace("nodes == 1", "true")
                      .replace("{{ nodes }}", "1"))
    result = submit("-w", "templates/single.yaml", "--nodes", "2", "--dry-run")
    assert result.code == 2
    assert "never uses {{ nodes }}: --nodes 2 would run on one node" in result.stderr
    assert submit("-w", "templates/single.yaml", "--dry-run", "-q").code == 0


def test_help_names_the_nodes_flag():
    out = subprocess.run([sys.executable, "-m", "osmo_inline", "--help"], capture_output=True,
                         text=True, timeout=60).stdout
    assert "--nodes N" in out and "29500" in out
