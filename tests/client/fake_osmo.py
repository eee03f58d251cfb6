"""A stand-in for the `osmo` CLI (tests only): records what would reach OSMO, then answers.

Each call appends {argv, spec, longest_env} to $FAKE_OSMO_RECORD (JSON lines); `spec` is the
text of the file named after `workflow submit`. FAKE_OSMO_EXIT picks the exit code.
"""

import json
import os
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
if code:
    print("Error message: " + os.environ.get("FAKE_OSMO_MESSAGE", "something went wrong"))
    sys.exit(code)
name = "isaaclab-inline-training-7"
url = f"https://osmo.example.com/workflows/{name}"
if "--format-type" in argv and argv[argv.index("--format-type") + 1] == "json":
    print(json.dumps({"name": name, "overview": url, "logs": url + "/logs", "spec": "..."}))
else:
    print(f"Workflow submit successful.\nWorkflow ID - {name}\nWorkflow Overview - {url}")
