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
# Credentials: never packaged (the spec is stored by OSMO), always listed so users notice.
# Matched against the lower-cased name, so `SERVER.PEM` is `*.pem`; `name/` matches a
# directory only, `a/b/` a directory whose path ends so. Each kind is the reason reported.
_DATA = ("json", "yaml", "yml", "toml", "ini", "cfg", "conf", "txt", "properties")
SECRET_NAMES = (
    ("cloud CLI credentials directory", (
        ".aws/", ".azure/", ".kube/", ".ssh/", ".gnupg/", ".docker/", ".oci/",
        ".config/gcloud/")),
    ("kubeconfig", ("kubeconfig", "kubeconfig.*", "kubeconfig-*", "*.kubeconfig")),
    ("private key or key store", (
        "*.pem", "*.key", "*.p12", "*.pfx", "*.ppk", "*.jks", "*.keystore", "id_rsa*",
        "id_dsa*", "id_ecdsa*", "id_ed25519*")),
    ("environment file", (".env", "*.env", ".env.*")),
    ("token cache", ("msal_token_cache*", "*token*cache*", "accesstokens.json")),
    ("credentials file", (
        ".netrc", "_netrc", ".pypirc", ".npmrc", ".htpasswd", ".pgpass", "*credentials",
        *(f"*credentials.{ext}" for ext in _DATA), "service-account*.json",
        "service_account*.json")),
    ("secrets file", tuple(f"*{stem}.{ext}" for stem in ("secret", "secrets") for ext in _DATA)),
)
# Content kinds, looked for in the first SNIFF_BYTES of files of at most SNIFF_MAX_SIZE bytes
# that could be text (no NUL byte there). The packed files are read anyway, so this costs no
# extra read: a key file is found whatever its name.
SNIFF_BYTES = 16 * 1024
SNIFF_MAX_SIZE = 256 * 1024
SECRET_CONTENT = (
    # (kind, how the file starts after blanks, byte strings that must all occur). The start
    # keeps code that merely names the fields (boto3's aws_secret_access_key= argument) in.
    ("service-account key (content)", b"{", (b'"service_account"', b'"private_key"')),
    ("private key (content)", b"", (b"-----BEGIN ", b"PRIVATE KEY-----")),
    ("private key (content)", b"", (b"-----BEGIN ", b"PRIVATE KEY BLOCK-----")),  # PGP
    ("kubeconfig (content)", b"", (b"clusters:", b"contexts:", b"current-context:")),
    ("AWS credentials (content)", b"[", (b"aws_secret_access_key",)),  # an INI file
)

REASON_BUILD = "cache/build output"
REASON_IGNORED = f"listed in {IGNORE_FILE}"
REASON_SECRET = "secret"

_FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold


# Records are NamedTuples: a dataclass costs a millisecond of start-up each.
class Excluded(NamedTuple):
    path: str  # relative to the source dir, "/" at the end for a directory
    reason: str  # REASON_BUILD, REASON_IGNORED or REASON_SECRET
    kind: str = ""  # for a secret: which rule found it ("private key (content)", ...)

    def describe(self) -> str:
        return f"{self.reason}: {self.kind}" if self.kind else self.reason


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
    """Built-in name patterns, matched with string tests (a regex per pattern would be the
    slowest part of a dry run's start-up): plain names, `*suffix`, `prefix*`, other globs
    with `*` (pieces in order), `name/` for directories only, `a/b/` for a directory path's
    end."""

    def __init__(self, patterns: Iterable[str]) -> None:
        patterns = tuple(patterns)
        self._paths = tuple("/" + p.rstrip("/") for p in patterns if "/" in p.rstrip("/"))
        self._tests = {dir_only: self._split(p.rstrip("/") for p in patterns
                                             if p.endswith("/") == dir_only
                                             and "/" not in p.rstrip("/"))
                       for dir_only in (False, True)}

    @staticmethod
    def _split(patterns: Iterable[str]) -> tuple[frozenset[str], tuple[str, ...],
                                                 tuple[str, ...], tuple[list[str], ...]]:
        """(names, suffixes, prefixes, the pieces of other globs)"""
        names, suffixes, prefixes, globs = set(), [], [], []
        for pattern in patterns:
            if "*" not in pattern:
                names.add(pattern)
            elif pattern.startswith("*") and "*" not in pattern[1:]:
                suffixes.append(pattern[1:])
            elif pattern.endswith("*") and "*" not in pattern[:-1]:
                prefixes.append(pattern[:-1])
            else:
                globs.append(pattern.split("*"))
        return frozenset(names), tuple(suffixes), tuple(prefixes), tuple(globs)

    @staticmethod
    def _glob(pieces: list[str], name: str) -> bool:
        first, *middle, last = pieces
        if not (name.startswith(first) and name.endswith(last)
                and len(name) >= len(first) + len(last)):
            return False
        at, end = len(first), len(name) - len(last)
        for piece in middle:
            at = name.find(piece, at, end)
            if at < 0:
                return False
            at += len(piece)
        return True

    def matches(self, name: str, is_dir: bool, rel_path: str = "") -> bool:
        if is_dir and self._paths and ("/" + rel_path).endswith(self._paths):
            return True
        return any(
            name in names or name.endswith(suffixes) or name.startswith(prefixes)
            or any(self._glob(pieces, name) for pieces in globs)
            for dir_only, (names, suffixes, prefixes, globs) in self._tests.items()
            if is_dir or not dir_only
        )


