"""Container entry point: verify the payload, extract it safely, start the training launcher.

Delivered into the task as the file /workspace/osmo_inline/bootstrap.py and run by the image's
Python (`${PYTHON} bootstrap.py`), so it uses the standard library only and runs on Python 3.10.
It reads PAYLOAD_ARCHIVE, PAYLOAD_SHA256, PAYLOAD_ROOT, SLEEP_AFTER_UNPACK and the optional
extraction limits PAYLOAD_MAX_EXTRACTED_BYTES and PAYLOAD_MAX_MEMBERS; the launcher reads every
other value from the same environment.

Exit codes: 0 (inspection pause done; otherwise it execs the launcher), 2 bad environment
value or a PAYLOAD_ROOT it may not replace, 8 payload refused (missing, sha256 mismatch, unsafe
member, over an extraction limit, cannot be written), 10 the launcher cannot be started.
Nothing is ever written outside PAYLOAD_ROOT (and a scratch directory beside it, removed
again), and no directory the bootstrap did not make is ever replaced.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import sys
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath
from typing import NamedTuple

EXIT_BAD_ENV = 2
EXIT_PAYLOAD_REFUSED = 8
EXIT_LAUNCH_FAILED = 10  # free in the launcher's table too: the task's exit code says which
MARKER = ".osmo-inline-payload"  # marks a root this bootstrap extracted (safe to replace)
LAUNCHER = ("-m", "training.launch", "--headless")
# Extraction limits, checked against the zip's directory before anything is written (a zip
# bomb: 2 MB of zeros expand to 2 GiB). A payload within the client's 1 MiB budget of code
# and configs is far below both; each can be raised by the environment variable of its name.
MAX_EXTRACTED_BYTES = 256 * 1024 * 1024
MAX_MEMBERS = 10_000
LIMIT_VARIABLES = {"PAYLOAD_MAX_EXTRACTED_BYTES": MAX_EXTRACTED_BYTES,
                   "PAYLOAD_MAX_MEMBERS": MAX_MEMBERS}


class Refused(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def log(message: str) -> None:
    print(f"[bootstrap] {message}", flush=True)


class Settings(NamedTuple):
    """What the environment asks for, checked."""

    archive: Path
    sha256: str
    root: Path  # resolved: the directory that would really be touched
    sleep: float | None
    max_bytes: int
    max_members: int


def read_environment(environ: dict[str, str]) -> Settings:
    """The checked settings; Refused(2) on a bad value."""
    missing = [name for name in ("PAYLOAD_ARCHIVE", "PAYLOAD_SHA256", "PAYLOAD_ROOT")
               if not environ.get(name, "").strip()]
    if missing:
        raise Refused("missing environment value(s): " + ", ".join(missing), EXIT_BAD_ENV)
    sha256 = environ["PAYLOAD_SHA256"].strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise Refused(f"PAYLOAD_SHA256 is not a sha256 hex digest: {sha256!r}", EXIT_BAD_ENV)
    sleep_text = environ.get("SLEEP_AFTER_UNPACK", "").strip()
    sleep = None
    if sleep_text:
        try:
            sleep = float(sleep_text)
        except ValueError:
            sleep = -1.0
        if not sleep >= 0:  # also rejects nan
            raise Refused(f"SLEEP_AFTER_UNPACK must be a non-negative number of seconds, not "
                          f"{sleep_text!r}", EXIT_BAD_ENV)
    limits = {}
    for name, default in LIMIT_VARIABLES.items():
        text = environ.get(name, "").strip()
        if text and not (text.isdigit() and int(text) > 0):
            raise Refused(f"{name} must be a positive integer, not {text!r}", EXIT_BAD_ENV)
        limits[name] = int(text) if text else default
    return Settings(Path(environ["PAYLOAD_ARCHIVE"].strip()), sha256,
                    payload_root(environ["PAYLOAD_ROOT"].strip()), sleep,
                    limits["PAYLOAD_MAX_EXTRACTED_BYTES"], limits["PAYLOAD_MAX_MEMBERS"])


def payload_root(text: str) -> Path:
    """PAYLOAD_ROOT as the directory the kernel would really use: `..` and symbolic links
    resolved before any check, so `/workspace/x/..` is `/workspace` (and is refused there as
    a root the bootstrap did not make), never a path whose meaning changes once `x` exists."""
    if not text.startswith("/"):
        raise Refused(f"PAYLOAD_ROOT must be an absolute path below /, not {text!r}",
                      EXIT_BAD_ENV)
    root = Path(os.path.realpath(text))
    if root == Path(root.anchor):
        raise Refused(f"PAYLOAD_ROOT must be an absolute path below /, not {text!r}"
                      + (f" (it resolves to {root})" if str(root) != text else ""),
                      EXIT_BAD_ENV)
    return root


def check_replaceable(root: Path) -> None:
    """Refuse a root that exists, is not empty and was not made by this bootstrap: it would
    be deleted by the swap (in an image, /workspace is where Isaac Lab lives)."""
    if root.is_dir() and not (root / MARKER).exists() and any(root.iterdir()):
        raise Refused(f"PAYLOAD_ROOT {root} exists, is not empty and was not made by this "
                      "bootstrap; refusing to replace it", EXIT_BAD_ENV)
    if root.exists() and not root.is_dir():
        raise Refused(f"PAYLOAD_ROOT {root} exists and is not a directory; refusing to "
                      "replace it", EXIT_BAD_ENV)


def locate_archive(archive: Path, sha256: str) -> Path:
    """The zip: `archive` itself, or when it is a directory (storage delivery: the task's
    input), the file `<sha256>.zip` in it or, wherever OSMO nested it, below it."""
    if not archive.is_dir():
        return archive
    name = f"{sha256}.zip"
    if (archive / name).is_file():
        return archive / name
    for directory, _, files in sorted(os.walk(archive)):
        if name in files:
            return Path(directory, name)
    raise Refused(f"payload {name} not found in {archive} (the task's input)",
                  EXIT_PAYLOAD_REFUSED)


def read_verified(archive: Path, expected: str) -> bytes:
    try:
        data = archive.read_bytes()
    except OSError as error:
        raise Refused(f"cannot read payload {archive}: {error.strerror}",
                      EXIT_PAYLOAD_REFUSED) from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise Refused(f"payload sha256 mismatch: expected {expected}, got {actual}; refusing "
                      "to run bytes the client did not send", EXIT_PAYLOAD_REFUSED)
    return data


def safe_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """Every member, after refusing absolute paths, `..`, links and special files."""
    members = archive.infolist()
    for info in members:
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip records no file type
        if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
            problem = "an absolute path"
        elif ".." in parts:
            problem = "a '..' component"
        elif kind == stat.S_IFLNK:
            problem = "a symbolic link"
        elif kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            problem = "a special file"
        else:
            continue
        raise Refused(f"unsafe payload member {name!r}: {problem}", EXIT_PAYLOAD_REFUSED)
    return members


def check_limits(members: list[zipfile.ZipInfo], max_bytes: int, max_members: int) -> None:
    """Refuse, before writing anything, a zip over the member count or uncompressed size."""
    if len(members) > max_members:
        raise Refused(f"payload has {len(members)} members, over the limit of {max_members} "
                      "(PAYLOAD_MAX_MEMBERS)", EXIT_PAYLOAD_REFUSED)
    total = sum(info.file_size for info in members)
    if total > max_bytes:
        raise Refused(f"payload expands to {total} bytes, over the limit of {max_bytes} "
                      "(PAYLOAD_MAX_EXTRACTED_BYTES)", EXIT_PAYLOAD_REFUSED)


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path,
                 budget: int) -> int:
    """Write one member; returns the bytes written. A member that yields more than its
    directory entry declared fails zipfile's own CRC check; `budget` is a second guard."""
    written = 0
    with archive.open(info) as source, open(target, "wb") as out:
        while chunk := source.read(1024 * 1024):
            written += len(chunk)
            if written > budget:
                raise Refused("payload expands past the limit declared in its directory "
                              "(PAYLOAD_MAX_EXTRACTED_BYTES)", EXIT_PAYLOAD_REFUSED)
            out.write(chunk)
    return written


