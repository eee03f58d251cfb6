"""Client test fixtures: a small project tree, a fake `osmo` on PATH, and `submit()`."""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from osmo_inline.cli import OVERRIDABLE, main

REPO = Path(__file__).resolve().parents[2]
FAKE_OSMO = Path(__file__).with_name("fake_osmo.py")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


class FakeOsmo:
    def __init__(self, record: Path, bucket: Path) -> None:
        self.record = record
        self.bucket = bucket  # `s3://b/k` is bucket/s3/b/k

    def object(self, url: str) -> Path:
        scheme, _, rest = url.partition("://")
        return self.bucket / scheme / rest

    def calls(self) -> list[dict]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]


@pytest.fixture
def fake_osmo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeOsmo:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "osmo"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_OSMO}" "$@"\n')
    script.chmod(0o755)
    record = tmp_path / "osmo-calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_OSMO_RECORD", str(record))
    bucket = tmp_path / "bucket"
    monkeypatch.setenv("FAKE_OSMO_BUCKET", str(bucket))
    return FakeOsmo(record, bucket)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository shaped like the seed's: the real template and a tiny src/training."""
    root = tmp_path / "project"
    (root / "templates").mkdir(parents=True)
    shutil.copy(REPO / "templates" / "isaaclab-inline.yaml", root / "templates")
    source = root / "src" / "training"
    source.mkdir(parents=True)
    (source / "__init__.py").write_text('"""Training code."""\n')
    (source / "launch.py").write_text("print('launch')\n")
    monkeypatch.chdir(root)
    for _, variable, _ in OVERRIDABLE:  # the developer's own shell must not leak in
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("OSMO_INLINE_STORAGE_URL", raising=False)
    return root


@pytest.fixture
def submit(capsys: pytest.CaptureFixture[str]):
    """Run the CLI in this process (osmo itself still runs as a real subprocess)."""

    def run(*argv: str) -> Result:
        code = main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run
