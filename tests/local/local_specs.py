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


