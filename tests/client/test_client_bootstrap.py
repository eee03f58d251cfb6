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


def test_a_root_with_dotdot_is_resolved_before_the_foreign_root_guard(tmp_path, archive):
    """The issue's repro: `-p /workspace/x/..` with `x` not there yet emptied /workspace."""
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "precious.txt").write_text("keep me")
    result = run_bootstrap(archive, Path(f"{workspace}/x/.."), SLEEP_AFTER_UNPACK="0")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"[bootstrap] error: PAYLOAD_ROOT {workspace} exists, is not empty and was not made "
        "by this bootstrap; refusing to replace it"]
    assert snapshot(workspace) == {"precious.txt": b"keep me"}
    assert sorted(p.name for p in workspace.iterdir()) == ["precious.txt"]  # no x/ either


def test_a_root_that_resolves_to_slash_is_refused(tmp_path, archive):
    result = run_bootstrap(archive, Path(f"{tmp_path}/" + "../" * 40), SLEEP_AFTER_UNPACK="0")
    assert result.returncode == 2
    assert "must be an absolute path below /" in result.stderr
    assert "(it resolves to /)" in result.stderr


def test_a_root_through_a_link_is_guarded_where_it_leads(tmp_path, archive):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "precious.txt").write_text("keep me")
    (tmp_path / "link").symlink_to(workspace)
    result = run_bootstrap(archive, tmp_path / "link", SLEEP_AFTER_UNPACK="0")
    assert result.returncode == 2
    assert "refusing to replace it" in result.stderr
    assert snapshot(workspace) == {"precious.txt": b"keep me"}


def test_a_dotdot_root_inside_a_made_root_extracts_where_it_resolves(tmp_path, archive):
    root = tmp_path / "payload-root"
    result = run_bootstrap(archive, Path(f"{root}/sub/.."), SLEEP_AFTER_UNPACK="0")
    assert result.returncode == 0, result.stderr
    assert f"PAYLOAD_ROOT {root}/sub/.. is {root}\n" in result.stdout
    assert f"extracted 4 files to {root}\n" in result.stdout
    assert snapshot(root / "src" / "training") == snapshot(tmp_path / "training")


def declare_size(path: Path, member: str, size: int) -> None:
    """Rewrite the uncompressed size a zip declares for `member` (local header and central
    directory), leaving its data alone: what a crafted archive can claim."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    for signature, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = data.find(signature)
        while start != -1:
            name_at = start + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at:name_at + len(name)] == name:
                data[start + size_at:start + size_at + 4] = size.to_bytes(4, "little")
            start = data.find(signature, start + 4)
    path.write_bytes(bytes(data))


def zeros_zip(path: Path, size: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("src/training/launch.py", "print('x')\n")
        out.writestr("src/training/zeros.bin", bytes(size))
    return path


def test_a_zip_that_declares_2_gib_is_refused_before_anything_is_written(tmp_path):
    archive = zeros_zip(tmp_path / "bomb.zip", 1024 * 1024)
    declare_size(archive, "src/training/zeros.bin", 2 * 1024 ** 3)
    with zipfile.ZipFile(archive) as check:  # the crafted directory reads as 2 GiB
        assert sum(info.file_size for info in check.infolist()) == 2 * 1024 ** 3 + 11
    before = snapshot(tmp_path)
    root = tmp_path / "payload-root"
    result = run_bootstrap(archive, root, SLEEP_AFTER_UNPACK="0")
    assert result.returncode == 8
    assert result.stderr.splitlines() == [
        f"[bootstrap] error: payload expands to {2 * 1024 ** 3 + 11} bytes, over the limit "
        f"of {256 * 1024 * 1024} (PAYLOAD_MAX_EXTRACTED_BYTES)"]
    assert not root.exists()
    assert snapshot(tmp_path) == before


def test_the_size_limit_is_set_by_the_environment_and_checks_real_bytes(tmp_path):
    archive = zeros_zip(tmp_path / "zeros.zip", 4 * 1024 * 1024)  # ~4 KiB of zip
    root = tmp_path / "payload-root"
    refused = run_bootstrap(archive, root, SLEEP_AFTER_UNPACK="0",
                            PAYLOAD_MAX_EXTRACTED_BYTES=str(1024 * 1024))
    assert refused.returncode == 8
    assert "over the limit of 1048576 (PAYLOAD_MAX_EXTRACTED_BYTES)" in refused.stderr
    assert not root.exists()
    allowed = run_bootstrap(archive, root, SLEEP_AFTER_UNPACK="0",
                            PAYLOAD_MAX_EXTRACTED_BYTES=str(8 * 1024 * 1024))
    assert allowed.returncode == 0, allowed.stderr
    assert (root / "src" / "training" / "zeros.bin").stat().st_size == 4 * 1024 * 1024


def test_a_member_that_yields_more_than_it_declares_is_refused_and_cleaned_up(tmp_path):
    archive = zeros_zip(tmp_path / "liar.zip", 4 * 1024 * 1024)
    declare_size(archive, "src/training/zeros.bin", 1000)
    root = tmp_path / "payload-root"
    result = run_bootstrap(archive, root, SLEEP_AFTER_UNPACK="0")
    assert result.returncode == 8
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["liar.zip"]  # no scratch left


def test_the_member_count_limit(tmp_path):
    archive = write_zip(tmp_path / "many.zip", [(f"src/training/m{i}.py", b"") for i in range(5)])
    root = tmp_path / "payload-root"
    result = run_bootstrap(archive, root, SLEEP_AFTER_UNPACK="0", PAYLOAD_MAX_MEMBERS="3")
    assert result.returncode == 8
    assert result.stderr.splitlines() == [
        "[bootstrap] error: payload has 5 members, over the limit of 3 (PAYLOAD_MAX_MEMBERS)"]
    assert not root.exists()


@pytest.mark.parametrize("name", ["PAYLOAD_MAX_EXTRACTED_BYTES", "PAYLOAD_MAX_MEMBERS"])
@pytest.mark.parametrize("text", ["0", "-1", "lots", "1e9"])
def test_a_bad_limit_is_a_bad_environment_value(tmp_path, archive, name, text):
    result = run_bootstrap(archive, tmp_path / "root", **{name: text})
    assert result.returncode == 2
    assert f"{name} must be a positive integer, not {text!r}" in result.stderr
    assert not (tmp_path / "root").exists()


def test_an_interpreter_that_cannot_be_started_is_reported_as_such(tmp_path, archive):
    """execve of a Python that is gone: its own code and line, not "cannot extract" (8)."""
    missing = tmp_path / "no-such-python"
    env = {"PATH": os.environ["PATH"], "PAYLOAD_ARCHIVE": str(archive),
           "PAYLOAD_SHA256": hashlib.sha256(archive.read_bytes()).hexdigest(),
           "PAYLOAD_ROOT": str(tmp_path / "payload-root")}
    # The bootstrap execs sys.executable; pointing it at a path that does not exist makes the
    # real execve fail with ENOENT, as an image whose interpreter moved would.
    start = (f"import runpy, sys; sys.executable = {str(missing)!r}; "
             f"sys.argv = [{str(BOOTSTRAP)!r}]; runpy.run_path(sys.argv[0], run_name='__main__')")
    result = subprocess.run([sys.executable, "-I", "-c", start], env=env, text=True,
                            capture_output=True, timeout=60, check=False)
    assert result.returncode == 10, result.stderr
    assert result.stderr.splitlines() == [
        f"[bootstrap] error: cannot start the launcher: {missing}: No such file or directory"]

