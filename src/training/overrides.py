"""Command-line overrides of the agent and env cfgs: ``agent.<path>=<value>``, ``env.<path>=...``.

They reach the launcher as ``--override KEY=VALUE`` (repeatable) or the task's environment
variable ``CFG_OVERRIDES``, a JSON object ``{"agent.algorithm.learning_rate": "3e-4", ...}``
that the client writes from the tokens after ``--`` (one variable: no argv limit is touched).
A value is the text as the user wrote it and is typed here, as YAML reads it (``4096`` int,
``0.5`` float, ``true`` bool, ``[64, 64]`` list, ``null``; anything else a string), with one
addition: ``3e-4``, which PyYAML's YAML 1.1 rules read as a string, is a float. A JSON value
that is not a string is taken as it is.

Where a path points:

- ``agent.`` -- the agent cfg: for gymnasium tasks our version-neutral YAML
  (``training/agents/default.yaml`` + ``<task>.yaml``, e.g. ``agent.actor.hidden_dims``), before
  the backend turns it into its library's schema, so one path works for every rsl-rl
  version; for Isaac Lab tasks the task's registered agent cfg object
  (``agent.algorithm.learning_rate``);
- ``env.`` -- for Isaac Lab tasks the env cfg object from ``parse_env_cfg``
  (``env.scene.num_envs``); for gymnasium tasks ``env.num_envs`` or a keyword argument of the
  task's env class, passed to ``gymnasium.make_vec`` (``env.forward_reward_weight=2.0``).

A path that does not exist is an :class:`OverrideError` (a TaskError: exit 2, one line) that
names the closest existing keys; nothing is trained. This module imports only the standard
library at import time (it is read before the dependency check); PyYAML when typing values.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from training.envs import TaskError

PREFIXES = ("agent", "env")
ENV_VARIABLE = "CFG_OVERRIDES"
# A dotted path of names (list items by index: agent.actor.hidden_dims.0).
KEY = re.compile(r"(agent|env)(\.[A-Za-z_][A-Za-z0-9_]*|\.[0-9]+)+")
# Floats PyYAML (YAML 1.1) leaves as strings: 3e-4, 1E5, -2.5e+3 written without a dot.
_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
PARAM_PREFIX = "override."


class OverrideError(TaskError):
    """A malformed override or a path that does not exist (exit 2, one line)."""


def is_override_key(key: str) -> bool:
    return KEY.fullmatch(key) is not None


def parse_assignment(token: str) -> tuple[str, str]:
    """``"agent.a.b=3"`` -> ``("agent.a.b", "3")``; OverrideError when it is not one."""
    key, equals, value = token.partition("=")
    if not equals or not is_override_key(key.strip()):
        raise OverrideError(f"bad override {token!r}: write agent.<path>=<value> or "
                            "env.<path>=<value> (e.g. agent.algorithm.learning_rate=3e-4)")
    return key.strip(), value


def from_json(text: str) -> dict[str, Any]:
    """The overrides of ``CFG_OVERRIDES`` (empty text: none); OverrideError when malformed."""
    if not text.strip():
        return {}
    try:
        loaded = json.loads(text)
    except ValueError as error:
        raise OverrideError(f"{ENV_VARIABLE} is not JSON: {error}") from None
    if not isinstance(loaded, dict):
        raise OverrideError(f"{ENV_VARIABLE} must be a JSON object of path: value")
    for key in loaded:
        if not is_override_key(key):
            raise OverrideError(f"{ENV_VARIABLE}: bad override path {key!r}: it must start "
                                "with agent. or env. and be dotted names")
    return loaded


def typed(value: Any) -> Any:
    """A value as the user meant it: text is read as YAML reads it (see the module doc)."""
    if not isinstance(value, str):
        return value
    if _EXPONENT_FLOAT.fullmatch(value.strip()):
        return float(value)
    import yaml  # lazy: the launcher reads its config before the dependency check

    try:
        return yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        return value  # not YAML (e.g. "a: b: c"): the text itself


def select(overrides: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The overrides under ``prefix`` ("agent" or "env"), keyed by their path below it."""
    start = prefix + "."
    return {key[len(start):]: value for key, value in overrides.items()
            if key.startswith(start)}


def as_params(overrides: Mapping[str, Any]) -> dict[str, str]:
    """MLflow params for a run: ``override.agent.algorithm.learning_rate`` -> ``"0.0003"``."""
    params = {}
    for key, value in overrides.items():
        value = typed(value)
        params[PARAM_PREFIX + key] = value if isinstance(value, str) else json.dumps(value)
    return params


def _children(node: Any) -> list[str]:
    """The keys one can address below ``node``: mapping keys, or a cfg object's fields."""
    if isinstance(node, Mapping):
        return [str(key) for key in node]
    if isinstance(node, list | tuple):
        return [str(index) for index in range(len(node))]
    if dataclasses.is_dataclass(node):  # Isaac Lab configclasses are dataclasses
        return [f.name for f in dataclasses.fields(node)]
    return [name for name in vars(node) if not name.startswith("_")] \
        if hasattr(node, "__dict__") else []