def extract(data: bytes, settings: Settings) -> int:
    """Extract into a fresh copy of the root; returns the number of files written."""
    import io

    root = settings.root
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as error:
        raise Refused(f"payload is not a zip archive: {error}", EXIT_PAYLOAD_REFUSED) from None
    with archive:
        members = safe_members(archive)
        check_limits(members, settings.max_bytes, settings.max_members)
        check_replaceable(root)
        try:
            return _extract_members(archive, members, root, settings.max_bytes)
        except zipfile.BadZipFile as error:  # a member whose data does not match its entry
            raise Refused(f"payload member damaged: {error}", EXIT_PAYLOAD_REFUSED) from None


def _extract_members(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], root: Path,
                     budget: int) -> int:
    root.parent.mkdir(parents=True, exist_ok=True)
    # Extract beside the root, then swap: a half-done extraction never looks like a payload,
    # and files of an earlier extraction do not survive.
    scratch = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        count = 0
        for info in members:
            target = scratch.joinpath(*PurePosixPath(info.filename).parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            budget -= _copy_member(archive, info, target, budget)
            target.chmod(0o755 if (info.external_attr >> 16) & stat.S_IXUSR else 0o644)
            count += 1
        (scratch / MARKER).write_text("extracted by osmo_inline bootstrap\n")
        check_replaceable(root)  # again, right before the delete: nothing changed meanwhile
        if root.exists():
            shutil.rmtree(root)
        os.replace(scratch, root)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return count


def launch(root: Path, environ: dict[str, str]) -> None:
    """Replace this process with `python -m training.launch --headless`."""
    source = root / "src"
    if not (source / "training").is_dir():
        raise Refused(f"payload has no src/training under {root}", EXIT_PAYLOAD_REFUSED)
    env = dict(environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    argv = [sys.executable, *LAUNCHER]
    log("starting: " + " ".join(argv))
    if not sys.executable:  # an embedding launcher that does not tell Python its own path
        raise Refused("cannot start the launcher: this Python does not know its own path "
                      "(sys.executable is empty)", EXIT_LAUNCH_FAILED)
    try:
        os.execve(sys.executable, argv, env)
    except OSError as error:
        raise Refused(f"cannot start the launcher: {sys.executable}: "
                      f"{error.strerror or error}", EXIT_LAUNCH_FAILED) from None


def main(environ: dict[str, str] | None = None) -> int:
    environ = dict(os.environ if environ is None else environ)
    try:
        settings = read_environment(environ)
        sleep, root = settings.sleep, settings.root
        if str(root) != environ["PAYLOAD_ROOT"].strip():
            log(f"PAYLOAD_ROOT {environ['PAYLOAD_ROOT'].strip()} is {root}")
        data = read_verified(locate_archive(settings.archive, settings.sha256),
                             settings.sha256)
        log(f"payload sha256 ok ({len(data)} bytes)")
        count = extract(data, settings)
        log(f"extracted {count} files to {root}")
        if sleep is not None:
            log(f"SLEEP_AFTER_UNPACK={sleep:g}: sleeping for inspection; training will NOT "
                "run in this task")
            time.sleep(sleep)
            log("inspection pause over; exiting 0 without training")
            return 0
        launch(root, environ)
    except Refused as error:
        print(f"[bootstrap] error: {error}", file=sys.stderr, flush=True)
        return error.exit_code
    except OSError as error:  # disk full, permissions: the payload cannot be put in place
        print(f"[bootstrap] error: cannot extract the payload: {error}", file=sys.stderr,
              flush=True)
        return EXIT_PAYLOAD_REFUSED
    return 0  # not reached: launch() replaced the process


if __name__ == "__main__":
    sys.exit(main())
