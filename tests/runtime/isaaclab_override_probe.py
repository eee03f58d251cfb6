"""Probe, run as a subprocess under one Isaac Lab release: cfg overrides through the real path.

``python isaaclab_override_probe.py CASES_JSON``: each case ``{"task", "backend", "overrides",
"read"}`` goes through :func:`training.envs.make_env` -> :mod:`training.envs.isaaclab` with
that release's real ``isaaclab_tasks`` registry and cfgs (``parse_env_cfg`` /
``load_cfg_from_registry``; 3.0 ``resolve_task_config``); prints one JSON line per case:
``{"task", "backend", "error", "env": {path: [type, value]}, "agent": {path: [type, value]}}``
with the values at the ``read`` paths of the env cfg that ``gymnasium.make`` was given and of
the agent cfg the backend was given to wrap the env with.

Stood in, as in isaaclab_cfg_probe.py: ``gymnasium.make`` (building the env needs Isaac Sim)
returns a placeholder that keeps the cfg; the backend is the real module's name and entry
point but its ``wrap_isaaclab_env`` only records the agent cfg (Isaac Lab's wrappers need a
running env). On 2.x, Isaac Sim's own modules are support.isaacsim_modules (imports only).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from training.envs import EnvHandle, TaskError, make_env
from training.envs import isaaclab_compat as compat

NUM_ENVS = 4


class _Placeholder:
    """What gymnasium.make returns: no simulator, the env cfg it was given."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    unwrapped = property(lambda self: self)

    def close(self) -> None:
        pass


class RecordingBackend:
    """A backend module's name and Isaac Lab entry point; wrapping records the agent cfg."""

    def __init__(self, name: str) -> None:
        from training.backends import load_backend

        real = load_backend(name)
        self.NAME, self.ISAACLAB_CFG_ENTRY_POINT = real.NAME, real.ISAACLAB_CFG_ENTRY_POINT
        self.versions = real.versions
        self.agent_cfg: Any = None

    def wrap_isaaclab_env(self, env: Any, agent_cfg: Any, *, device: str) -> EnvHandle:
        self.agent_cfg = agent_cfg
        return EnvHandle(env=env, agent_cfg=agent_cfg, kind="isaaclab", max_iterations=1,
                         save_interval=1, seed=0, _close=env.close)


def read(cfg: Any, path: str) -> list[Any]:
    """[type name, value as JSON] at a dotted path of a dict or a cfg object."""
    node = cfg
    for key in path.split("."):
        node = node[int(key) if isinstance(node, list | tuple) else key] \
            if isinstance(node, dict | list | tuple) else getattr(node, key)
    value = list(node) if isinstance(node, tuple) else node
    return [type(node).__name__, value if isinstance(value, str | int | float | bool | list
                                                    | None) else repr(value)]


def probe(case: dict[str, Any]) -> dict[str, Any]:
    import gymnasium

    made: list[_Placeholder] = []
    gymnasium.make = lambda task, cfg=None, **kwargs: made.append(_Placeholder(cfg)) or made[-1]
    backend = RecordingBackend(case["backend"])
    result: dict[str, Any] = {"task": case["task"], "backend": case["backend"], "error": None}
    try:
        make_env(case["task"], backend=backend, num_envs=NUM_ENVS, seed=None, device="cpu",
                 overrides=case["overrides"])
    except TaskError as error:
        return result | {"error": f"{type(error).__name__}: {error}",
                         "task_error": isinstance(error, TaskError)}
    env_paths = [p[len("env."):] for p in case["read"] if p.startswith("env.")]
    agent_paths = [p[len("agent."):] for p in case["read"] if p.startswith("agent.")]
    return result | {"env": {p: read(made[-1].cfg, p) for p in env_paths},
                     "agent": {p: read(backend.agent_cfg, p) for p in agent_paths}}


if __name__ == "__main__":
    if compat.release() != "3.0":
        from support import isaacsim_modules

        isaacsim_modules.install()
    for case in json.loads(sys.argv[1]):
        print(json.dumps(probe(case)), flush=True)
