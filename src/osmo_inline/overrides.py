"""Cfg overrides after `--` (`agent.<path>=<value>`, `env.<path>=<value>`) on the client side.

The client does not type or apply them: it carries the text as written to the task in one
environment variable, `CFG_OVERRIDES` (a JSON object; the runtime's training/overrides.py
types and applies it), and refuses at once, `--dry-run` included, an `agent.` path that our
own agent cfgs (`<source>/agents[/skrl]/default.yaml` + `<task>.yaml`, what gymnasium tasks
train with) do not have, or a value that does not fit the default it replaces (a number for a
number, a mapping for a section, a list for a list, no fraction for an int: the runtime's
rule, said again here because the client never imports the runtime), and an `env.num_envs`
that is no positive whole number. Isaac Lab tasks bring their cfgs from Isaac Lab's registry,
which only the container knows: their paths, and every other `env.` path, are checked there,
before training.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from osmo_inline.errors import BadInput

PREFIXES = ("agent.", "env.")
KEY = re.compile(r"(agent|env)(\.[A-Za-z_][A-Za-z0-9_]*|\.[0-9]+)+")
ENV_VARIABLE = "CFG_OVERRIDES"
# Jinja markers and the single quote that would end the YAML string the template puts the JSON
# in: written as JSON escapes, which mean the same characters to the runtime's json.loads. A
# structural "{" is always followed by '"' or "}", so only a "{" inside a string can match.
_UNSAFE_IN_SPEC = re.compile(r"'|\{(?=[{%#])")


def is_override_token_key(key: str) -> bool:
    """A key after `--` that names a cfg path (the template values' keys are plain names)."""
    return key.startswith(PREFIXES)


def check_key(key: str, token: str) -> None:
    if KEY.fullmatch(key) is None:
        raise BadInput(f"bad override {token!r} after --: write agent.<path>=<value> or "
                       "env.<path>=<value>, the path dotted names (agent.algorithm.learning_rate)")


def to_spec_json(overrides: Mapping[str, str]) -> str:
    """The overrides as JSON text safe inside a single-quoted YAML string that OSMO renders
    with Jinja again (ASCII only, no quote, no Jinja marker); "" when there are none."""
    if not overrides:
        return ""
    text = json.dumps(dict(overrides), ensure_ascii=True, separators=(",", ":"))
    return _UNSAFE_IN_SPEC.sub(lambda m: f"\\u{ord(m.group(0)[0]):04x}", text)


def _agents_dir(source: Path, backend: str) -> Path:
    # The runtime's rule (training/agents/__init__.py): rsl-rl reads agents/, another backend
    # the subdirectory named after its library.
    return source / "agents" if backend == "rsl_rl" else source / "agents" / backend


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        both_maps = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merged(merged[key], value) if both_maps else value
    return merged


def read_agent_defaults(source: Path, task: str, backend: str) -> dict[str, Any] | None:
    """Our agent cfg for a gymnasium task as the runtime will read it; None for Isaac Lab
    tasks or a source tree without one (the container checks those)."""
    import yaml

    directory = _agents_dir(source, backend)
    if task.startswith("Isaac") or not (directory / "default.yaml").is_file():
        return None
    try:
        cfg = yaml.safe_load((directory / "default.yaml").read_text()) or {}
        task_file = directory / f"{task}.yaml"
        if task_file.is_file():
            cfg = _merged(cfg, yaml.safe_load(task_file.read_text()) or {})
    except (OSError, yaml.YAMLError) as error:
        raise BadInput(f"cannot read the agent cfg in {directory}: "
                       f"{' '.join(str(error).split())}") from None
    return cfg if isinstance(cfg, dict) else None


def _which_cfg(backend: str) -> str:
    """Whose agent cfg a refusal checked: the two backends' gymnasium cfgs differ in shape
    (`agent.algorithm.learning_rate` for rsl-rl, `agent.agent.learning_rate` for skrl)."""
    other = "skrl" if backend == "rsl_rl" else "rsl_rl"
    library = backend.replace("_", "-")
    where = "src/training/agents" if backend == "rsl_rl" else f"src/training/agents/{backend}"
    return f"{library}'s agent cfg, {where}; {other.replace('_', '-')} paths need -b {other}"


def check_agent_paths(overrides: Mapping[str, str], cfg: Mapping[str, Any],
                      backend: str) -> None:
    """BadInput for the first `agent.` path `cfg` (the agent cfg of `backend`) does not
    have, naming the closest keys, or whose value does not fit the default there; and for an
    `env.num_envs` that is not a positive whole number (what a gymnasium task's env takes)."""
    for key, text in overrides.items():
        if key == "env.num_envs":
            count = value_as_typed(text)
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise BadInput(f"override env.num_envs={text}: the env count must be a "
                               "positive whole number")
        if not key.startswith("agent."):
            continue
        node: Any = cfg
        parts = key.split(".")[1:]
        for depth, part in enumerate(parts):
            options = [str(k) for k in node] if isinstance(node, dict) else \
                [str(i) for i in range(len(node))] if isinstance(node, list) else []
            if part not in options:
                here = ".".join(["agent", *parts[:depth]])
                import difflib  # only on this error path: keeps every dry run's start light

                close = difflib.get_close_matches(part, options, n=3, cutoff=0.5)
                hint = ("did you mean " + ", ".join(f"{here}.{c}" for c in close) + "?") \
                    if close else (f"keys under {here}: " + ", ".join(options)
                                   if options else f"{here} has no keys below it")
                raise BadInput(f"unknown override {here}.{part}: {hint} "
                               f"({_which_cfg(backend)})")
            node = node[part] if isinstance(node, dict) else node[int(part)]
        misfit = _misfit(node, value_as_typed(text))
        if misfit:
            raise BadInput(f"override {key}={text}: {misfit} ({_which_cfg(backend)})")


def value_as_typed(text: str) -> Any:
    """The value as the runtime will type it (YAML, and `3e-4` as a number, which YAML 1.1
    leaves as text): enough to compare it with a default here."""
    import yaml

    try:
        loaded = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text
    if isinstance(loaded, str) and re.fullmatch(r"\s*[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+\s*",
                                                loaded):
        return float(loaded)
    return loaded


def _misfit(default: Any, given: Any) -> str:
    """Why `given` cannot replace `default` in the agent cfg ("" when it can): the runtime
    refuses the same in the container (training/overrides.py), after the GPUs are booked."""
    if default is None or given is None:
        return ""
    if isinstance(default, dict):
        return "" if isinstance(given, dict) else "a section takes a mapping, not a value; " \
            "override a key below it"
    if isinstance(default, list):
        return "" if isinstance(given, list) else f"expected a list like {default!r}"
    if isinstance(default, bool) != isinstance(given, bool):
        return f"expected a {type(default).__name__} like {default!r}"
    if isinstance(default, int | float) and not isinstance(given, int | float):
        return f"expected a number like {default!r}"
    if isinstance(default, int) and isinstance(given, float) and not given.is_integer():
        return f"expected a whole number like {default!r}"
    return ""
