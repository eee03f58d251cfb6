"""The ways users start the client, as real processes: wrapper, module, console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "mlflow", "training", "rsl_rl", "gymnasium", "rich")


def run(argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env={**os.environ, **env}, text=True,
                          capture_output=True, timeout=60, check=False)


def test_seed_wrapper_takes_the_seeds_arguments(project):
    result = run([str(REPO / "submit-training.sh"), "--task", "Isaac-Ant-v0",
                  "--max-iterations", "600", "--", "azure_client_id=cid",
                  "azure_workspace_name=mlw", "--dry-run"], cwd=project)
    assert result.returncode == 0, result.stderr
    env = yaml.safe_load(result.stdout)["workflow"]["tasks"][0]["environment"]
    assert (env["TASK"], env["MAX_ITERATIONS"], env["AZURE_CLIENT_ID"]) == (
        "Isaac-Ant-v0", "600", "cid")


def test_example_submit_dry_run_renders(project, tmp_path):
    # Both scripts copied into the test project (no .venv there): the wrapper then runs
    # PYTHON_BIN, and the example works from any current directory.
    for name in ("example-submit.sh", "submit-training.sh"):
        shutil.copy2(REPO / name, project / name)
    result = run([str(project / "example-submit.sh"), "--dry-run"], cwd=tmp_path,
                 PYTHON_BIN=sys.executable)
    assert result.returncode == 0, result.stderr
    env = yaml.safe_load(result.stdout)["workflow"]["tasks"][0]["environment"]
    assert env["AZURE_RESOURCE_GROUP"] == "rg-example"


def test_bad_input_through_the_module_has_no_traceback(project):
    result = run([sys.executable, "-m", "osmo_inline", "-n", "zero"], cwd=project)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "submit-training: error: -n/--num-envs must be a positive integer, not 'zero'"]


def test_dry_run_imports_nothing_heavy(project):
    code = (
        "import sys, json\n"
        "from osmo_inline.cli import main\n"
        "assert main(['--quiet', '--dry-run']) == 0\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})),"
        " file=sys.stderr)\n"
    )
    result = run([sys.executable, "-c", code], cwd=project)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stderr.strip().splitlines()[-1]) == []


def test_console_script_help(project):
    script = Path(sys.executable).with_name("submit-training")
    result = run([str(script), "--help"], cwd=project)
    assert result.returncode == 0
    assert "--checkpoint-mode" in result.stdout and "exit codes" in result.stdout


def test_local_run_executes_the_rendered_spec(project):
    # The inspection mode of the seed: the real bootstrap extracts the payload from the spec's
    # files, then exits 0 without training (no runtime needed).
    result = run([sys.executable, "-m", "osmo_inline", "--local", "--sleep-after-unpack", "0",
                  "-q"], cwd=project)
    assert result.returncode == 0, result.stderr
    run_files = [p for p in (project / ".osmo-inline").rglob("*") if p.is_file()]
    assert any("training will NOT run" in p.read_text(errors="replace") for p in run_files)
    [extracted] = [p for p in run_files if p.match("src/training/launch.py")]
    assert extracted.read_text() == (project / "src" / "training" / "launch.py").read_text()
