"""The local executor on hand-made specs: what the task sees, what lands on disk, exit codes,
signals. Real child processes throughout; no training here (see test_local_end_to_end)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from local_specs import REPORT_SCRIPT, run_dirs, task_spec

from osmo_inline.errors import BadInput
from osmo_inline.local import run_spec
from osmo_inline.local_process import run_task


def report_of(capfd: pytest.CaptureFixture[str]) -> dict:
    """The JSON line REPORT_SCRIPT printed."""
    out = capfd.readouterr().out
    return json.loads(next(line for line in out.splitlines() if line.startswith("{")))


def test_files_are_decoded_into_the_run_directory(project: Path) -> None:
    binary = bytes(range(256)) * 4  # not text: must arrive byte for byte
    spec = task_spec(
        "import sys; sys.exit(0)",
        payload=binary,
        extra_files=[
            {"path": "/etc/osmo-note.txt", "contents": "run {{workflow_id}} -> {{output}}\n"},
        ],
    )
    assert run_spec(spec, project_dir=project, quiet=True, workflow_id="wf-7") == 0

    (run,) = run_dirs(project)
    files = run / "files"
    assert (files / "workspace/osmo_inline/payload.zip").read_bytes() == binary
    assert (files / "workspace/osmo_inline/bootstrap.py").read_text() == "import sys; sys.exit(0)"
    # Plain-text files get OSMO's tokens substituted, as on the cluster.
    assert (files / "etc/osmo-note.txt").read_text() == f"run wf-7 -> {run / 'output'}\n"


def test_task_environment_is_the_rendered_one_with_paths_and_tokens_remapped(
    project: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INHERITED_FROM_SHELL", "kept")
    monkeypatch.setenv("TASK", "overridden by the spec")
    spec = task_spec(
        REPORT_SCRIPT,
        environment={
            "TASK": "HalfCheetah-v5",
            "NUM_ENVS": "16",
            "EMPTY": "",
            "RUN_TAG": "{{uuid}}",
            "NEIGHBOUR": "/workspace/isaac_payload2",  # not PAYLOAD_ROOT: left alone
            "LOG_DIR": "/workspace/isaac_payload/logs",
        },
    )
    assert run_spec(spec, project_dir=project, quiet=False, workflow_id=None) == 0

    (run,) = run_dirs(project)
    report = report_of(capfd)
    env = report["env"]
    assert env["TASK"] == "HalfCheetah-v5"
    assert env["NUM_ENVS"] == "16"
    assert env["EMPTY"] == ""
    assert env["INHERITED_FROM_SHELL"] == "kept"
    assert env["WORKFLOW_ID"] == run.name  # the local id names the run directory
    assert env["TRAINING_OUTPUT_DIR"] == str(run / "output")
    assert (run / "output").is_dir()
    assert env["PAYLOAD_ROOT"] == str(run / "payload")
    assert env["LOG_DIR"] == str(run / "payload" / "logs")
    assert env["NEIGHBOUR"] == "/workspace/isaac_payload2"
    assert env["PAYLOAD_ARCHIVE"] == str(run / "files/workspace/osmo_inline/payload.zip")
    assert env["PYTHON"] == sys.executable
    assert len(env["RUN_TAG"]) == 36 and "{{" not in env["RUN_TAG"]
    # The command ran the bootstrap from the run directory, through ${PYTHON}.
    assert report["argv"] == [str(run / "files/workspace/osmo_inline/bootstrap.py")]
    assert report["cwd"] == str(run)


def test_workflow_id_argument_simulates_a_retry_of_that_workflow(
    project: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    spec = task_spec(REPORT_SCRIPT)
    assert run_spec(spec, project_dir=project, quiet=False, workflow_id="isaac-inline-42") == 0
    assert report_of(capfd)["env"]["WORKFLOW_ID"] == "isaac-inline-42"
    (run,) = run_dirs(project)
    assert run.name.startswith("local-")  # a retry still gets a fresh run directory


def test_empty_tracking_uri_points_at_the_project_store(
    project: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert run_spec(task_spec(REPORT_SCRIPT), project_dir=project, quiet=False,
                    workflow_id=None) == 0
    out_err = capfd.readouterr()
    env = json.loads(next(x for x in out_err.out.splitlines() if x.startswith("{")))["env"]
    store = project.resolve() / ".osmo-inline"
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{store / 'mlflow.db'}"
    # The summary tells the user how to look at it.
    assert (
        f"mlflow ui --backend-store-uri sqlite:///{store / 'mlflow.db'} "
        f"--default-artifact-root {store / 'mlartifacts'}"
    ) in out_err.err


@pytest.mark.parametrize(
    "environment",
    [
        {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5999"},
        {
            "AZURE_SUBSCRIPTION_ID": "sub",
            "AZURE_RESOURCE_GROUP": "rg",
            "AZUREML_WORKSPACE_NAME": "ws",
        },
    ],
    ids=["tracking-uri-given", "azure-workspace-given"],
)
def test_a_configured_tracking_target_is_left_alone(
    project: Path, capfd: pytest.CaptureFixture[str], environment: dict[str, str]
) -> None:
    spec = task_spec(REPORT_SCRIPT, environment=environment)
    assert run_spec(spec, project_dir=project, quiet=False, workflow_id=None) == 0
    out_err = capfd.readouterr()
    env = json.loads(next(x for x in out_err.out.splitlines() if x.startswith("{")))["env"]
    assert env.get("MLFLOW_TRACKING_URI", "") == environment.get("MLFLOW_TRACKING_URI", "")
    assert "mlflow ui" not in out_err.err


def test_output_is_streamed_and_kept_in_the_task_log(
    project: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    script = """
        import sys
        print("to stdout")
        print("to stderr", file=sys.stderr)
    """
    assert run_spec(task_spec(script), project_dir=project, quiet=False, workflow_id=None) == 0
    captured = capfd.readouterr()
    assert "to stdout" in captured.out
    assert "to stderr" in captured.err
    assert "is not used locally" in captured.err  # the one line about the image
    (run,) = run_dirs(project)
    log = (run / "task.log").read_text()
    assert "to stdout" in log and "to stderr" in log
    assert str(run / "task.log") in captured.err


def test_quiet_keeps_the_terminal_clear_but_still_logs(
    project: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    script = 'print("iteration 1/1")'
    assert run_spec(task_spec(script), project_dir=project, quiet=True, workflow_id=None) == 0
    captured = capfd.readouterr()
    assert "iteration 1/1" not in captured.out + captured.err
    assert "is not used locally" not in captured.err
    (run,) = run_dirs(project)
    assert "iteration 1/1" in (run / "task.log").read_text()
    assert str(run) in captured.err  # where to look is still said


@pytest.mark.parametrize("code", [0, 5, 75])
def test_the_task_exit_code_is_returned(project: Path, code: int) -> None:
    spec = task_spec(f"import sys; sys.exit({code})")
    assert run_spec(spec, project_dir=project, quiet=True, workflow_id=None) == code


def test_a_task_killed_by_a_signal_returns_128_plus_the_signal(project: Path) -> None:
    spec = task_spec("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert run_spec(spec, project_dir=project, quiet=True, workflow_id=None) == 128 + 9


@pytest.mark.parametrize(
    ("token", "message"),
    [("{{input:0}}", "inputs"), ("{{host:learner}}", "hosts"), ("{{nonsense}}", "not an OSMO")],
)
def test_tokens_a_local_run_cannot_satisfy_are_refused_before_anything_is_written(
    project: Path, token: str, message: str
) -> None:
    spec = task_spec("print('must not run')", environment={"DATASET": f"{token}/train"})
    with pytest.raises(BadInput, match=message) as raised:
        run_spec(spec, project_dir=project, quiet=True, workflow_id=None)
    assert token in str(raised.value)
    assert run_dirs(project) == []


def test_several_tasks_are_refused(project: Path) -> None:
    spec = task_spec("print('must not run')")
    second = dict(spec["workflow"]["tasks"][0], name="evaluator")
    spec["workflow"]["tasks"].append(second)
    with pytest.raises(BadInput, match="isaac-training, evaluator"):
        run_spec(spec, project_dir=project, quiet=True, workflow_id=None)
    assert run_dirs(project) == []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; it only waits to be reaped


def _gone(pid: int, timeout_s: float = 10.0) -> bool:
    """True once `pid` has exited: a SIGKILL takes effect when the kernel next schedules it."""
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _wait_for(path: Path, timeout_s: float = 20.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} not written within {timeout_s} s")


# A task tree: bash -> python -> a grandchild `sleep`; writes both pids, then waits.
TREE_SCRIPT = """
    import os, signal, subprocess, sys, time
    ignore = os.environ.get("IGNORE_SIGNALS") == "1"
    if ignore:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        # Like the runtime: save, then exit 75 (retryable) on SIGTERM.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(75))
    sleeper = subprocess.Popen(["sleep", "300"])
    with open(os.environ["PIDS_FILE"] + ".tmp", "w") as f:
        f.write(f"{os.getpid()} {sleeper.pid}")
    os.rename(os.environ["PIDS_FILE"] + ".tmp", os.environ["PIDS_FILE"])
    time.sleep(300)
