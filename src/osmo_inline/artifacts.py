"""The client's only writes: `.tmp/` payload files, the spec it submits, the submission log.

Each file is written to a temporary name next to it and renamed, so a reader never sees half
a file and an interrupted run leaves the previous one intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from osmo_inline.payload import Payload
from osmo_inline.redact import redact_tree

ZIP_NAME = "osmo-training.zip"  # the seed's troubleshooting names
B64_NAME = "osmo-training.b64"
SPEC_NAME = "osmo-workflow.yaml"
LOG_NAME = "submissions.jsonl"


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; give a normal file's mode
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def write_payload(payload: Payload, tmp_dir: Path) -> tuple[Path, Path]:
    zip_path, b64_path = tmp_dir / ZIP_NAME, tmp_dir / B64_NAME
    write_atomically(zip_path, payload.zip_bytes)
    write_atomically(b64_path, payload.b64.encode("ascii"))
    return zip_path, b64_path


def write_spec(spec_text: str, tmp_dir: Path) -> Path:
    path = tmp_dir / SPEC_NAME
    write_atomically(path, spec_text.encode("utf-8"))
    return path


def record_submission(tmp_dir: Path, record: dict[str, object]) -> None:
    """Append one JSON line, credentials in its values redacted; a single short write, so
    concurrent appends do not interleave."""
    stamped = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               **redact_tree(record)}
    tmp_dir.mkdir(parents=True, exist_ok=True)
    with open(tmp_dir / LOG_NAME, "a", encoding="utf-8") as log:
        log.write(json.dumps(stamped, sort_keys=True) + "\n")
