"""`submit-training --local` end to end: the real CLI packages a copy of the repository, the
real bootstrap verifies and extracts it, the real runtime trains with rsl-rl, and MLflow's
own client reads the project-local store afterwards."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from local_specs import run_dirs

from osmo_inline.local import run_spec

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
SUBMIT = Path(sys.executable).with_name("submit-training")
TASK = ["--task", "InvertedPendulum-v5", "--num-envs", "8", "-b", "rsl_rl"]  # rsl-rl's names
EXPERIMENT = "isaaclab-InvertedPendulum-v5"


def copy_repo_layout(destination: Path) -> Path:
    """What a user's repository holds for a local run: the code and the template."""
    shutil.copytree(REPO_ROOT / "src" / "training", destination / "src" / "training",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO_ROOT / "templates", destination / "templates")
    return destination


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One repository copy for the module: local runs accumulate in its store, as a user's
    do, so a later test resumes from an earlier one's run."""
    return copy_repo_layout(tmp_path_factory.mktemp("repo"))


Submit = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="module")
def submit(repo: Path) -> Submit:
    def run(*args: str, cwd: Path = repo) -> subprocess.CompletedProcess:
        return subprocess.run([str(SUBMIT), "--local", *args], cwd=cwd, capture_output=True,
                              text=True, timeout=300)

    return run