def _get(node: Any, key: str) -> Any:
    if isinstance(node, Mapping):
        return node[key]
    if isinstance(node, list | tuple):
        return node[int(key)]
    return getattr(node, key)


def _set(node: Any, key: str, value: Any) -> None:
    if isinstance(node, dict):
        node[key] = value
    elif isinstance(node, list):
        node[int(key)] = value
    else:
        setattr(node, key, value)


def _unknown(prefix: str, walked: list[str], key: str, node: Any, whose: str) -> OverrideError:
    here = ".".join([prefix, *walked])
    options = _children(node)
    close = difflib.get_close_matches(key, options, n=3, cutoff=0.5)
    if close:
        hint = "did you mean " + ", ".join(f"{here}.{name}" for name in close) + "?"
    elif options:
        hint = f"keys under {here}: " + ", ".join(options[:12]) + (
            ", ..." if len(options) > 12 else "")
    else:
        hint = f"{here} has no keys below it"
    return OverrideError(f"unknown override {here}.{key}: {hint}"
                         + (f" ({whose})" if whose else ""))


def _is_section(node: Any) -> bool:
    """A mapping or a cfg object (Isaac Lab configclasses are dataclasses): keys below it."""
    return isinstance(node, Mapping) or (dataclasses.is_dataclass(node)
                                         and not isinstance(node, type))


def _check_type(path: str, old: Any, new: Any) -> None:
    """A number stays a number and a bool a bool: `learning_rate=3e-4x` is a typo, not a str.
    A section stays a section and a list a list: `agent.algorithm=1` would reach the library
    as a raw TypeError (or, for skrl's dict cfg, be taken); an int takes no fraction."""
    if old is None or new is None:
        return
    if _is_section(old) and not (isinstance(old, Mapping) and isinstance(new, Mapping)):
        # a cfg object's field takes only its own type: set its keys one by one instead
        keys = _children(old)
        example = f", e.g. {path}.{keys[0]}=..." if keys else ""
        raise OverrideError(f"override {path}={new!r}: {path} is a section, not a value; "
                            f"override a key below it{example}")
    if isinstance(old, list | tuple) and not isinstance(new, list | tuple):
        raise OverrideError(f"override {path}={new!r}: expected a list like its current "
                            f"value {list(old)!r}")
    if isinstance(old, bool) != isinstance(new, bool) or (
            isinstance(old, int | float) and not isinstance(new, int | float)):
        raise OverrideError(f"override {path}={new!r}: expected a {type(old).__name__} "
                            f"like its current value {old!r}")
    if isinstance(old, int) and not isinstance(old, bool) and isinstance(new, float) \
            and not new.is_integer():
        raise OverrideError(f"override {path}={new!r}: expected an int like its current "
                            f"value {old!r}, not a fraction")


def check_paths(cfg: Any, paths: Iterable[str], prefix: str, *, whose: str = "") -> None:
    """OverrideError for the first path (below ``prefix``) that ``cfg`` does not have."""
    for path in paths:
        _walk(cfg, path, prefix, whose)


def _walk(cfg: Any, path: str, prefix: str, whose: str) -> tuple[Any, str]:
    """The node that holds the last key of ``path``, and that key."""
    parts = path.split(".")
    node = cfg
    for depth, key in enumerate(parts):
        if key not in _children(node):
            raise _unknown(prefix, parts[:depth], key, node, whose)
        if depth == len(parts) - 1:
            return node, key
        node = _get(node, key)
    raise AssertionError("unreachable: a path has at least one key")


def apply_overrides(cfg: Any, overrides: Mapping[str, Any], prefix: str, *,
                    whose: str = "") -> dict[str, Any]:
    """Set every ``<prefix>.<path>`` override on ``cfg`` (a dict or a cfg object), in place.

    Every path is checked before anything is set, so a refused override changes nothing.
    ``whose`` names the cfg in a refusal ("skrl's agent cfg, training/agents/skrl"): the
    backends' cfgs differ in shape. Returns the typed values that were set, keyed by their
    full path."""
    chosen = {path: typed(value) for path, value in select(overrides, prefix).items()}
    targets = {path: _walk(cfg, path, prefix, whose) for path in chosen}
    for path, (node, key) in targets.items():
        current = _get(node, key)
        _check_type(f"{prefix}.{path}", current, chosen[path])
        if isinstance(current, tuple) and isinstance(chosen[path], list):
            # YAML has no tuples: `[0, 0, 2.5]` for a tuple field (Isaac Lab's positions,
            # colours, ranges) stays a tuple, as the cfg class declares it
            chosen[path] = tuple(chosen[path])
    for path, (node, key) in targets.items():
        if isinstance(node, tuple):
            raise OverrideError(f"override {prefix}.{path}: its parent is a tuple and cannot "
                                "change; override the whole value instead")
        _set(node, key, chosen[path])
    return {f"{prefix}.{path}": value for path, value in chosen.items()}
