"""Generate src/osmo_inline/isaaclab_tasks.json: the task ids each Isaac Lab release registers
and the ids Isaac Lab 3.0 renamed, read from the releases' own ``gym.register`` calls.

    .venv/bin/python scripts/isaaclab_task_names.py   # after scripts/setup.sh

Reads the ``isaaclab`` wheels in .ci/deps (``isaaclab_tasks`` and, on 3.0, ``isaaclab_contrib``
sources) with ``ast``: nothing is imported. A 2.x id and a 3.0 id name the same task when both
register the same env cfg class (``env_cfg_entry_point`` "...:<Class>") as the same variant
(play, direct or plain), or the 3.0 id is the 2.x id without ``-v0``; 3.0's ``deprecated``
aliases ("--task <new id>") are renames too.
"""

from __future__ import annotations

import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEPS = ROOT / ".ci" / "deps"
OUTPUT = ROOT / "src" / "osmo_inline" / "isaaclab_tasks.json"
WHEELS = {"2.2": "isaaclab-2.2.0", "2.3": "isaaclab-2.3.2.post1", "3.0": "isaaclab-3.0.0"}


def task_trees(release: str) -> list[Path]:
    wheel = DEPS / WHEELS[release]
    if release == "3.0":
        return [wheel / "isaaclab_tasks", wheel / "isaaclab_contrib"]
    return [wheel / "isaaclab" / "source" / "isaaclab_tasks" / "isaaclab_tasks"]


def literal_tail(node: ast.expr) -> str:
    """The constant text of a str or f-string (its last constant part for an f-string)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = [p.value for p in node.values if isinstance(p, ast.Constant)]
        return parts[-1] if parts else ""
    return ""


def registrations(release: str) -> dict[str, dict[str, str]]:
    """{task id: {"env_cfg": class name, "alias_of": new id or ""}} for literal ids."""
    found: dict[str, dict[str, str]] = {}
    for tree in task_trees(release):
        for path in sorted(tree.rglob("*.py")):
            if "/test" in str(path):
                continue
            module = ast.parse(path.read_text(encoding="utf-8"))
            for call in ast.walk(module):
                if isinstance(call, ast.Call) and _is_register(call.func):
                    entry = _registration(call)
                    if entry:
                        found[entry[0]] = entry[1]
    return found


def _is_register(func: ast.expr) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == "register") or (
        isinstance(func, ast.Name) and func.id == "register")


def _registration(call: ast.Call) -> tuple[str, dict[str, str]] | None:
    keywords = {k.arg: k.value for k in call.keywords}
    task = keywords.get("id")
    if not (isinstance(task, ast.Constant) and isinstance(task.value, str)):
        return None
    info = {"env_cfg": "", "alias_of": ""}
    kwargs = keywords.get("kwargs")
    if isinstance(kwargs, ast.Dict):
        for key, value in zip(kwargs.keys, kwargs.values, strict=True):
            name = key.value if isinstance(key, ast.Constant) else None
            if name == "env_cfg_entry_point":
                info["env_cfg"] = literal_tail(value).rpartition(":")[2]
            elif name == "deprecated" and isinstance(value, ast.Dict):
                for k, v in zip(value.keys, value.values, strict=True):
                    if isinstance(k, ast.Constant) and k.value == "alias":
                        info["alias_of"] = literal_tail(v).replace("--task=", "--task ") \
                            .split("--task ")[-1].split()[0]
    return task.value, info


def renames(old: dict[str, dict[str, str]], new: dict[str, dict[str, str]]) -> dict[str, str]:
    """2.x id -> 3.0 id, for ids 3.0 no longer registers under the old name."""
    by_cfg: dict[tuple[str, bool, bool], list[str]] = defaultdict(list)
    for task, info in new.items():
        if info["env_cfg"] and not info["alias_of"]:
            by_cfg[_variant(info["env_cfg"], task)].append(task)
    mapping = {task: info["alias_of"] for task, info in new.items() if info["alias_of"]}
    for task, info in old.items():
        if task in new:
            continue
        if task.removesuffix("-v0") in new:  # only the version suffix went
            mapping[task] = task.removesuffix("-v0")
            continue
        candidates = by_cfg.get(_variant(info["env_cfg"], task), [])
        if len(candidates) == 1:
            mapping[task] = candidates[0]
    return dict(sorted(mapping.items()))


def _variant(env_cfg: str, task: str) -> tuple[str, bool, bool]:
    """The same env cfg class is registered as a play, a direct and a plain variant."""
    return env_cfg, "-Play" in task, "-Direct" in task


def main() -> int:
    found = {release: registrations(release) for release in WHEELS}
    old = {**found["2.2"], **found["2.3"]}
    table = {
        "generated_by": "scripts/isaaclab_task_names.py from the isaaclab "
                        + ", ".join(w.removeprefix("isaaclab-") for w in WHEELS.values())
                        + " wheels (gym.register calls)",
        "releases": {release: sorted(tasks) for release, tasks in found.items()},
        "renamed_in_3_0": renames(old, found["3.0"]),
    }
    OUTPUT.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    counts = ", ".join(f"{r}: {len(t)}" for r, t in found.items())
    print(f"{OUTPUT.relative_to(ROOT)}: {counts} ids; {len(table['renamed_in_3_0'])} renames",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
