"""The bootstrap, run for real as the container runs it: a separate Python process."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from osmo_inline.payload import build_payload

BOOTSTRAP = Path(__file__).resolve().parents[2] / "src" / "osmo_inline" / "bootstrap.py"

LAUNCH = """\
import json, os, sys
with open(os.environ["MARKER"], "w") as out:
    json.dump({"argv": sys.argv[1:], "task": os.environ.get("TASK"),
               "module": __file__}, out)
"""


def run_bootstrap(archive: Path, root: Path, *, sha256: str | None = None,
                  **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "PAYLOAD_ARCHIVE": str(archive),
        "PAYLOAD_SHA256": sha256 or hashlib.sha256(archive.read_bytes()).hexdigest(),
        "PAYLOAD_ROOT": str(root),
        **extra,
    }
    # -I: no user site, no PYTHONPATH from outside: the launcher is found only via the payload
    return subprocess.run([sys.executable, "-I", str(BOOTSTRAP)], env=env, text=True,
                          capture_output=True, timeout=60, check=False)


def source_tree(root: Path) -> Path:
    files = {"__init__.py": "", "launch.py": LAUNCH, "envs/__init__.py": "",
             "agents/cfg.yaml": "seed: 1\n"}
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    path = tmp_path / "payload.zip"
    path.write_bytes(build_payload(source_tree(tmp_path / "training")).zip_bytes)
    return path


def test_round_trip_extraction_equals_the_source_tree(tmp_path, archive):
    root = tmp_path / "payload-root"
    result = run_bootstrap(archive, root, SLEEP_AFTER_UNPACK="0")
    assert result.returncode == 0, result.stderr
    assert "training will NOT run" in result.stdout
    extracted = snapshot(root / "src" / "training")
    assert extracted == snapshot(tmp_path / "training")


def test_it_execs_the_launcher_from_the_payload(tmp_path, archive):
    root, marker = tmp_path / "payload-root", tmp_path / "marker.json"
    result = run_bootstrap(archive, root, MARKER=str(marker), TASK="Isaac-Ant-v0")
    assert result.returncode == 0, result.stderr
    launched = json.loads(marker.read_text())
    assert launched["argv"] == ["--headless"]
    assert launched["task"] == "Isaac-Ant-v0"
    assert launched["module"] == str(root / "src" / "training" / "launch.py")


def test_a_new_extraction_leaves_no_stale_files(tmp_path, archive):
    root = tmp_path / "payload-root"
    assert run_bootstrap(archive, root, SLEEP_AFTER_UNPACK="0").returncode == 0
    stale = root / "src" / "training" / "old_module.py"
    stale.write_text("stale\n")
    assert run_bootstrap(archive, root, SLEEP_AFTER_UNPACK="0").returncode == 0
    assert not stale.exists()


def test_a_foreign_non_empty_root_is_not_deleted(tmp_path, archive):
    root = tmp_path / "workspace"
    (root / "precious.txt").parent.mkdir(parents=True)
    (root / "precious.txt").write_text("keep me")
    result = run_bootstrap(archive, root, SLEEP_AFTER_UNPACK="0")
    assert result.returncode == 2
    assert "refusing to replace it" in result.stderr
    assert snapshot(root) == {"precious.txt": b"keep me"}


def write_zip(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as out:
        for info, data in members:
            out.writestr(info, data)
    return path


def link_member(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def refusal_cases(tmp_path: Path) -> dict[str, tuple[Path, str | None, str]]:
    good = ("src/training/launch.py", b"print('x')\n")
    outside = tmp_path / "outside.txt"
    return {
        "wrong-sha256": (write_zip(tmp_path / "a.zip", [good]), "0" * 64, "sha256 mismatch"),
        "dotdot": (write_zip(tmp_path / "b.zip", [good, ("src/../../outside.txt", b"x")]),
                   None, "a '..' component"),
        "absolute": (write_zip(tmp_path / "c.zip", [good, (str(outside), b"x")]),
                     None, "an absolute path"),
        "symlink": (write_zip(tmp_path / "d.zip", [good, (link_member(
            "src/training/escape", str(tmp_path)), str(tmp_path).encode())]),
            None, "a symbolic link"),
        "not-a-zip": (tmp_path / "e.zip", None, "not a zip archive"),
    }


@pytest.mark.parametrize("case", ["wrong-sha256", "dotdot", "absolute", "symlink", "not-a-zip"])
def test_refusals_write_nothing(tmp_path, case):
    (tmp_path / "e.zip").write_bytes(b"not a zip at all")
    archive, sha256, message = refusal_cases(tmp_path)[case]
    before = snapshot(tmp_path)
    root = tmp_path / "payload-root"
    result = run_bootstrap(archive, root, sha256=sha256, SLEEP_AFTER_UNPACK="0")
    assert result.returncode == 8
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not root.exists()
    assert snapshot(tmp_path) == before  # nothing written anywhere, outside.txt included
    assert not (tmp_path / "outside.txt").exists()


@pytest.mark.parametrize(("env", "message"), [
    ({"PAYLOAD_SHA256": "abc"}, "not a sha256 hex digest"),
    ({"PAYLOAD_ROOT": "relative/root"}, "must be an absolute path"),
    ({"PAYLOAD_ROOT": ""}, "missing environment value(s): PAYLOAD_ROOT"),
    ({"SLEEP_AFTER_UNPACK": "-5"}, "non-negative number"),
    ({"SLEEP_AFTER_UNPACK": "later"}, "non-negative number"),
])
def test_bad_environment_values_exit_2(tmp_path, archive, env, message):
    result = run_bootstrap(archive, tmp_path / "root", **env)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "root").exists()


def test_missing_archive_exits_8(tmp_path):
    result = run_bootstrap(tmp_path / "payload.zip", tmp_path / "root", sha256="0" * 64)
    assert result.returncode == 8
    assert "cannot read payload" in result.stderr


def test_bootstrap_is_stdlib_only_and_python_3_10():
    text = BOOTSTRAP.read_text()
    ast.parse(text, feature_version=(3, 10))
    imports = {line.split()[1].split(".")[0] for line in text.splitlines()
               if line.startswith(("import ", "from "))}
    assert imports <= set(sys.stdlib_module_names) | {"__future__"}