def store_client(repo: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{repo.resolve() / '.osmo-inline' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def runs_of(repo: Path) -> list:
    client = store_client(repo)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def metric_steps(repo: Path, run_id: str, name: str = "Train/mean_reward") -> list[int]:
    return sorted(m.step for m in store_client(repo).get_metric_history(run_id, name))


@pytest.fixture(scope="module")
def first_run(repo: Path, submit: Submit) -> tuple[subprocess.CompletedProcess, str]:
    """Train 4 iterations and register the result; (the CLI's result, the MLflow run id)."""
    result = submit(*TASK, "-m", "4", "-r", "local-model")
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = runs_of(repo)
    return result, run.info.run_id


def test_local_run_trains_tracks_and_registers(repo: Path, first_run) -> None:
    result, run_id = first_run
    client = store_client(repo)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert metric_steps(repo, run_id) == [0, 1, 2, 3]
    # The run is tagged with the local id, which names its run directory.
    (run_dir,) = run_dirs(repo)
    assert run.data.tags["workflow_id"] == run_dir.name

    final = {a.path for a in client.list_artifacts(run_id, "checkpoints/final")}
    assert "checkpoints/final/checkpoint.json" in final
    # Artifacts land in the project's artifact folder, not in ./mlruns of some directory.
    artifact_root = repo.resolve() / ".osmo-inline" / "mlartifacts"
    assert str(artifact_root) in run.info.artifact_uri
    manifests = list(artifact_root.rglob("checkpoints/final/checkpoint.json"))
    assert len(manifests) == 1 and json.loads(manifests[0].read_text())["iteration"] == 4

    (version,) = client.search_model_versions("name='local-model'")
    assert str(version.version) == "1" and version.run_id == run_id

    # The user is told where everything is: progress, how to resume, the store and its UI.
    assert "it 4/4" in result.stdout
    assert f"resume with: --checkpoint-uri runs:/{run_id}/checkpoints/final" in result.stderr
    assert "mlflow ui --backend-store-uri sqlite:///" in result.stderr
    assert "it 4/4" in (run_dir / "task.log").read_text()


def test_resume_from_the_local_store_continues_at_iteration_4(
    repo: Path, submit: Submit, first_run
) -> None:
    _, first_id = first_run
    result = submit(*TASK, "--checkpoint-mode", "resume",
                    "--checkpoint-uri", f"runs:/{first_id}/checkpoints/final", "-m", "6")
    assert result.returncode == 0, result.stdout + result.stderr
    resumed = runs_of(repo)[-1]
    assert resumed.info.run_id != first_id
    assert metric_steps(repo, resumed.info.run_id) == [4, 5]
    assert "it 6/6" in result.stdout and "it 1/" not in result.stdout


def test_sleep_after_unpack_pauses_and_trains_nothing(repo: Path, submit: Submit) -> None:
    runs_before = len(runs_of(repo))
    result = submit(*TASK, "-m", "4", "--sleep-after-unpack", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "training will NOT run" in result.stdout
    assert "it 1/" not in result.stdout
    assert len(runs_of(repo)) == runs_before
    # The payload was extracted where the run's PAYLOAD_ROOT points, for inspection.
    run_dir = run_dirs(repo)[-1]
    assert (run_dir / "payload" / "src" / "training" / "launch.py").is_file()


def test_a_tampered_payload_is_refused_by_the_bootstrap(repo: Path, submit: Submit,
                                                        capfd: pytest.CaptureFixture[str]) -> None:
    # The spec exactly as the CLI renders it, then one byte of the payload changed.
    dry = subprocess.run([str(SUBMIT), *TASK, "-m", "4", "--dry-run", "--output", "json", "-q"],
                         cwd=repo, capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    spec = yaml.safe_load(json.loads(dry.stdout)["spec"])
    (task,) = spec["workflow"]["tasks"]
    payload = next(f for f in task["files"] if f["path"].endswith("payload.zip"))
    data = bytearray(base64.b64decode(payload["contents"]))
    data[len(data) // 2] ^= 0xFF
    payload["contents"] = base64.b64encode(bytes(data)).decode()
    runs_before = len(runs_of(repo))

    code = run_spec(spec, project_dir=repo, quiet=False, workflow_id=None)

    assert code == 8  # README: payload refused
    err_out = capfd.readouterr()
    assert "sha256 mismatch" in err_out.out + err_out.err
    assert hashlib.sha256(bytes(data)).hexdigest() in err_out.out + err_out.err
    run_dir = run_dirs(repo)[-1]
    assert not (run_dir / "payload" / "src").exists()  # nothing extracted
    assert len(runs_of(repo)) == runs_before


def test_a_failing_training_run_exits_with_the_runtime_code(tmp_path: Path) -> None:
    # The user's own agent override breaks training: the payload carries it to the runtime.
    repo = copy_repo_layout(tmp_path / "repo")
    override = repo / "src" / "training" / "agents" / "InvertedPendulum-v5.yaml"
    override.write_text("algorithm:\n  num_mini_batches: 0\n")
    result = subprocess.run([str(SUBMIT), "--local", *TASK, "-m", "2"], cwd=repo,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 5, result.stdout + result.stderr  # README: training failed
    assert "training failed" in result.stderr
    (run,) = runs_of(repo)
    assert run.info.status == "FAILED"


def test_the_default_isaac_lab_task_without_isaac_lab_says_what_would_work(
    repo: Path, submit: Submit
) -> None:
    result = submit("--num-envs", "8", "-m", "2")
    assert result.returncode == 2, result.stdout + result.stderr  # README: bad input
    assert "Isaac-Velocity-Rough-Anymal-C-v0 is an Isaac Lab task" in result.stderr
    assert "HalfCheetah-v5" in result.stderr
    assert "Traceback" not in result.stderr


def test_ctrl_c_stops_a_local_training_run_and_its_mlflow_run_is_not_left_running(
    repo: Path,
) -> None:
    runs_before = len(runs_of(repo))
    process = subprocess.Popen([str(SUBMIT), "--local", *TASK, "-m", "10000"], cwd=repo,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        for line in process.stdout:  # wait until training is under way
            if line.startswith("it 2/"):
                break
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    # README: Ctrl-C stops the task the way a pod's SIGTERM does: checkpoint saved, exit 75.
    assert process.returncode == 75, out + err
    assert "stopping the task" in err
    stopped = re.search(r"stopped at iteration (\d+): (model_\1\.pt) stored; exiting 75", out)
    assert stopped, out + err
    run = runs_of(repo)[-1]
    assert len(runs_of(repo)) == runs_before + 1
    assert run.info.status in ("FAILED", "KILLED")
    # The checkpoint it names is in the store, with its sha256 beside it.
    stored = {Path(a.path).name for a in
              store_client(repo).list_artifacts(run.info.run_id, "checkpoints")}
    assert {stopped.group(2), stopped.group(2).replace(".pt", ".sha256")} <= stored, stored
    # Nothing of the task is left running: no process has the run directory as its cwd.
    run_dir = run_dirs(repo)[-1]
    deadline = time.monotonic() + 10  # a SIGKILL takes effect when the process next runs
    while _processes_in(run_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_in(run_dir) == []


def _processes_in(directory: Path) -> list[str]:
    """Live processes whose working directory is `directory` (the task's tree)."""
    found = []
    for cwd_link in Path("/proc").glob("[0-9]*/cwd"):
        try:
            if str(cwd_link.readlink()) == str(directory):
                found.append(cwd_link.parent.name)
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


def test_a_workflow_that_needs_task_inputs_is_refused_in_one_line(tmp_path: Path) -> None:
    repo = copy_repo_layout(tmp_path / "repo")
    template = repo / "templates" / "isaaclab-inline.yaml"
    text = template.read_text()
    marker = "    environment:\n"
    assert marker in text
    # A valid cluster workflow: the task reads a dataset from object storage.
    inputs = "    inputs:\n    - url: s3://example-bucket/datasets/\n"
    template.write_text(text.replace(marker, inputs + marker + '      DATASET: "{{input:0}}"\n',
                                     1))

    result = subprocess.run([str(SUBMIT), "--local", *TASK, "-m", "2"], cwd=repo,
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("submit-training: error: environment DATASET uses {{input:0}}")
    assert "Traceback" not in result.stderr
    assert not (repo / ".osmo-inline" / "runs").exists()


def test_local_evaluate_of_the_first_runs_checkpoint(repo: Path, submit: Submit,
                                                     first_run) -> None:
    """--local --evaluate: the same workflow with RUN_MODE=evaluate; the task comes from the
    checkpoint (no -t), the result is a new run in the project's store."""
    _, first_id = first_run
    source = f"runs:/{first_id}/checkpoints/final"
    result = submit("--evaluate", "-c", source, "--episodes", "2", "-n", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert f"evaluated {source} on InvertedPendulum-v5: 2 episodes, return " in output
    evaluation = runs_of(repo)[-1]
    assert evaluation.data.tags["run_mode"] == "evaluate"
    assert evaluation.data.tags["source_run_id"] == first_id
    assert evaluation.data.metrics["eval/episodes"] == 2
