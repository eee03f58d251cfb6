"""Storage delivery run here: the storage URL is a directory, the client copies the
content-addressed object into it, the executor maps the task's input 0 to the object's
directory, and the real bootstrap verifies the object before the runtime trains."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from local_specs import REPORT_SCRIPT, run_dirs, task_spec
from test_local_end_to_end import SUBMIT, copy_repo_layout

from osmo_inline.errors import BadInput
from osmo_inline.local import run_spec

TINY = ["-t", "InvertedPendulum-v5", "-n", "4", "-m", "2", "-b", "rsl_rl"]
OVER_BUDGET = ["--payload-budget", "1000"]  # the real src/training is far bigger: storage


def test_input_0_of_a_local_url_is_the_objects_directory(project: Path,
                                                         capfd: pytest.CaptureFixture[str]):
    store = project / "store" / "osmo-inline"
    store.mkdir(parents=True)
    (store / f"{'a' * 64}.zip").write_bytes(b"zip")
    spec = task_spec(REPORT_SCRIPT, environment={"PAYLOAD_ARCHIVE": "{{input:0}}",
                                                 "SAME_DIR": "/osmo/data/input/0/x"})
    spec["workflow"]["tasks"][0]["inputs"] = [{"url": f"file://{store}/{'a' * 64}.zip"}]
    assert run_spec(spec, project_dir=project, quiet=False, workflow_id=None) == 0
    out = capfd.readouterr().out
    env = json.loads(next(line for line in out.splitlines() if line.startswith("{")))["env"]
    assert env["PAYLOAD_ARCHIVE"] == str(store)
    assert env["SAME_DIR"] == str(store / "x")  # OSMO's container path follows the token


def test_a_local_url_input_that_does_not_exist_is_refused(project: Path):
    spec = task_spec("print('must not run')", environment={"PAYLOAD_ARCHIVE": "{{input:0}}"})
    spec["workflow"]["tasks"][0]["inputs"] = [{"url": f"file://{project}/none/x.zip"}]
    with pytest.raises(BadInput, match="is not a directory on this machine"):
        run_spec(spec, project_dir=project, quiet=True, workflow_id=None)
    assert run_dirs(project) == []


@pytest.mark.slow
def test_the_storage_spec_runs_here_verifies_trains_and_refuses_a_tampered_object(
    tmp_path: Path,
):
    repo = copy_repo_layout(tmp_path / "repo")
    store = tmp_path / "store"

    def local(*args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(SUBMIT), "--local", *TINY, *OVER_BUDGET, *args], cwd=repo,
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, **env})

    first = local("--storage-url", str(store))
    assert first.returncode == 0, first.stdout + first.stderr
    zip_bytes = (repo / ".tmp" / "osmo-training.zip").read_bytes()
    sha256 = hashlib.sha256(zip_bytes).hexdigest()
    stored = store / "osmo-inline" / f"{sha256}.zip"
    assert stored.read_bytes() == zip_bytes
    assert "delivery: storage (" in first.stderr and f"copied the payload to {stored}" \
        in first.stderr
    assert "payload sha256 ok" in first.stdout and "it 2/2" in first.stdout
    run_record = json.loads((run_dirs(repo)[-1] / "local-run.json").read_text())
    assert run_record["environment"]["PAYLOAD_ARCHIVE"] == str(store / "osmo-inline")
    assert not (run_dirs(repo)[-1] / "files" / "workspace" / "osmo_inline" /
                "payload.zip").exists()  # no inline copy: the object is the payload

    # Unchanged code: nothing copied (the URL from the environment this time).
    again = local("--sleep-after-unpack", "0", OSMO_INLINE_STORAGE_URL=f"file://{store}")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{stored} is already there: nothing copied" in again.stderr

    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    tampered = local("--sleep-after-unpack", "0", "--storage-url", f"file://{store}")
    assert tampered.returncode == 8, tampered.stdout + tampered.stderr  # payload refused
    assert "sha256 mismatch" in tampered.stdout + tampered.stderr
    # The runs of one second sort by their random suffix: the newest is the last written.
    newest = max(run_dirs(repo), key=lambda run: (run / "local-run.json").stat().st_mtime_ns)
    assert "sha256 mismatch" in (newest / "task.log").read_text()
    assert not (newest / "payload" / "src").exists()  # nothing extracted