_BUILD_OUTPUT = _NameList(BUILD_OUTPUT)
_SECRETS_BY_KIND = tuple((kind, _NameList(patterns)) for kind, patterns in SECRET_NAMES)


def secret_by_name(rel_path: str, is_dir: bool) -> str | None:
    """The kind of credential a path's name says it holds (case-insensitive), or None."""
    lowered = rel_path.lower()
    name = lowered.rsplit("/", 1)[-1]
    for kind, names in _SECRETS_BY_KIND:
        if names.matches(name, is_dir, lowered):
            return kind
    return None


def secret_by_content(data: bytes) -> str | None:
    """The kind of credential a small text file's first bytes show, or None."""
    if len(data) > SNIFF_MAX_SIZE:
        return None
    head = data[:SNIFF_BYTES]
    if b"\0" in head:  # binary: weights, images, archives
        return None
    start = head.lstrip()
    for kind, first, needles in SECRET_CONTENT:
        if start.startswith(first) and all(needle in head for needle in needles):
            return kind
    return None


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


def _exclusion(rel_path: str, is_dir: bool, ignored: GitIgnoreSpec | None) -> Excluded | None:
    # Secrets first and always: no ignore pattern brings one back, and one that an ignore
    # pattern also matches is still reported as a secret.
    listed = rel_path + "/" if is_dir else rel_path
    kind = secret_by_name(rel_path, is_dir)
    if kind is not None:
        return Excluded(listed, REASON_SECRET, kind)
    if ignored is not None:
        # The ignore file comes after the built-in list, as later lines do in a .gitignore:
        # it may leave out more, or bring back (`!build/`) what the list leaves out.
        verdict = ignored.check_file(listed).include
        if verdict is not None:
            return Excluded(listed, REASON_IGNORED) if verdict else None
    name = rel_path.rsplit("/", 1)[-1]
    return Excluded(listed, REASON_BUILD) if _BUILD_OUTPUT.matches(name, is_dir) else None


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
            left_out = _exclusion(rel, is_dir, ignored)
            if left_out is not None:
                excluded.append(left_out)
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
    buffer = io.BytesIO()
    packed = []
    with zipfile.ZipFile(buffer, "w") as archive:
        for rel in files:
            path = source / rel
            data = path.read_bytes()
            kind = secret_by_content(data)
            if kind is not None:
                excluded.append(Excluded(rel, REASON_SECRET, kind))
                continue
            executable = path.stat().st_mode & stat.S_IXUSR
            info = zipfile.ZipInfo(f"{ARCHIVE_PREFIX}/{rel}", date_time=_FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so external_attr carries the mode
            info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            archive.writestr(info, data, compresslevel=9)
            packed.append(PackedFile(info.filename, len(data), info.compress_size))
    if not packed:
        raise BadInput(f"nothing to package: {source} has no files left after the excludes")
    excluded.sort(key=lambda item: item.path)
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
    lines += [f"excluded ({item.describe()}): {item.path}" for item in payload.excluded]
    if payload.secrets:
        lines.append("secrets were NOT packaged: " + ", ".join(payload.secrets))
    return lines
