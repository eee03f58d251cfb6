"""Fixtures for the fault-injection tests: a seeded random source (so a failure reproduces)
and a way to start `python -m training.launch` as a retry of one workflow would run it."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from runtime.launcher_runs import launcher_command, launcher_env
from support.streamed import StreamedProcess

TASK = "HalfCheetah-v5"
NUM_ENVS = 4
SEED_VARIABLE = "RESILIENCE_SEED"


@pytest.fixture
def rng() -> random.Random:
    """Random fault points; set RESILIENCE_SEED to replay a failed run's choices."""
    seed = int(os.environ.get(SEED_VARIABLE) or random.SystemRandom().randrange(1 << 32))
    print(f"{SEED_VARIABLE}={seed}")  # pytest shows it with the failure
    return random.Random(seed)


@pytest.fixture
def workflow_id() -> str:
    return f"wf-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def experiment_name(workflow_id: str) -> str:
    return f"resilience-{workflow_id}"


StartAttempt = Callable[..., StreamedProcess]


@pytest.fixture
def start_attempt(tmp_path: Path, workflow_id: str,
                  experiment_name: str) -> Iterator[StartAttempt]:
    """start_attempt(tracking_uri, max_iterations, save_interval) runs one attempt of the
    test's workflow: the same WORKFLOW_ID and experiment each time, but a fresh
    TRAINING_OUTPUT_DIR, as a rescheduled pod starts with an empty disk, so whatever the
    attempt resumes from comes from the tracking store. Other settings are the runtime's
    defaults (launcher_env drops the contract's variables from the developer's shell)."""
    started: list[StreamedProcess] = []

    def start(tracking_uri: str, max_iterations: int, save_interval: int) -> StreamedProcess:
        attempt_dir = tmp_path / f"attempt-{len(started) + 1}"
        attempt_dir.mkdir()
        env = launcher_env(tracking_uri, attempt_dir / "output", TASK=TASK,
                           NUM_ENVS=str(NUM_ENVS), MAX_ITERATIONS=str(max_iterations),
                           SAVE_INTERVAL=str(save_interval), WORKFLOW_ID=workflow_id,
                           EXPERIMENT_NAME=experiment_name, PYTHONUNBUFFERED="1")
        process = StreamedProcess(launcher_command(), env=env, cwd=attempt_dir)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop_if_running()
