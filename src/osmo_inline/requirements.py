"""Step 2c: refuse requirements.txt lines that would replace what the Isaac Lab image ships.

The runtime pip-installs only the missing lines of ``src/training/requirements.txt``
(``training.deps``), and refuses, before installing anything, a line naming a package the
image ships: a second torch or numpy breaks Isaac Sim, a second rsl-rl or skrl the checkpoints.
The client reads the same file from the source tree so that ``--dry-run`` refuses it too, with
the same rule (the runtime's copy is ``training.deps.image_package``: the client never imports
the runtime, and tests/client/test_client_tasks.py checks the two lists agree).
"""

from __future__ import annotations

import re
from pathlib import Path

from osmo_inline.errors import BadInput

REQUIREMENTS = "requirements.txt"  # relative to src/training
# Distributions an Isaac Lab image ships (PEP 503 names), and families of them.
IMAGE_DISTRIBUTIONS = ("torch", "numpy", "rsl-rl-lib", "skrl", "isaaclab", "isaacsim")
IMAGE_FAMILIES = ("isaaclab-", "isaacsim-")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def shipped_by_image(requirement: str) -> str | None:
    """The image package a requirement line names (normalised), or None."""
    match = _NAME.match(requirement.strip())
    if match is None:
        return None
    name = re.sub(r"[-_.]+", "-", match.group(0)).lower()
    return name if name in IMAGE_DISTRIBUTIONS or name.startswith(IMAGE_FAMILIES) else None


def check_requirements(source: Path, packaged: list[str]) -> None:
    """BadInput naming every line of the packaged requirements.txt that names an image
    package; nothing when the file is not packaged."""
    if REQUIREMENTS not in packaged:
        return
    refused = []
    lines = (source / REQUIREMENTS).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        requirement = line.partition("#")[0].strip()
        if requirement and shipped_by_image(requirement):
            refused.append(f"{requirement!r} (line {number})")
    if refused:
        raise BadInput(f"src/training/{REQUIREMENTS}: {', '.join(refused)} would replace what "
                       f"the Isaac Lab image ships ({', '.join(IMAGE_DISTRIBUTIONS)}): remove "
                       "the line; the image's own version is used")
