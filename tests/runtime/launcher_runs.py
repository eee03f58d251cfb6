"""Helpers for the runtime tests: run `python -m training.launch` as a user would (a
subprocess, under a chosen rsl-rl version) and read what it left in MLflow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import ViewType
from support.rslrl_versions import VENV_VERSION, env_for_version
from support.streamed import StreamedProcess

TASK = "InvertedPendulum-v5"  # trains in well under a second per iteration on 2 CPU cores
# Variables of the workflow contract that must not leak in from the developer's shell.
CONTRACT_VARIABLES = (
    "TASK", "NUM_ENVS", "MAX_ITERATIONS", "TRAINING_BACKEND", "CHECKPOINT_URI",
    "CHECKPOINT_MODE", "REGISTER_CHECKPOINT", "RUN_AZURE_SMOKE_TEST", "SEED", "EXPERIMENT_NAME",
    "WORKFLOW_ID", "TRAINING_OUTPUT_DIR", "PAYLOAD_SHA256", "MLFLOW_TRACKING_URI",
    "MLFLOW_ARTIFACT_LOCATION",
    "AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME",
    "AUTO_RESUME", "SAVE_INTERVAL", "STOP_GRACE_S", "CHECKPOINT_UPLOAD_TIMEOUT_S",
    "AUTO_RESUME_LOOKUP_TIMEOUT_S", "TASK_MODULES", "ENABLE_CAMERAS", "CFG_OVERRIDES",
    "VIDEO", "VIDEO_LENGTH", "VIDEO_INTERVAL",
)


def launcher_env(tracking_uri: str | None, output_dir: Path, version: str = VENV_VERSION,
                 **extra: str) -> dict[str, str]:
    env = env_for_version(version)
    for name in CONTRACT_VARIABLES:
        env.pop(name, None)
    env.pop("OMP_NUM_THREADS", None)  # the launcher's own CPU default (one torch thread)
    env["TRAINING_OUTPUT_DIR"] = str(output_dir)
    env["SKIP_PIP_INSTALL"] = "1"  # tests never install anything
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    env.update(extra)
    return env


def launcher_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "training.launch", *args]


def run_launcher(env: dict[str, str], *args: str, cwd: Path,
                 timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(launcher_command(*args), env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def train_args(iterations: int, *extra: str, num_envs: int = 8) -> list[str]:
    return ["--task", TASK, "--num_envs", str(num_envs), "--max_iterations", str(iterations),
            *extra]


def run_id_from(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("run id: "):
            return line.removeprefix("run id: ").strip()
    raise AssertionError(f"no 'run id:' line in the launcher output:\n{output}")


def all_runs(client: MlflowClient) -> list[Any]:
    experiments = client.search_experiments(view_type=ViewType.ALL)
    if not experiments:
        return []
    return client.search_runs([e.experiment_id for e in experiments], run_view_type=ViewType.ALL)


def metric_steps(client: MlflowClient, run_id: str, name: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, name))


def artifact_names(client: MlflowClient, run_id: str, path: str) -> set[str]:
    return {Path(f.path).name for f in client.list_artifacts(run_id, path)}


def assert_clean_failure(result: subprocess.CompletedProcess[str], code: int,
                         *phrases: str) -> None:
    """The user-visible contract of a bad input: its exit code, one clear error line that
    names the problem, and no traceback."""
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for phrase in phrases:
        assert phrase in errors[0], errors[0]


def background_launcher(env: dict[str, str], *args: str, cwd: Path) -> StreamedProcess:
    """`python -m training.launch` in the background, its output read as it comes, so that a
    test can act at a chosen moment (use it as a context manager: killed on the way out)."""
    return StreamedProcess(launcher_command(*args), env=env, cwd=cwd)
