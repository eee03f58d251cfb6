"""Agent configurations for gymnasium tasks, version-neutral YAML (see ``default.yaml``).

Lookup, for task ``T``: ``default.yaml``, then ``T.yaml`` from this directory merged over it
key by key (nested mappings merge, everything else replaces). Users customise a task by adding
``src/training/agents/<T>.yaml`` to the payload. RSL-RL reads this directory; other backends
read a subdirectory named after their library (``agents/skrl/``) by the same rule. Isaac Lab
tasks do not use these files: they bring their own agent cfg through the gym registry
(``rsl_rl_cfg_entry_point``, ``skrl_cfg_entry_point``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

AGENTS_DIR = Path(__file__).resolve().parent


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: an agent cfg must be a YAML mapping, got {type(data).__name__}")
    return data


def load_agent_cfg(task: str, agents_dir: Path = AGENTS_DIR) -> dict[str, Any]:
    """The version-neutral agent cfg for ``task``: the default with the task's file merged in."""
    cfg = _read(agents_dir / "default.yaml")
    override = agents_dir / f"{task}.yaml"
    if override.is_file():
        cfg = _merge(cfg, _read(override))
    return cfg
