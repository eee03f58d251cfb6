"""The payload: deterministic bytes, excludes, secrets, links, and what reaches osmo."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import pytest
import yaml

from osmo_inline.payload import (
    REASON_BUILD,
    REASON_IGNORED,
    REASON_SECRET,
    SNIFF_MAX_SIZE,
    build_payload,
)

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


PRIVATE_KEY = (b"-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA" + b"A" * 64
               + b"\n-----END RSA PRIVATE KEY-----\n")
SERVICE_ACCOUNT = (b'{\n  "type": "service_account",\n  "project_id": "p",\n'
                   b'  "private_key_id": "abc",\n  "private_key": "-----BEGIN PRIVATE KEY-----'
                   b'\\nMIIE\\n-----END PRIVATE KEY-----\\n",\n  "client_email": "x@p.iam"\n}\n')
KUBECONFIG = (b"apiVersion: v1\nclusters:\n- cluster:\n    server: https://127.0.0.1:6443\n"
              b"  name: c\ncontexts:\n- context:\n    cluster: c\n    user: u\n  name: c\n"
              b"current-context: c\nkind: Config\nusers:\n- name: u\n  user:\n"
              b"    token: hunter2\n")
# The issue's repro: each of these went into the spec. (path, content, reason shown)
ISSUE_REPRO = {
    ".aws/credentials": (b"[default]\naws_secret_access_key = hunter2\n",
                         "secret: cloud CLI credentials directory", ".aws/"),
    ".kube/config": (KUBECONFIG, "secret: cloud CLI credentials directory", ".kube/"),
    "service-account.json": (SERVICE_ACCOUNT, "secret: credentials file", None),
    "SERVER.PEM": (PRIVATE_KEY, "secret: private key or key store", None),
    ".azure/msal_token_cache.json": (b'{"AccessToken": {"x": {"secret": "hunter2"}}}',
                                     "secret: cloud CLI credentials directory", ".azure/"),
    "prod.env": (b"DB_PASSWORD=hunter2\n", "secret: environment file", None),
    "secrets.yaml": (b"password: hunter2\n", "secret: secrets file", None),
    ".htpasswd": (b"admin:$apr1$hunter2\n", "secret: credentials file", None),
}


def write_files(tree: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(data)
    return tree


def test_the_issues_credentials_are_left_out_with_their_reason(project, submit):
    """Each file from issue 18's repro is left out and named with its reason: on stderr and
    in the dry run's json."""
    source = write_files(project / "src" / "training",
                         {rel: data for rel, (data, _, _) in ISSUE_REPRO.items()})
    result = submit("--dry-run", "--output", "json")
    assert result.code == 0, result.stderr
    answer = json.loads(result.stdout)
    listed = {item["path"]: item["reason"] for item in answer["excluded"]}
    for rel, (_, reason, directory) in ISSUE_REPRO.items():
        assert listed[directory or rel] == reason, rel
        assert f"excluded ({reason}): {directory or rel}\n" in result.stderr
    assert answer["files"] == ["src/training/__init__.py", "src/training/launch.py"]
    zip_bytes = (project / ".tmp" / "osmo-training.zip").read_bytes()
    assert b"hunter2" not in zip_bytes and b"hunter2" not in answer["spec"].encode()
    assert b"PRIVATE KEY" not in base64.b64decode(base64.b64encode(zip_bytes))
    assert source.joinpath("SERVER.PEM").exists()  # left out, never touched


@pytest.mark.parametrize(("rel", "data", "kind"), [
    ("certs/tls_cert.txt", PRIVATE_KEY, "private key (content)"),
    ("keys/deploy", b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n", "private key (content)"),
    ("gpg.asc", b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQ\n", "private key (content)"),
    ("configs/gcp.json", SERVICE_ACCOUNT, "service-account key (content)"),
    ("configs/cluster.yaml", KUBECONFIG, "kubeconfig (content)"),
    ("configs/aws.ini", b"[p]\naws_access_key_id=A\naws_secret_access_key=B\n",
     "AWS credentials (content)"),
])
def test_credentials_are_found_by_content_whatever_their_name(tmp_path, rel, data, kind):
    tree = write_files(tmp_path / "t", {"launch.py": b"print(1)\n", rel: data})
    payload = build_payload(tree)
    assert [(e.path, e.reason, e.kind) for e in payload.excluded] == [
        (rel, REASON_SECRET, kind)]
    assert [f.arcname for f in payload.files] == ["src/training/launch.py"]


@pytest.mark.parametrize("rel", [
    ".AWS/credentials", "Prod.ENV", ".env.local", "home/.config/gcloud/adc.json",
    "KUBECONFIG", "dev.kubeconfig", "azure/MSAL_TOKEN_CACHE.bin", "my_token_cache.json",
    "aws_credentials", "application_default_credentials.json", ".git-credentials",
    ".netrc", ".pypirc", ".npmrc", "k8s-secret.yml", "Secrets.JSON", "client.P12",
    "store.pfx", "tls.key", "id_ed25519", ".ssh/known_hosts", "credentials",
])
def test_credentials_are_found_by_name_case_insensitively(tmp_path, rel):
    tree = write_files(tmp_path / "t", {"launch.py": b"print(1)\n", rel: b"x\n"})
    payload = build_payload(tree)
    assert [f.arcname for f in payload.files] == ["src/training/launch.py"]
    [left_out] = payload.excluded
    assert left_out.reason == REASON_SECRET and left_out.kind
    assert rel.startswith(left_out.path.rstrip("/"))


def test_code_and_binaries_that_only_look_similar_are_packed(tmp_path):
    files = {
        "launch.py": b"print(1)\n", "secrets_check.py": b"def check(): ...\n",
        "credentials.py": b"def azure(): ...\n", "envs/__init__.py": b"",
        "env_cfg.yaml": b"num_envs: 8\n", "tokenizer.json": b"{}\n",
        "keys.md": b"docs: never paste a -----BEGIN PRIVATE KEY----- here\n",
        "notes.md": b"the private key goes into an OSMO credential\n",
        "store.py": b"import boto3\nS3 = boto3.client('s3', aws_secret_access_key=KEY)\n",
        "gcp.py": b'SA = {"type": "service_account", "private_key": read_key()}\n',
        "weights.bin": b"\0" + b"-----BEGIN RSA PRIVATE KEY-----",  # binary: not sniffed
        "big.txt": b"x" * SNIFF_MAX_SIZE + b"-----BEGIN PRIVATE KEY-----",  # too big to sniff
    }
    tree = write_files(tmp_path / "t", files)
    payload = build_payload(tree)
    assert sorted(f.arcname.removeprefix("src/training/") for f in payload.files) == sorted(
        set(files) - {"keys.md"})
    # keys.md quotes a PEM key header, which is taken for a key (and listed, so the user sees
    # it); a file that merely mentions a private key is packed.
    assert [e.path for e in payload.excluded] == ["keys.md"]
