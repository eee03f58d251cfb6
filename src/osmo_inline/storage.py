"""Step 2b: how the payload reaches the task, and for storage delivery, putting it there.

Two deliveries of the same deterministic zip:

- inline: a base64 `files:` entry of the spec (one Kubernetes Secret, so about 1 MiB);
- storage: a content-addressed object `<storage url>/osmo-inline/<sha256>.zip`, handed to the
  task as its input 0 (`inputs: [{url: ...}]`). It is uploaded with `osmo data upload` only
  when `osmo data list` does not show it already, so unchanged code is uploaded once. For
  `--local` the storage URL is a directory here and "uploading" is a copy into it.

`auto` (the default) is inline while the base64 text fits `--payload-budget`, storage beyond.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import NamedTuple

from osmo_inline.artifacts import write_atomically
from osmo_inline.errors import BadInput, OsmoFailed
from osmo_inline.payload import Payload, _kib, base64_size, check_budget
from osmo_inline.render import unsafe_value_reason

DELIVERIES = ("auto", "inline", "storage")
REMOTE_SCHEMES = ("s3", "gs", "azure")  # what OSMO takes as a `url:` input (docs/osmo.md)
OBJECT_FOLDER = "osmo-inline"  # objects are <storage url>/osmo-inline/<sha256>.zip
ENV_VAR = "OSMO_INLINE_STORAGE_URL"
KEY = "storage_url"  # accepted after `--` as storage_url=URL
HOW_TO_PASS = (f"--storage-url s3://BUCKET/PREFIX (or gs://, azure://; also {ENV_VAR} or "
               f"{KEY}= after --)")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)", re.DOTALL)


class StorageURL(NamedTuple):
    url: str  # without a trailing slash; file:///ABS for a local directory
    where: str  # the flag, key or variable that set it, for messages
    local_dir: Path | None  # set for a local directory (only --local can read one)

    @property
    def folder(self) -> str:
        return f"{self.url}/{OBJECT_FOLDER}"

    def object_url(self, sha256: str) -> str:
        return f"{self.folder}/{object_name(sha256)}"


class Delivery(NamedTuple):
    kind: str  # "inline" | "storage"
    reason: str  # one line for stderr: why this delivery
    storage: StorageURL | None  # set for storage delivery
    object_url: str  # "" for inline


def object_name(sha256: str) -> str:
    return f"{sha256}.zip"


def parse_storage_url(text: str, where: str, cwd: Path) -> StorageURL:
    """s3://, gs://, azure:// (bucket required), file:///DIR or a directory path."""
    text = text.strip()
    reason = unsafe_value_reason(text)
    if reason is not None or any(char.isspace() for char in text):
        raise BadInput(f"{where}: the storage URL {reason or 'contains white space'}: {text!r}")
    match = _SCHEME.fullmatch(text)
    if match is None:
        if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", text):  # s3:bucket, http:... - not a path
            raise BadInput(f"{where}: {text!r} is not a storage URL; use s3://BUCKET/PREFIX, "
                           "gs://, azure:// (or, with --local, file:///DIR or a directory)")
        directory = (cwd / text).resolve()
        return StorageURL(directory.as_uri(), where, directory)
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme == "file":
        if not rest.startswith("/"):
            raise BadInput(f"{where}: a file:// URL needs an absolute path (file:///DIR), "
                           f"not {text!r}")
        directory = Path(rest).resolve()
        return StorageURL(directory.as_uri(), where, directory)
    if scheme not in REMOTE_SCHEMES:
        raise BadInput(f"{where}: unsupported storage scheme {scheme}://; use s3://, gs:// or "
                       "azure:// (or, with --local, file:///DIR or a directory)")
    rest = rest.strip("/")
    if not rest or rest.startswith("/"):
        raise BadInput(f"{where}: {text!r} names no bucket; use {scheme}://BUCKET[/PREFIX]")
    return StorageURL(f"{scheme}://{rest}", where, None)


