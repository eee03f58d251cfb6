"""Step 5 (cluster): hand the rendered spec file to the `osmo` CLI and read its answer; for
storage delivery, list and upload the payload object with `osmo data` first.

Only the spec's path and the user's forwarded options reach osmo's argv: the payload travels
inside the file, or as an object in storage that the spec names.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from osmo_inline import errors
from osmo_inline.errors import OsmoFailed

# What each documented osmo exit code means, and what the user can do about it.
_FAILURES = {
    1: (errors.EXIT_OSMO_REJECTED,
        "osmo rejected the workflow (template, validation or resource error); check the spec "
        "with --dry-run and the pool's limits"),
    2: (errors.EXIT_OSMO_USAGE,
        "osmo usage or login error; run `osmo login` and check the forwarded options "
        "(e.g. --pool)"),
    10: (errors.EXIT_OSMO_SERVER,
         "osmo could not reach its service (server or connection failure); retry later or "
         "check your network/VPN"),
    75: (errors.EXIT_OSMO_RATE_LIMITED, "osmo is rate limited; wait a minute and submit again"),
}
# `osmo data` uses the user's own data credentials for the bucket (`osmo credential`), not
# the workflow service: a login error points there, and 1 is no rejected workflow.
_DATA_FAILURES = {
    **_FAILURES,
    1: (errors.EXIT_OSMO_OTHER, "osmo could not access the storage URL"),
    2: (errors.EXIT_OSMO_USAGE,
        "osmo usage or login error; run `osmo login` and check your data credentials for the "
        "bucket (`osmo credential`)"),
}
_LIST_TOTAL = re.compile(r"Total \d+ objects found")
_FORMAT_FLAGS = ("-t", "--format-type")
_ID_LINE = re.compile(r"Workflow ID\s*-\s*(\S+)")
_URL_LINE = re.compile(r"Workflow Overview\s*-\s*(\S+)")


@dataclass(frozen=True)
class Submission:
    workflow_id: str
    overview_url: str


def find_osmo() -> str:
    path = shutil.which("osmo")
    if path is None:
        raise OsmoFailed(
            "osmo CLI not found on PATH; install it (NVIDIA OSMO releases) and `osmo login`, "
            "or use --dry-run / --local", errors.EXIT_OSMO_MISSING,
        )
    return path


def submit(spec_file: Path, forwarded: tuple[str, ...]) -> Submission:
    """Run `osmo workflow submit FILE [forwarded...]`; raise OsmoFailed with the mapped code."""
    argv = ["workflow", "submit", str(spec_file), *forwarded]
    if not any(arg.split("=")[0] in _FORMAT_FLAGS for arg in forwarded):
        argv += ["--format-type", "json"]  # parse JSON rather than prose when we may choose
    return parse_submission(_run(argv, _FAILURES))


def data_contains(folder: str, name: str) -> bool:
    """Whether `osmo data list FOLDER` shows an object called `name` (by its last path
    component: whether osmo prints keys relative to the URI or to the bucket)."""
    # --no-pager: without it (and without an output file) osmo pipes the list into less.
    listing = _run(["data", "list", folder + "/", "--no-pager"], _DATA_FAILURES, "listing")
    keys = [line.strip() for line in listing.splitlines()
            if line.strip() and not _LIST_TOTAL.fullmatch(line.strip())]
    return any(key.rstrip("/").rsplit("/", 1)[-1] == name for key in keys)


def data_upload(folder: str, path: Path) -> None:
    """`osmo data upload FOLDER/ PATH`: the object is FOLDER/<PATH's name>."""
    _run(["data", "upload", folder + "/", str(path)], _DATA_FAILURES, "uploading the payload")


def _run(argv: list[str], failures: dict[int, tuple[int, str]], action: str = "") -> str:
    """osmo's stdout; OsmoFailed with the mapped exit code (prefixed with `action`)."""
    argv = [find_osmo(), *argv]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as error:  # found on PATH but not runnable (permissions, bad interpreter)
        raise OsmoFailed(f"cannot run {argv[0]}: {error.strerror}",
                         errors.EXIT_OSMO_MISSING) from None
    if result.returncode != 0:
        code, meaning = failures.get(
            result.returncode,
            (errors.EXIT_OSMO_OTHER, f"osmo failed with exit code {result.returncode}"),
        )
        detail = _error_message(result.stdout + "\n" + result.stderr)
        prefix = f"{action}: " if action else ""
        raise OsmoFailed(prefix + meaning + (f": {detail}" if detail else ""), code)
    return result.stdout


def parse_submission(stdout: str) -> Submission:
    try:
        answer = json.loads(stdout)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and answer.get("name"):
        return Submission(str(answer["name"]), str(answer.get("overview", "")))
    workflow_id, url = _ID_LINE.search(stdout), _URL_LINE.search(stdout)
    if workflow_id is None:
        raise OsmoFailed(
            "osmo exited 0 but printed no workflow id; check `osmo workflow list`: "
            + " ".join(stdout.split())[:300], errors.EXIT_OSMO_OTHER,
        )
    return Submission(workflow_id.group(1), url.group(1) if url else "")


def _error_message(output: str) -> str:
    # osmo prints "Error message: ..." on stdout; fall back to its last non-empty line.
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("Error message:"):
            return line.removeprefix("Error message:").strip()
    return lines[-1] if lines else ""
