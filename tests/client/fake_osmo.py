"""A stand-in for the `osmo` CLI (tests only): records what would reach OSMO, then answers.

Each call appends {argv, spec, longest_env} to $FAKE_OSMO_RECORD (JSON lines); `spec` is the
text of the file named after `workflow submit`. FAKE_OSMO_EXIT picks the exit code, for every
call or, with FAKE_OSMO_FAIL_ON="data upload" (say), only for calls that start so.

`data list` and `data upload` keep their objects in the directory $FAKE_OSMO_BUCKET:
`s3://bucket/a/b.zip` is the file `$FAKE_OSMO_BUCKET/s3/bucket/a/b.zip`.
"""

import json
import os
import shutil
import sys
from pathlib import Path

argv = sys.argv[1:]
spec = None
if argv[:2] == ["workflow", "submit"] and len(argv) > 2 and Path(argv[2]).is_file():
    spec = Path(argv[2]).read_text(encoding="utf-8")
with open(os.environ["FAKE_OSMO_RECORD"], "a", encoding="utf-8") as record:
    record.write(json.dumps({
        "argv": argv,
        "spec": spec,
        "longest_env": max(len(f"{k}={v}") for k, v in os.environ.items()),
    }) + "\n")

code = int(os.environ.get("FAKE_OSMO_EXIT", "0"))
if code and " ".join(argv).startswith(os.environ.get("FAKE_OSMO_FAIL_ON", "")):
    print("Error message: " + os.environ.get("FAKE_OSMO_MESSAGE", "something went wrong"))
    sys.exit(code)


def bucket_path(uri: str) -> tuple[Path, str]:
    """(the directory standing in for the URI, the URI's key prefix inside its bucket)"""
    scheme, _, rest = uri.partition("://")
    bucket, _, prefix = rest.partition("/")
    return Path(os.environ["FAKE_OSMO_BUCKET"], scheme, bucket, prefix), prefix


if argv[:2] == ["data", "upload"]:
    # NVIDIA/OSMO src/cli/data.py, `upload`: `osmo data upload REMOTE_URI LOCAL_PATH...`
    # (`local_path` nargs='+'); _run_upload_command hands the paths to
    # storage_client.upload_objects, which stores each file under REMOTE_URI by its name
    # (the parser's epilog: `osmo data upload s3://bucket/ /path/to/file`).
    folder, _ = bucket_path(argv[2])
    folder.mkdir(parents=True, exist_ok=True)
    for local in argv[3:]:
        shutil.copyfile(local, folder / Path(local).name)
    sys.exit(0)
if argv[:2] == ["data", "list"]:
    # NVIDIA/OSMO src/cli/data.py, `list`: without --no-pager (or an output file) the keys
    # go to `less`/`more`; with it _emit_list_results writes one `obj.key` a line to stdout,
    # and the `finally:` prints "\nTotal N objects found".
    if "--no-pager" not in argv:
        sys.exit("fake osmo: data list without --no-pager would open a pager")
    folder, prefix = bucket_path(argv[2])
    keys = sorted(str(Path(prefix, p.relative_to(folder))) for p in folder.glob("*")
                  if p.is_file()) if folder.is_dir() else []
    for key in keys:
        print(key)
    print(f"\nTotal {len(keys)} objects found")
    sys.exit(0)

name = "isaaclab-inline-training-7"
url = f"https://osmo.example.com/workflows/{name}"
if "--format-type" in argv and argv[argv.index("--format-type") + 1] == "json":
    print(json.dumps({"name": name, "overview": url, "logs": url + "/logs", "spec": "..."}))
else:
    print(f"Workflow submit successful.\nWorkflow ID - {name}\nWorkflow Overview - {url}")
