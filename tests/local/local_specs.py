"""Hand-made rendered specs in the shape of templates/isaaclab-inline.yaml."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP_PATH = "/workspace/osmo_inline/bootstrap.py"


def task_spec(
    script: str,
    environment: dict[str, str] | None = None,
    extra_files: list[dict] | None = None,
    args: list[str] | None = None,
    payload: bytes = b"stands in for the zip",
) -> dict:
    """A rendered spec shaped like templates/isaaclab-inline.yaml whose "bootstrap" is
    `script` (Python, delivered base64 like the real one)."""
    env = {
        "PAYLOAD_ARCHIVE": "/workspace/osmo_inline/payload.zip",
        "PAYLOAD_ROOT": "/workspace/isaac_payload",
        "PYTHON": "/workspace/isaaclab/isaaclab.sh -p",
        "WORKFLOW_ID": "{{workflow_id}}",
        "TRAINING_OUTPUT_DIR": "{{output}}",
        "MLFLOW_TRACKING_URI": "",
        "AZURE_SUBSCRIPTION_ID": "",
        "AZURE_RESOURCE_GROUP": "",
        "AZUREML_WORKSPACE_NAME": "",
    }
    env.update(environment or {})
    code = textwrap.dedent(script).encode()
    return {
        "version": 2,
        "workflow": {
            "name": "local-test",
            "resources": {"default": {"cpu": 1, "gpu": 1, "memory": "1Gi", "storage": "1Gi"}},
            "tasks": [
                {
                    "name": "isaac-training",
                    "image": "nvcr.io/nvidia/isaac-lab:2.2.0",
                    "command": ["bash", "-c"],
                    "args": args or [f"exec ${{PYTHON}} {BOOTSTRAP_PATH}"],
                    "files": [
                        {
                            "path": BOOTSTRAP_PATH,
                            "base64": True,
                            "contents": base64.b64encode(code).decode(),
                        },
                        {
                            "path": "/workspace/osmo_inline/payload.zip",
                            "base64": True,
                            "contents": base64.b64encode(payload).decode(),
                        },
                        *(extra_files or []),
                    ],
                    "environment": env,
                }
            ],
        },
    }


# A task that reports what it sees: its environment, argv and working directory, as JSON.
REPORT_SCRIPT = """
    import json, os, sys
    print(json.dumps({"env": dict(os.environ), "argv": sys.argv, "cwd": os.getcwd()}))
"""


def run_dirs(project: Path) -> list[Path]:
    runs = project / ".osmo-inline" / "runs"
    return sorted(runs.iterdir()) if runs.exists() else []




def group_spec(scripts: list[str], environments: list[dict[str, str]] | None = None,
               ignore_nonlead_status: bool = False) -> dict:
    """A rendered spec in the shape `--nodes N` gives: one group of N tasks, node 0 the lead,
    each with NODE_RANK and the lead's `{{host:...}}` as MASTER_ADDR on the fixed port."""
    names = [f"isaac-training-node-{rank}" for rank in range(len(scripts))]
    tasks = []
    for rank, script in enumerate(scripts):
        env = {"NPROC_PER_NODE": "1", "NNODES": str(len(scripts)), "NODE_RANK": str(rank),
               "MASTER_ADDR": f"{{{{host:{names[0]}}}}}", "MASTER_PORT": "29500",
               **((environments or [{}] * len(scripts))[rank])}
        (task,) = task_spec(script, environment=env)["workflow"]["tasks"]
        tasks.append({**task, "name": names[rank], **({"lead": True} if rank == 0 else {})})
    spec = task_spec("")
    del spec["workflow"]["tasks"]
    spec["workflow"]["groups"] = [{"name": "isaac-training", "barrier": True,
                                   "ignoreNonleadStatus": ignore_nonlead_status,
                                   "tasks": tasks}]
    return spec


# Node 0 listens on MASTER_ADDR:MASTER_PORT and node 1 connects to it, as torchrun's
# rendezvous would: both must run at once, and agree on address and port. Each prints
# what it received, as JSON.
RENDEZVOUS_SCRIPT = """
    import json, os, socket, time
    env = {k: os.environ[k] for k in ("NPROC_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR",
                                      "MASTER_PORT", "WORKFLOW_ID", "PAYLOAD_ROOT")}
    address = (os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]))
    if os.environ["NODE_RANK"] == "0":
        with socket.create_server(address) as server:
            server.settimeout(60)
            peer, _ = server.accept()
            env["peer_said"] = peer.recv(64).decode()
            peer.close()
    else:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(address, timeout=5) as lead:
                    lead.sendall(("node " + os.environ["NODE_RANK"]).encode())
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    print(json.dumps(env))
"""
