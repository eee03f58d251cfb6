"""Isaac Lab task names across image tags: which scheme an image's tag carries, and 3.0's renames.

The table (``isaaclab_tasks.json``) is generated from the releases' own ``gym.register`` calls
by ``scripts/isaaclab_task_names.py``. Isaac Lab 2.2/2.3 name tasks ``Isaac-...-v0``; 3.0
renamed many without an alias (``Isaac-Velocity-Rough-Anymal-C-v0`` is
``IsaacContrib-Velocity-Rough-AnymalC``; ``-v0`` suffixes are gone). So:

- the default task follows the image (the 3.0 name on a 3.x image);
- a task the user named in the other release's scheme is refused with one line that says what
  it is called on that image (exit 2): a silent translation would train something the user did
  not write down;
- gymnasium ids, ids the table does not know and images that are not ``isaac-lab:<tag>`` pass
  unchanged: the container decides (an unknown task lists the closest ids there).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from osmo_inline.errors import BadInput

TABLE = Path(__file__).with_name("isaaclab_tasks.json")
_TAG = re.compile(r"(?:^|/)isaac-lab:(\d+)\.(\d+)")


@cache
def table() -> dict[str, Any]:
    return json.loads(TABLE.read_text(encoding="utf-8"))


def release_of_image(image: str) -> str | None:
    """"2.2", "2.3" or "3.0" for an ``isaac-lab:<tag>`` image (later 3.x tags use the 3.0
    scheme); None for any other image."""
    match = _TAG.search(image)
    if match is None:
        return None
    major, minor = int(match[1]), int(match[2])
    if major >= 3:
        return "3.0"
    return f"{major}.{minor}" if f"{major}.{minor}" in table()["releases"] else None


def task_for_image(task: str, image: str, task_source: str) -> str:
    """The task to run on ``image``: ``task`` itself, or the default task's name there;
    BadInput when ``task`` is the other release's name for a task the image calls otherwise."""
    release = release_of_image(image)
    if release is None:
        return task
    renamed = table()["renamed_in_3_0"]
    known_here = set(table()["releases"][release])
    if release == "3.0" and task in renamed and task not in known_here:
        if task_source == "default":
            return renamed[task]
        raise BadInput(f"{task_source}: {task} is called {renamed[task]} on {image} (Isaac Lab "
                       f"3.0 renamed its tasks, without aliases): use -t {renamed[task]}")
    if release != "3.0" and task not in known_here:
        older = [old for old, new in renamed.items() if new == task and old in known_here]
        if older:
            raise BadInput(f"{task_source}: {task} is an Isaac Lab 3.0 name; on {image} the task "
                           f"is called {older[0]}: use -t {older[0]}")
    return task