def resolve_storage_url(
    flag: str | None, template_values: MutableMapping[str, str], environ: Mapping[str, str],
    cwd: Path,
) -> StorageURL | None:
    """The command line (--storage-url, or storage_url= after --) beats the environment
    variable; giving both on the command line with different values is an error. Removes
    storage_url from the template values: it is the client's setting, not the template's."""
    key_value = template_values.pop(KEY, None)
    if flag is not None and key_value is not None and flag.strip() != key_value.strip():
        raise BadInput(f"the storage URL is given twice ({flag!r} by --storage-url, "
                       f"{key_value!r} by {KEY}=): give it once")
    for value, where in ((flag, "--storage-url"), (key_value, f"{KEY}="),
                         (environ.get(ENV_VAR), f"{ENV_VAR} (environment)")):
        if value is not None and value.strip():
            return parse_storage_url(value, where, cwd)
    return None


def check_delivery_settings(delivery: str, storage: StorageURL | None) -> None:
    """What can be refused before the payload is built."""
    if delivery == "storage" and storage is None:
        raise BadInput(f"--delivery storage needs a storage URL: pass {HOW_TO_PASS}")


def choose(mode: str, payload: Payload, budget: int, storage: StorageURL | None, *,
           local: bool) -> Delivery:
    """The delivery for this payload; BadInput when it cannot be delivered as asked."""
    size = base64_size(len(payload.zip_bytes))
    if mode == "inline" or (mode == "auto" and size <= budget):
        check_budget(payload, budget, remedy="or use --delivery storage with " + HOW_TO_PASS)
        return Delivery("inline", f"delivery: inline ({_kib(size)} of base64 within the "
                        f"{_kib(budget)} --payload-budget)", None, "")
    if storage is None:  # auto, over the budget
        check_budget(payload, budget, remedy=f"or pass {HOW_TO_PASS} to deliver it through "
                     "object storage")
        raise AssertionError("check_budget let an over-budget payload through")
    if local and storage.local_dir is None:
        raise BadInput(f"{storage.where}: a --local run reads the payload object from a "
                       "directory here: pass --storage-url file:///DIR or a directory path, "
                       f"not {storage.url}")
    if not local and storage.local_dir is not None:
        raise BadInput(f"{storage.where}: {storage.url} is a directory on this machine, which "
                       "only --local can read; pass s3://, gs:// or azure:// for OSMO")
    why = ("--delivery storage" if mode == "storage" else
           f"{_kib(size)} of base64 over the {_kib(budget)} --payload-budget")
    object_url = storage.object_url(payload.sha256)
    return Delivery("storage", f"delivery: storage ({why}): {object_url}", storage, object_url)


def place(storage: StorageURL, payload: Payload, staging_dir: Path, *, dry_run: bool) -> str:
    """Make sure the object exists (a dry run only looks); returns a line saying what happened.

    Raises OsmoFailed (the mapped osmo exit code) when listing or uploading fails."""
    name = object_name(payload.sha256)
    if storage.local_dir is not None:
        target = storage.local_dir / OBJECT_FOLDER / name
        if target.is_file():
            return f"storage: {target} is already there: nothing copied"
        if dry_run:
            return f"storage: {target} is not there yet: a run would copy it"
        write_atomically(target, payload.zip_bytes)
        return f"storage: copied the payload to {target}"

    from osmo_inline import osmo  # lazy: only a remote storage URL needs subprocess

    object_url = storage.object_url(payload.sha256)
    if dry_run:
        if shutil.which("osmo") is None:
            return (f"storage: could not check whether {object_url} exists (osmo not on "
                    "PATH); submitting uploads it unless it does")
        try:
            present = osmo.data_contains(storage.folder, name)
        except OsmoFailed as error:
            return (f"storage: could not check whether {object_url} exists ({error}); "
                    "submitting uploads it unless it does")
        return (f"storage: {object_url} is already stored: submitting uploads nothing"
                if present else f"storage: {object_url} is not stored yet: submitting "
                "would upload it")
    if osmo.data_contains(storage.folder, name):
        return f"storage: {object_url} is already stored: nothing uploaded"
    # `osmo data upload URI FILE` stores FILE under URI by its name: stage it as <sha>.zip.
    staged = staging_dir / name
    for stale in staging_dir.glob("*.zip") if staging_dir.is_dir() else ():
        if stale != staged:
            stale.unlink()  # one staged object at a time: .tmp/ does not grow per change
    write_atomically(staged, payload.zip_bytes)
    osmo.data_upload(storage.folder, staged)
    return f"storage: uploaded {object_url}"
