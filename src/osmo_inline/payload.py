"""Step 2: the source tree -> a deterministic zip (bytes, sha256, what was left out).

Pure: reads the tree, writes nothing (`artifacts.py` writes `.tmp/`). The same tree gives
byte-identical bytes whatever the mtimes, creation order or umask: members are sorted, dated
1980-01-01 and get mode 0644 (0755 when the owner may execute).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import io
import os
import re
import stat
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from osmo_inline.errors import BadInput

ARCHIVE_PREFIX = "src/training"  # members land in $PAYLOAD_ROOT/src/training
IGNORE_FILE = ".payloadignore"  # gitignore-like patterns, read from the source dir

# Caches, virtualenvs and local run output: never useful in the container, often large.
BUILD_OUTPUT = (
    "__pycache__/", "*.pyc", "*.pyo", ".git/", ".hg/", ".svn/", ".venv/", "venv/", ".tox/",
    ".nox/", ".pytest_cache/", ".mypy_cache/", ".ruff_cache/", ".ipynb_checkpoints/",
    "*.egg-info/", "build/", "dist/", "logs/", "outputs/", "mlruns/", "wandb/", ".tmp/",
    ".DS_Store",
)
# Credentials: never packaged (the spec is stored by OSMO), and always listed so users notice.
SECRETS = (
    ".env", ".env.*", "*.pem", "*.key", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*",
    "*.p12", "*.pfx", ".netrc", ".pypirc", ".git-credentials", ".npmrc", "kubeconfig",
)

REASON_BUILD = "cache/build output"
REASON_IGNORED = f"listed in {IGNORE_FILE}"
REASON_SECRET = "secret"

_FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold


@dataclass(frozen=True)
class Excluded:
    path: str  # relative to the source dir, "/" at the end for a directory
    reason: str


@dataclass(frozen=True)
class PackedFile:
    arcname: str
    size: int  # bytes on disk
    compressed: int  # bytes in the zip


@dataclass(frozen=True)
class Payload:
    zip_bytes: bytes
    files: tuple[PackedFile, ...]
    excluded: tuple[Excluded, ...]

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.zip_bytes).hexdigest()

    @cached_property
    def b64(self) -> str:
        return base64.b64encode(self.zip_bytes).decode("ascii")

    @property
    def secrets(self) -> list[str]:
        return [item.path for item in self.excluded if item.reason == REASON_SECRET]


class _Globs:
    """Gitignore-like patterns: `name/` matches directories only, a pattern with a `/` matches
    the path from the source dir, any other the file or directory name. Compiled into one
    regex per kind, since compiling dozens of small ones costs more than a dry-run's work."""

    def __init__(self, lines: tuple[str, ...]) -> None:
        kinds: dict[tuple[bool, bool], list[str]] = {}  # (dir_only, anchored) -> regexes
        for line in lines:
            dir_only = line.endswith("/")
            body = line.rstrip("/")
            kinds.setdefault((dir_only, "/" in body), []).append(
                fnmatch.translate(body.lstrip("/")))
        self._regexes = {kind: re.compile("|".join(parts)) for kind, parts in kinds.items()}

    def matches(self, rel_path: str, is_dir: bool) -> bool:
        name = rel_path.rsplit("/", 1)[-1]
        return any(
            regex.match(rel_path if anchored else name)
            for (dir_only, anchored), regex in self._regexes.items()
            if is_dir or not dir_only
        )


_BUILD_GLOBS = _Globs(BUILD_OUTPUT)
_SECRET_GLOBS = _Globs(SECRETS)


def read_ignore_file(source: Path) -> _Globs:
    path = source / IGNORE_FILE
    lines = []
    if path.is_file():
        for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("!"):
                raise BadInput(f"{path}:{number}: negated patterns ('{line}') are not supported")
            lines.append(line)
    return _Globs(tuple(lines))


