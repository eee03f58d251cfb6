"""A group (`--nodes N`) on this machine: its tasks run at once as real processes on
loopback, end together, share signals, and the group's exit code is ours (OSMO's group rules,
docs/osmo.md "Groups"). The last tests go through the real client and bootstrap."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from local_specs import RENDEZVOUS_SCRIPT, group_spec, run_dirs
from test_local_executor import TREE_SCRIPT, _gone, _wait_for

from osmo_inline import local_process
from osmo_inline.errors import BadInput
from osmo_inline.local import run_spec

SUBMIT = Path(sys.executable).with_name("submit-training")
NODES = ["isaac-training-node-0", "isaac-training-node-1"]


def reports(out: str) -> dict[str, dict]:
    """Task name -> the JSON line it printed (each line carries its task's prefix)."""
    found = {}
    for line in out.splitlines():
        name, _, rest = line.partition("] ")
        if rest.startswith("{"):
            found[name.lstrip("[")] = json.loads(rest)
    return found


def test_the_tasks_of_a_group_run_at_once_and_meet_on_loopback(
    project: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    spec = group_spec([RENDEZVOUS_SCRIPT, RENDEZVOUS_SCRIPT])
    assert run_spec(spec, project_dir=project, quiet=False, workflow_id=None) == 0
    captured = capfd.readouterr()
    seen = reports(captured.out)
    assert set(seen) == set(NODES)  # every line is prefixed with the name of its task
    lead, worker = seen[NODES[0]], seen[NODES[1]]
    assert lead["peer_said"] == "node 1"  # the worker reached the lead while it listened
    assert (lead["NODE_RANK"], worker["NODE_RANK"]) == ("0", "1")
    assert lead["MASTER_ADDR"] == worker["MASTER_ADDR"] == "127.0.0.1"
    # The executor's own free port, not the template's fixed one: runs side by side differ.
    assert lead["MASTER_PORT"] == worker["MASTER_PORT"] != "29500"
    assert lead["WORKFLOW_ID"] == worker["WORKFLOW_ID"]  # one workflow, as on OSMO
    (run,) = run_dirs(project)
    # Each task is its own pod on a cluster: its own payload directory and log here.
    assert {lead["PAYLOAD_ROOT"], worker["PAYLOAD_ROOT"]} == {
        str(run / name / "payload") for name in NODES}
    for name in NODES:
        assert '"NODE_RANK"' in (run / name / "task.log").read_text()
    assert f"group isaac-training: 2 tasks side by side on 127.0.0.1, rendezvous port " \
           f"{lead['MASTER_PORT']}, lead {NODES[0]}" in captured.err
    assert f"{NODES[1]}: exited 0, log {run / NODES[1] / 'task.log'}" in captured.err


# Node 0 writes half a line and waits until node 1 has written a whole line of its own.
HALF_LINE = """
    import os, sys, time
    sys.stdout.write("half of a line, "); sys.stdout.flush()
    open(os.path.join(os.environ["SYNC_DIR"], "half"), "w").close()
    while not os.path.exists(os.path.join(os.environ["SYNC_DIR"], "whole")):
        time.sleep(0.02)
    print("and the rest")
"""
WHOLE_LINE = """
    import os, time
    while not os.path.exists(os.path.join(os.environ["SYNC_DIR"], "half")):
        time.sleep(0.02)
    print("a line of node 1", flush=True)
    time.sleep(0.5)  # our reader takes it before node 0 goes on
    open(os.path.join(os.environ["SYNC_DIR"], "whole"), "w").close()
"""


def test_the_nodes_lines_stay_whole_and_named(project: Path, tmp_path: Path, capfd) -> None:
    spec = group_spec([HALF_LINE, WHOLE_LINE], [{"SYNC_DIR": str(tmp_path)}] * 2)
    assert run_spec(spec, project_dir=project, quiet=False, workflow_id=None) == 0
    lines = capfd.readouterr().out.splitlines()
    assert lines == [f"[{NODES[1]}] a line of node 1",
                     f"[{NODES[0]}] half of a line, and the rest"]


# Node 1 fails once node 0 is up; node 0 would run for five minutes but exits 75 on SIGTERM,
# as the runtime does after saving.
FAILING_WORKER = """
    import os, sys, time
    while not os.path.exists(os.environ.get("PID_FILE", "/")):
        time.sleep(0.05)
    sys.exit(3)
"""
LONG_LEAD = """
    import os, signal, sys, time
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(75))
    open(os.environ["PID_FILE"], "w").write(str(os.getpid()))
    time.sleep(300)
"""


def test_a_failed_node_ends_the_others_and_its_exit_code_is_the_groups(
    project: Path, tmp_path: Path
) -> None:
    pid_file = tmp_path / "lead.pid"
    spec = group_spec([LONG_LEAD, FAILING_WORKER], [{"PID_FILE": str(pid_file)}] * 2)
    assert run_spec(spec, project_dir=project, quiet=True, workflow_id=None) == 3
    assert _gone(int(pid_file.read_text()), timeout_s=1)  # ended, not left running


# The lead ends well once a file exists (another node's pid file, or the failed node's mark).
LEAD_AFTER = """
    import os, time
    while not os.path.exists(os.environ["WAIT_FOR"]):
        time.sleep(0.05)
    time.sleep(0.2)
"""


def test_with_ignore_nonlead_status_a_failed_node_does_not_end_the_group(
    project: Path, tmp_path: Path
) -> None:
    mark = tmp_path / "worker-failing"
    fails = "import os, sys; open(os.environ['MARK'], 'w').close(); sys.exit(3)"
    spec = group_spec([LEAD_AFTER, fails], [{"WAIT_FOR": str(mark)}, {"MARK": str(mark)}],
                      ignore_nonlead_status=True)
    # The worker fails first; the lead ends well after it, and decides.
    assert run_spec(spec, project_dir=project, quiet=True, workflow_id=None) == 0


def test_the_end_of_the_lead_is_the_end_of_the_group(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_process, "SETTLE_SECONDS", 0.5)  # the others' moment to end
    pid_file = tmp_path / "worker.pid"
    spec = group_spec([LEAD_AFTER, LONG_LEAD],
                      [{"WAIT_FOR": str(pid_file)}, {"PID_FILE": str(pid_file)}])
    assert run_spec(spec, project_dir=project, quiet=True, workflow_id=None) == 0
    assert _gone(int(pid_file.read_text()), timeout_s=1)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_signal_reaches_every_node(project: Path, executor_process, sig: int) -> None:
    pid_files = [project / "pids-0", project / "pids-1"]
    process = executor_process(group_spec(
        [TREE_SCRIPT, TREE_SCRIPT], [{"PIDS_FILE": str(path)} for path in pid_files]))
    pids = [int(pid) for path in pid_files for pid in _wait_for(path).split()]

    process.send_signal(sig)
    _, err = process.communicate(timeout=30)

    # SIGTERM: each node's runtime saves and exits 75; Ctrl-C: Python's 128 + 2.
    assert process.returncode == (75 if sig == signal.SIGTERM else 128 + signal.SIGINT), err
    assert all(_gone(pid) for pid in pids)  # both tasks and their children


def test_a_host_outside_the_group_is_refused_before_anything_runs(project: Path) -> None:
    spec = group_spec(["print('must not run')", "print('must not run')"],
                      [{}, {"MASTER_ADDR": "{{host:evaluator}}"}])
    with pytest.raises(BadInput, match=r"\{\{host:evaluator\}\}"):
        run_spec(spec, project_dir=project, quiet=True, workflow_id=None)
    assert run_dirs(project) == []


def test_a_task_name_that_is_not_a_directory_name_is_refused(project: Path) -> None:
    spec = group_spec(["print('must not run')", "print('must not run')"])
    spec["workflow"]["groups"][0]["tasks"][1]["name"] = "../outside"
    with pytest.raises(BadInput, match="task names that are unique"):
        run_spec(spec, project_dir=project, quiet=True, workflow_id=None)
    assert run_dirs(project) == [] and not (project.parent / "outside").exists()


# --- through the real client and bootstrap: a payload whose training.launch reports what
# --- the task received and meets the other node (the runtime's own ranks are not needed).


@pytest.fixture
def rendezvous_project(tmp_path: Path) -> Path:
    repo = Path(__file__).resolve().parents[2]
    root = tmp_path / "repo"
    (root / "templates").mkdir(parents=True)
    (root / "templates" / "isaaclab-inline.yaml").write_bytes(
        (repo / "templates" / "isaaclab-inline.yaml").read_bytes())
    source = root / "src" / "training"
    source.mkdir(parents=True)
    (source / "__init__.py").write_text('"""Reports what a node receives."""\n')
    (source / "launch.py").write_text(textwrap.dedent(RENDEZVOUS_SCRIPT))
    return root


def submit_local(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NUM_ENVS", "TASK")}
    return subprocess.run([str(SUBMIT), "--local", "-t", "InvertedPendulum-v5", *args],
                          cwd=root, capture_output=True, text=True, timeout=120, env=env)


def test_local_nodes_2_starts_two_bootstrapped_nodes_that_meet(rendezvous_project: Path):
    result = submit_local(rendezvous_project, "--nodes", "2", "--gpu", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    seen = reports(result.stdout)
    assert set(seen) == set(NODES)
    lead, worker = seen[NODES[0]], seen[NODES[1]]
    assert lead["peer_said"] == "node 1"
    assert [(s["NNODES"], s["NODE_RANK"], s["NPROC_PER_NODE"]) for s in (lead, worker)] == [
        ("2", "0", "1"), ("2", "1", "1")]
    assert lead["MASTER_ADDR"] == worker["MASTER_ADDR"] == "127.0.0.1"
    assert lead["MASTER_PORT"] == worker["MASTER_PORT"] != "29500"
    # The dry-run view of the same group names every node and its rank.
    shown = subprocess.run([str(SUBMIT), "-t", "InvertedPendulum-v5", "--nodes", "2",
                            "--dry-run"], cwd=rendezvous_project, capture_output=True,
                           text=True, timeout=60)
    assert f"  {NODES[1]}: node rank 1, 1 ranks, rendezvous at " \
           f"{{{{host:{NODES[0]}}}}}:29500" in shown.stderr


def test_local_gpu_2_hands_two_ranks_to_a_single_task(rendezvous_project: Path):
    (rendezvous_project / "src/training/launch.py").write_text(
        "import json, os\nprint(json.dumps({k: os.environ[k] for k in "
        "('NPROC_PER_NODE', 'NNODES', 'NODE_RANK', 'MASTER_ADDR', 'MASTER_PORT')}))\n")
    result = submit_local(rendezvous_project, "--gpu", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("{"))
    received = json.loads(line)
    assert (received["NPROC_PER_NODE"], received["NNODES"], received["NODE_RANK"],
            received["MASTER_ADDR"]) == ("2", "1", "0", "")
    assert received["MASTER_PORT"] not in ("", "29500")

