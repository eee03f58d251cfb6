"""Step 2: the source tree -> a deterministic zip (bytes, sha256, what was left out).

Pure: reads the tree, writes nothing (`artifacts.py` writes `.tmp/`). The same tree gives
byte-identical bytes whatever the mtimes, creation order or umask: members are sorted, dated
1980-01-01 and get mode 0644 (0755 when the owner may execute).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import stat
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from osmo_inline.errors import BadInput

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

ARCHIVE_PREFIX = "src/training"  # members land in $PAYLOAD_ROOT/src/training
IGNORE_FILE = ".payloadignore"  # patterns with .gitignore rules, read from the source dir

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


# Records are NamedTuples: a dataclass costs a millisecond of start-up each.
class Excluded(NamedTuple):
    path: str  # relative to the source dir, "/" at the end for a directory
    reason: str


class PackedFile(NamedTuple):
    arcname: str
    size: int  # bytes on disk
    compressed: int  # bytes in the zip


class Payload(NamedTuple):
    zip_bytes: bytes
    files: tuple[PackedFile, ...]
    excluded: tuple[Excluded, ...]
    sha256: str  # of zip_bytes
    b64: str  # zip_bytes as base64 text

    @property
    def secrets(self) -> list[str]:
        return [item.path for item in self.excluded if item.reason == REASON_SECRET]


class _NameList:
    """The built-in lists: plain names, `*suffix` and `prefix*`, `name/` for directories only,
    matched against a file or directory name with string tests (a regex per pattern would be
    the slowest part of a dry run's start-up)."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self._tests = {dir_only: self._split(p.rstrip("/") for p in patterns
                                             if p.endswith("/") == dir_only)
                       for dir_only in (False, True)}

    @staticmethod
    def _split(patterns: Iterable[str]) -> tuple[frozenset[str], tuple[str, ...], tuple[str, ...]]:
        """(names, suffixes, prefixes)"""
        names, suffixes, prefixes = set(), [], []
        for pattern in patterns:
            if "*" not in pattern:
                names.add(pattern)
            elif pattern.startswith("*") and "*" not in pattern[1:]:
                suffixes.append(pattern[1:])
            elif pattern.endswith("*") and "*" not in pattern[:-1]:
                prefixes.append(pattern[:-1])
            else:
                raise ValueError(f"not a name, *suffix or prefix* pattern: {pattern}")
        return frozenset(names), tuple(suffixes), tuple(prefixes)

    def matches(self, name: str, is_dir: bool) -> bool:
        return any(
            name in names or name.endswith(suffixes) or name.startswith(prefixes)
            for dir_only, (names, suffixes, prefixes) in self._tests.items()
            if is_dir or not dir_only
        )


_BUILD_OUTPUT = _NameList(BUILD_OUTPUT)
_SECRETS = _NameList(SECRETS)


def read_ignore_file(source: Path) -> GitIgnoreSpec | None:
    """The source dir's ignore file, with git's rules for .gitignore (`!` re-includes, `**`,
    a leading or inner `/` anchors, a trailing `/` means directories only); None without one."""
    path = source / IGNORE_FILE
    if not path.is_file():
        return None
    # Imported only when there is a file to read: pathspec costs a dry run ~25 ms to import.
    from pathspec import GitIgnoreSpec

    try:
        return GitIgnoreSpec.from_lines(path.read_text(encoding="utf-8").splitlines())
    except ValueError as error:  # pathspec's pattern errors, and undecodable text
        raise BadInput(f"{path}: {error}") from None


def _exclusion(rel_path: str, is_dir: bool, ignored: GitIgnoreSpec | None) -> str | None:
    name = rel_path.rsplit("/", 1)[-1]
    # Secrets first and always: no ignore pattern brings one back, and one that an ignore
    # pattern also matches is still reported as a secret.
    if _SECRETS.matches(name, is_dir):
        return REASON_SECRET
    if ignored is not None:
        # The ignore file comes after the built-in list, as later lines do in a .gitignore:
        # it may leave out more, or bring back (`!build/`) what the list leaves out.
        verdict = ignored.check_file(rel_path + "/" if is_dir else rel_path).include
        if verdict is not None:
            return REASON_IGNORED if verdict else None
    return REASON_BUILD if _BUILD_OUTPUT.matches(name, is_dir) else None


def _collect(source: Path, ignored: GitIgnoreSpec | None) -> tuple[list[str], list[Excluded]]:
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
        raise BadInput(f"source directory not found: {source} (run inside the project, or "
                       "pass --source DIR)")
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
    zip_bytes = buffer.getvalue()
    return Payload(zip_bytes, tuple(packed), tuple(excluded), hashlib.sha256(zip_bytes).hexdigest(),
                   base64.b64encode(zip_bytes).decode("ascii"))


def base64_size(byte_count: int) -> int:
    return 4 * ((byte_count + 2) // 3)


def check_budget(payload: Payload, budget: int, remedy: str = "") -> None:
    """Refuse a payload whose base64 text is over `budget` bytes, naming what weighs most
    and, after the usual advice, `remedy` (e.g. "or use --delivery storage ...")."""
    size = base64_size(len(payload.zip_bytes))
    if size <= budget:
        return
    largest = sorted(payload.files, key=lambda f: f.compressed, reverse=True)[:5]
    listing = ", ".join(f"{f.arcname} ({_kib(f.compressed)} zipped)" for f in largest)
    raise BadInput(
        f"payload too large: {_kib(size)} of base64 over the {_kib(budget)} budget; largest: "
        f"{listing}; exclude files in {IGNORE_FILE}, raise --payload-budget"
        + (f" {remedy}" if remedy else "")
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