def _exclusion(rel_path: str, is_dir: bool, ignored: _Globs) -> str | None:
    # Secrets first, so that one an ignore pattern also matches is still reported as a secret.
    for reason, globs in (
        (REASON_SECRET, _SECRET_GLOBS), (REASON_BUILD, _BUILD_GLOBS), (REASON_IGNORED, ignored)
    ):
        if globs.matches(rel_path, is_dir):
            return reason
    return None


def _collect(source: Path, ignored: _Globs) -> tuple[list[str], list[Excluded]]:
    """Relative paths of the files to pack (sorted) and what was left out, walking in order."""
    files: list[str] = []
    excluded: list[Excluded] = []
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        with os.scandir(source / rel_dir) as entries:
            names = sorted(entries, key=lambda entry: entry.name)
        subdirs = []
        for entry in names:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            reason = _exclusion(rel, is_dir, ignored)
            if reason is not None:
                excluded.append(Excluded(rel + "/" if is_dir else rel, reason))
            elif entry.is_symlink():
                raise BadInput(
                    f"symlink in the source tree: {source / rel} -> {os.readlink(entry.path)}; "
                    "the payload refuses links (copy the file, or list it in "
                    f"{IGNORE_FILE})"
                )
            elif is_dir:
                subdirs.append(rel)
            elif entry.is_file(follow_symlinks=False):
                files.append(rel)
            else:
                raise BadInput(f"not a regular file in the source tree: {source / rel}")
        pending.extend(reversed(subdirs))
    return sorted(files), excluded


def build_payload(source: Path) -> Payload:
    """Zip `source` under `src/training/`, leaving out caches, ignored files and secrets."""
    if not source.is_dir():
        raise BadInput(f"source directory not found: {source} (run from the repository root "
                       "or pass --source DIR)")
    files, excluded = _collect(source, read_ignore_file(source))
    if not files:
        raise BadInput(f"nothing to package: {source} has no files left after the excludes")
    buffer = io.BytesIO()
    packed = []
    with zipfile.ZipFile(buffer, "w") as archive:
        for rel in files:
            path = source / rel
            data = path.read_bytes()
            executable = path.stat().st_mode & stat.S_IXUSR
            info = zipfile.ZipInfo(f"{ARCHIVE_PREFIX}/{rel}", date_time=_FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so external_attr carries the mode
            info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            archive.writestr(info, data, compresslevel=9)
            packed.append(PackedFile(info.filename, len(data), info.compress_size))
    return Payload(buffer.getvalue(), tuple(packed), tuple(excluded))


def base64_size(byte_count: int) -> int:
    return 4 * ((byte_count + 2) // 3)


def check_budget(payload: Payload, budget: int) -> None:
    """Refuse a payload whose base64 text is over `budget` bytes, naming what weighs most."""
    size = base64_size(len(payload.zip_bytes))
    if size <= budget:
        return
    largest = sorted(payload.files, key=lambda f: f.compressed, reverse=True)[:5]
    listing = ", ".join(f"{f.arcname} ({_kib(f.compressed)} zipped)" for f in largest)
    raise BadInput(
        f"payload too large: {_kib(size)} of base64 over the {_kib(budget)} budget; largest: "
        f"{listing}; exclude files in {IGNORE_FILE} or raise --payload-budget"
    )


def _kib(size: int) -> str:
    return f"{size / 1024:.1f} KiB"


def summary(payload: Payload) -> list[str]:
    """Human lines for stderr: counts, sizes, sha256 and every exclusion."""
    raw = sum(f.size for f in payload.files)
    lines = [
        f"payload: {len(payload.files)} files, {_kib(raw)} -> {_kib(len(payload.zip_bytes))} "
        f"zip, {_kib(base64_size(len(payload.zip_bytes)))} base64",
        f"payload sha256: {payload.sha256}",
    ]
    lines += [f"excluded ({item.reason}): {item.path}" for item in payload.excluded]
    if payload.secrets:
        lines.append("secrets were NOT packaged: " + ", ".join(payload.secrets))
    return lines
