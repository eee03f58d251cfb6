"""Fixtures for the local executor tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    return directory


@pytest.fixture
def executor_process(project: Path) -> Iterator[Callable[[dict], subprocess.Popen]]:
    """Start `run_spec` in its own Python process (as the CLI would), so that the test can
    send it real signals. Output goes to pipes."""
    started: list[subprocess.Popen] = []

    def start(spec: dict) -> subprocess.Popen:
        spec_file = project / "spec.json"
        spec_file.write_text(json.dumps(spec))
        code = (
            "import json, sys; from pathlib import Path; "
            "from osmo_inline.local import run_spec; "
            f"spec = json.loads(Path({str(spec_file)!r}).read_text()); "
            f"sys.exit(run_spec(spec, project_dir=Path({str(project)!r}), quiet=False, "
            "workflow_id=None))"
        )
        process = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()
