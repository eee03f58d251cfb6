"""The payload: deterministic bytes, excludes, secrets, links, and what reaches osmo."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import zipfile
from pathlib import Path

import yaml

from osmo_inline.payload import REASON_BUILD, REASON_IGNORED, REASON_SECRET, build_payload

FILES = {
    "__init__.py": b'"""pkg"""\n',
    "launch.py": b"print('hi')\n",
    "agents/rsl_rl_cfg.yaml": b"seed: 1\n",
    "envs/__init__.py": b"",
    "envs/anymal.py": b"X = 1\n" * 50,
    "run.sh": b"#!/bin/sh\necho hi\n",
}


def make_tree(root: Path, order: list[str], mtime: int, umask: int) -> Path:
    old = os.umask(umask)
    try:
        for rel in order:
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(FILES[rel])
            os.utime(path, (mtime, mtime))
        (root / "run.sh").chmod(0o777 & ~umask)
    finally:
        os.umask(old)
    return root


def test_same_tree_gives_the_same_bytes_whatever_mtime_order_umask(tmp_path):
    names = sorted(FILES)
    first = make_tree(tmp_path / "a", names, mtime=1_000_000, umask=0o022)
    second = make_tree(tmp_path / "b", names[::-1], mtime=1_700_000_000, umask=0o077)
    one, two = build_payload(first), build_payload(second)
    assert one.zip_bytes == two.zip_bytes
    assert one.sha256 == two.sha256
    members = zipfile.ZipFile(io.BytesIO(one.zip_bytes)).namelist()
    assert members == sorted(f"src/training/{name}" for name in FILES)
    info = zipfile.ZipFile(io.BytesIO(one.zip_bytes)).getinfo("src/training/run.sh")
    assert (info.external_attr >> 16) & 0o777 == 0o755  # executable stays executable


def test_a_changed_file_changes_the_sha256(tmp_path):
    tree = make_tree(tmp_path / "a", sorted(FILES), 1, 0o022)
    before = build_payload(tree).sha256
    (tree / "launch.py").write_text("print('changed')\n")
    assert build_payload(tree).sha256 != before


def test_caches_logs_ignored_files_and_secrets_are_left_out(tmp_path):
    tree = make_tree(tmp_path / "t", sorted(FILES), 1, 0o022)
    left_out = {
        "__pycache__/launch.cpython-311.pyc": REASON_BUILD,
        "envs/__pycache__/anymal.cpython-310.pyc": REASON_BUILD,
        "stale.pyc": REASON_BUILD,
        ".git/config": REASON_BUILD,
        ".venv/bin/python": REASON_BUILD,
        "logs/rsl_rl/model_100.pt": REASON_BUILD,
        "outputs/2026-01-01/run.log": REASON_BUILD,
        ".pytest_cache/v/cache": REASON_BUILD,
        "training.egg-info/PKG-INFO": REASON_BUILD,
        "scratch/big.npy": REASON_IGNORED,
        "notes.tmp.md": REASON_IGNORED,
        ".env": REASON_SECRET,
        ".env.production": REASON_SECRET,
        "certs/server.pem": REASON_SECRET,
        "deploy.key": REASON_SECRET,
        "id_rsa": REASON_SECRET,
        "id_ed25519.pub": REASON_SECRET,
    }
    for rel in left_out:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(b"AZURE_CLIENT_SECRET=hunter2\n")
    (tree / ".payloadignore").write_text("# local only\nscratch/\n*.tmp.md\n")
    payload = build_payload(tree)
    names = zipfile.ZipFile(io.BytesIO(payload.zip_bytes)).namelist()
    assert sorted(names) == sorted(f"src/training/{n}" for n in [*FILES, ".payloadignore"])
    assert b"hunter2" not in payload.zip_bytes
    reasons = {item.path.rstrip("/"): item.reason for item in payload.excluded}
    for rel, reason in left_out.items():
        # a file inside an excluded directory is covered by the directory's entry
        covering = [p for p in reasons if rel == p or rel.startswith(p + "/")]
        assert covering, rel
        assert reasons[covering[0]] == reason, rel
    assert sorted(payload.secrets) == sorted(
        [".env", ".env.production", "certs/server.pem", "deploy.key", "id_ed25519.pub",
         "id_rsa"])


def test_secrets_are_listed_on_stderr_even_when_quiet(project, submit):
    (project / "src" / "training" / ".env").write_text("TOKEN=hunter2\n")
    result = submit("-q", "--dry-run")
    assert result.code == 0
    assert "secrets were NOT packaged: .env" in result.stderr
    assert "hunter2" not in result.stdout
    assert b"hunter2" not in (project / ".tmp" / "osmo-training.zip").read_bytes()


def test_a_700_kib_payload_never_reaches_argv_or_the_environment(project, submit, fake_osmo):
    # incompressible bytes: ~520 KB of zip, ~700 KiB of base64, five times the argv limit
    (project / "src" / "training" / "weights.bin").write_bytes(os.urandom(530_000))
    result = submit("--", "azure_client_id=cid", "--pool", "p")
    assert result.code == 0, result.stderr
    [call] = fake_osmo.calls()
    limit = 128 * 1024
    assert max(len(arg) for arg in call["argv"]) < limit
    assert call["longest_env"] < limit
    spec = yaml.safe_load(call["spec"])
    task = spec["workflow"]["tasks"][0]
    assert max(len(value) for value in task["environment"].values()) < limit
    assert max(len(arg) for arg in task["args"]) < limit
    [payload_file] = [f for f in task["files"] if f["path"].endswith("payload.zip")]
    assert len(payload_file["contents"]) > 690 * 1024
    zip_bytes = (project / ".tmp" / "osmo-training.zip").read_bytes()
    assert base64.b64decode(payload_file["contents"]) == zip_bytes
    assert (project / ".tmp" / "osmo-training.b64").read_text() == payload_file["contents"]


def test_the_spec_carries_the_bootstrap_and_the_payload_it_verifies(project, submit):
    spec = yaml.safe_load(submit("-q", "--dry-run").stdout)
    task = spec["workflow"]["tasks"][0]
    files = {f["path"]: base64.b64decode(f["contents"]) for f in task["files"]}
    bootstrap = Path(__file__).resolve().parents[2] / "src" / "osmo_inline" / "bootstrap.py"
    assert files["/workspace/osmo_inline/bootstrap.py"] == bootstrap.read_bytes()
    payload_zip = files["/workspace/osmo_inline/payload.zip"]
    assert hashlib.sha256(payload_zip).hexdigest() == task["environment"]["PAYLOAD_SHA256"]
    assert task["args"] == ["exec ${PYTHON} /workspace/osmo_inline/bootstrap.py"]


def test_ignore_file_patterns_match_like_gitignore(tmp_path):
    """Every kind of pattern: plain name, suffix, prefix, wildcards in the middle, `?`, `[..]`,
    anchored to the source dir, and directory-only."""
    tree = tmp_path / "t"
    ignored = ["exact.txt", "sub/exact.txt", "run.log", "sub/deep/old.log", "tmpfile",
               "model-old-3.pt", "cache1.bin", "ackpt.pt", "top.txt", "data/raw/x.npy",
               "docs/index.md"]
    kept = ["exact.txt.bak", "log", "my-tmpfile", "cache10.bin", "cckpt.pt", "sub/top.txt",
            "other/data/raw/x.npy", "data/raw/x.npz", "sub/docs", "launch.py"]
    for rel in ignored + kept:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(rel)
    (tree / ".payloadignore").write_text(
        "exact.txt\n*.log\ntmp*\n*-old-*\ncache?.bin\n[ab]ckpt.pt\n/top.txt\n"
        "data/raw/*.npy\ndocs/\n")
    payload = build_payload(tree)
    packed = {f.arcname.removeprefix("src/training/") for f in payload.files}
    assert packed == {*kept, ".payloadignore"}
    assert {e.path for e in payload.excluded} == {*ignored[:-1], "docs/"}
    assert {e.reason for e in payload.excluded} == {REASON_IGNORED}


def test_ignore_file_negation_brings_back_files_and_built_in_excludes_but_never_secrets(
    tmp_path,
):
    tree = tmp_path / "t"
    files = ["run.log", "keep.log", "data/a/b/tmp/x.bin", "build/__init__.py", "dist/x.whl",
             ".env", "deploy.key", "launch.py"]
    for rel in files:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(rel)
    # `**` at any depth; `!` re-includes, here a file of the user's own and the built-in
    # build/ (a package of that name); secrets stay out whatever the file says.
    (tree / ".payloadignore").write_text("*.log\n!keep.log\n**/tmp/\n!build/\n!.env\n!*.key\n")
    payload = build_payload(tree)
    packed = {f.arcname.removeprefix("src/training/") for f in payload.files}
    assert packed == {"keep.log", "build/__init__.py", "launch.py", ".payloadignore"}
    assert {(e.path, e.reason) for e in payload.excluded} == {
        ("run.log", REASON_IGNORED), ("data/a/b/tmp/", REASON_IGNORED),
        ("dist/", REASON_BUILD), (".env", REASON_SECRET), ("deploy.key", REASON_SECRET)}


def test_a_bad_ignore_pattern_is_one_clear_error(project, submit):
    (project / "src" / "training" / ".payloadignore").write_text("*.log\n!\n")
    result = submit("--dry-run")
    assert result.code == 2
    [line] = result.stderr.splitlines()
    assert ".payloadignore" in line and "'!'" in line
    assert not (project / ".tmp").exists()