"""


@pytest.mark.parametrize(
    ("sig", "expected_code"),
    [(signal.SIGINT, 128 + signal.SIGINT), (signal.SIGTERM, 75)],
    ids=["ctrl-c", "sigterm"],
)
def test_a_signal_stops_the_whole_task_tree(
    project: Path, executor_process, sig: int, expected_code: int
) -> None:
    pids_file = project / "pids"
    process = executor_process(task_spec(TREE_SCRIPT, environment={"PIDS_FILE": str(pids_file)}))
    task_pid, sleeper_pid = map(int, _wait_for(pids_file).split())

    process.send_signal(sig)
    _, err = process.communicate(timeout=30)

    # Python dies of an unhandled SIGINT (reported as 128 + 2); the SIGTERM handler exits 75.
    assert process.returncode == expected_code, err.decode()
    assert _gone(task_pid)
    assert _gone(sleeper_pid)


def test_a_second_ctrl_c_kills_a_task_that_ignores_the_first(
    project: Path, executor_process
) -> None:
    pids_file = project / "pids"
    spec = task_spec(TREE_SCRIPT, environment={"PIDS_FILE": str(pids_file), "IGNORE_SIGNALS": "1"})
    process = executor_process(spec)
    task_pid, sleeper_pid = map(int, _wait_for(pids_file).split())

    process.send_signal(signal.SIGINT)
    time.sleep(1.0)
    assert _alive(task_pid), "the task ignores SIGINT: the grace period is still running"
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)

    assert process.returncode == 128 + signal.SIGKILL
    assert _gone(task_pid)
    assert _gone(sleeper_pid)


def test_leftover_processes_are_stopped_when_the_task_ends(project: Path) -> None:
    pids_file = project / "pids"
    script = f"""
        import subprocess
        sleeper = subprocess.Popen(["sleep", "300"], start_new_session=False)
        open({str(pids_file)!r}, "w").write(str(sleeper.pid))
    """
    assert run_spec(task_spec(script), project_dir=project, quiet=True, workflow_id=None) == 0
    assert _gone(int(pids_file.read_text()))


def test_the_executor_does_not_import_the_runtime() -> None:
    # The client must stay light: the runtime's heavy packages load only in the child.
    code = (
        "import sys, osmo_inline.local; "
        "print(sorted({'torch', 'mlflow', 'training', 'gymnasium'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


def test_a_task_that_ignores_the_signal_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    # run_task directly, for a short grace period; the signal comes from a timer in this
    # process, as a Ctrl-C would.
    pids_file = tmp_path / "pids"
    script = tmp_path / "tree.py"
    script.write_text(textwrap.dedent(TREE_SCRIPT))
    env = {**os.environ, "PIDS_FILE": str(pids_file), "IGNORE_SIGNALS": "1"}
    threading.Thread(
        target=lambda: (_wait_for(pids_file), os.kill(os.getpid(), signal.SIGINT)), daemon=True
    ).start()

    started = time.monotonic()
    code = run_task(
        [sys.executable, str(script)], env, log_path=tmp_path / "task.log", cwd=tmp_path,
        quiet=True, grace_seconds=1.0,
    )
    assert code == 128 + signal.SIGKILL
    assert time.monotonic() - started < 20
    task_pid, sleeper_pid = map(int, pids_file.read_text().split())
    assert _gone(task_pid) and _gone(sleeper_pid)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"path": "/workspace/../../etc/cron.d/x", "contents": "boom"}, "not a file path"),
        ({"path": "/workspace/data.bin", "base64": True, "contents": "not base64!"},
         "not valid base64"),
    ],
    ids=["path-escapes-the-run", "bad-base64"],
)
def test_a_files_entry_that_cannot_be_written_safely_is_refused(
    project: Path, entry: dict, message: str
) -> None:
    spec = task_spec("print('must not run')", extra_files=[entry])
    with pytest.raises(BadInput, match=message):
        run_spec(spec, project_dir=project, quiet=True, workflow_id=None)
    assert run_dirs(project) == []


def test_a_reader_that_goes_away_does_not_block_the_task(project: Path, executor_process) -> None:
    # `submit-training --local | head -1`: the task keeps writing after the reader closed.
    script = """
        for i in range(20000):
            print(f"line {i} " + "x" * 100)
        print("done")
    """
    process = executor_process(task_spec(script))
    assert process.stdout is not None
    process.stdout.readline()
    process.stdout.close()
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err.decode()
    (run,) = run_dirs(project)
    assert (run / "task.log").read_text().rstrip().endswith("done")


def test_an_unwritable_project_is_one_clear_error(project: Path) -> None:
    state = project / ".osmo-inline"
    state.write_text("a file where the state directory should be")
    with pytest.raises(BadInput, match="cannot write the local run directory"):
        run_spec(task_spec("pass"), project_dir=project, quiet=True, workflow_id=None)


def test_a_password_in_the_environment_is_hidden_in_local_run_json_but_reaches_the_task(
    project: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    uri = "https://user:hunter2@127.0.0.1:9/mlflow?sig=abc123&sv=2024"
    spec = task_spec(REPORT_SCRIPT, environment={"MLFLOW_TRACKING_URI": uri})
    assert run_spec(spec, project_dir=project, quiet=False, workflow_id=None) == 0
    out_err = capfd.readouterr()
    env = json.loads(next(x for x in out_err.out.splitlines() if x.startswith("{")))["env"]
    assert env["MLFLOW_TRACKING_URI"] == uri  # the task gets the real one
    (run,) = run_dirs(project)
    record = json.loads((run / "local-run.json").read_text())
    assert record["environment"]["MLFLOW_TRACKING_URI"] == (
        "https://***@127.0.0.1:9/mlflow?sig=***&sv=2024")
    assert "hunter2" not in (run / "local-run.json").read_text()
    assert "hunter2" not in out_err.err

