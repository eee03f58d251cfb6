"""Build the environment a task names, wrapped for a backend, with its agent cfg.

The launcher calls exactly::

    handle = make_env(task, backend=backend, num_envs=16, seed=None, device="cpu")
    handle.env             # the env as the backend's runner takes it
    handle.agent_cfg       # the backend's agent cfg, in the installed library's schema
    handle.kind            # "gymnasium" | "isaaclab"
    handle.max_iterations  # the agent cfg's defaults; the launcher decides what is used
    handle.save_interval
    handle.seed            # the seed the env and the agent use
    handle.cfg_files       # {"params/env.yaml": ..., "params/agent.yaml": ...}: resolved cfgs
    handle.close()

First the payload's own task packages are imported (:mod:`training.envs.tasks`: every package
under ``training/tasks/``, then ``task_modules``), so their ids are registered. Then:

- a registered gymnasium id (``HalfCheetah-v5``, ``Ant-v5``, ``InvertedPendulum-v5`` ...):
  ``backend.make_gym_env`` (our adapter and the agent cfg from ``training/agents``);
  a payload task registered with an ``env_cfg_entry_point`` kwarg is an Isaac Lab task;
- anything else when ``isaaclab`` is importable: :mod:`training.envs.isaaclab` (the app is
  already up, see training.app; the task's registered env and agent cfgs, Isaac Lab's own
  wrapper for the backend);
- otherwise :class:`TaskError`, one line saying what would work.

``seed=None`` keeps the agent cfg's seed; either way the env is seeded with the cfg's seed.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from training.store import first_line as one_line  # the envs' and backends' name

if TYPE_CHECKING:
    from training.backends.base import Backend
    from training.video import VideoSettings

EnvKind = Literal["gymnasium", "isaaclab"]
SUGGESTED_GYM_TASKS = ("HalfCheetah-v5", "Ant-v5", "Hopper-v5", "InvertedPendulum-v5")


class TaskError(ValueError):
    """A task that cannot be built here; the message is one line that says what would work."""


@dataclass
class EnvHandle:
    env: Any
    agent_cfg: Any
    kind: EnvKind
    max_iterations: int  # the agent cfg's default number of learning iterations
    save_interval: int  # the agent cfg's default: iterations between checkpoints
    seed: int
    _close: Callable[[], None]
    # The resolved cfgs as files for the run ("params/env.yaml": text, ...); empty: the launcher
    # writes params/agent.yaml from agent_cfg.
    cfg_files: dict[str, str] = field(default_factory=dict)
    # Isaac Lab with --video: the folders the env's recorders write mp4 files into.
    video_folders: tuple[Path, ...] = ()
    closed: bool = False

    def close(self) -> None:
        """Close the env once (an evaluation closes it early: its recorders save on close)."""
        if not self.closed:
            self.closed = True
            self._close()


def isaaclab_installed() -> bool:
    return importlib.util.find_spec("isaaclab") is not None


def make_env(
    task: str, *, backend: Backend, num_envs: int, seed: int | None, device: str,
    task_modules: Sequence[str] = (), overrides: Mapping[str, Any] | None = None,
    video: VideoSettings | None = None,
) -> EnvHandle:
    """``overrides``: ``agent.<path>`` / ``env.<path>`` -> value (training.overrides), applied
    to the resolved cfgs before anything is trained; an unknown path is a TaskError.
    ``video`` (--video): an Isaac Lab env is made to render and wrapped to record
    (training.video); a gymnasium task's videos render apart from the training env."""
    overrides = dict(overrides or {})
    if num_envs < 1:
        raise TaskError(f"num_envs must be at least 1, got {num_envs}")
    import gymnasium

    from training.envs.tasks import register_payload_tasks

    register_payload_tasks(task_modules)  # after the app is up: the launcher starts it first
    spec = gymnasium.registry.get(task)
    if spec is not None and "env_cfg_entry_point" not in spec.kwargs:  # not an Isaac Lab task
        env_cfg = resolve_gym_env_cfg(task, num_envs, overrides)
        agent_only = {key: value for key, value in overrides.items() if key.startswith("agent.")}
        env_kwargs = {f"env.{key}": value for key, value in env_cfg.items() if key != "num_envs"}
        handle = backend.make_gym_env(task, num_envs=env_cfg["num_envs"], seed=seed,
                                      device=device, overrides={**agent_only, **env_kwargs})
        return with_cfg_files(handle, {"id": task, "seed": handle.seed, **env_cfg})
    if isaaclab_installed():
        from training.envs.isaaclab import make_isaaclab_env

        return make_isaaclab_env(task, backend=backend, num_envs=num_envs, seed=seed,
                                 device=device, overrides=overrides, video=video)
    if spec is not None or task.startswith("Isaac"):
        raise TaskError(
            f"{task} is an Isaac Lab task but isaaclab is not installed here: run it in an "
            "Isaac Lab image, or try a gymnasium task such as HalfCheetah-v5"
        )
    raise TaskError(f"unknown task {task!r}: {_suggestion(task, list(gymnasium.registry))}")


def with_cfg_files(handle: EnvHandle, env_cfg: Mapping[str, Any]) -> EnvHandle:
    """A gymnasium handle whose run artifacts hold the resolved cfgs, params/env.yaml (the
    env cfg as make_env resolved it: the backends' wrapped envs do not all carry it) beside
    params/agent.yaml, as for Isaac Lab tasks."""
    import yaml

    files = {"params/env.yaml": yaml.safe_dump(dict(env_cfg), sort_keys=False)}
    if isinstance(handle.agent_cfg, Mapping):
        files["params/agent.yaml"] = yaml.safe_dump(dict(handle.agent_cfg), sort_keys=False)
    handle.cfg_files = {**files, **handle.cfg_files}
    return handle


def _suggestion(task: str, known: list[str]) -> str:
    close = difflib.get_close_matches(task, known, n=3)
    if close:
        return f"did you mean {', '.join(close)}?"
    return (
        "use a registered gymnasium id such as "
        + ", ".join(SUGGESTED_GYM_TASKS)
        + " (Isaac Lab tasks need an Isaac Lab image)"
    )




def gym_env_kwargs(task: str) -> dict[str, Any]:
    """The keyword arguments a gymnasium task's env takes, with the values it gets by default
    (the env class's signature, then the registration's kwargs): what ``env.<name>`` sets."""
    import inspect

    import gymnasium
    from gymnasium.envs.registration import load_env_creator

    spec = gymnasium.spec(task)
    creator = spec.entry_point if callable(spec.entry_point) else \
        load_env_creator(spec.entry_point)
    kwargs: dict[str, Any] = {}
    try:
        parameters = inspect.signature(creator).parameters.values()
    except (TypeError, ValueError):  # a builtin or C entry point: only its registered kwargs
        parameters = []
    for parameter in parameters:
        if parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            empty = parameter.default is inspect.Parameter.empty
            kwargs[parameter.name] = None if empty else parameter.default
    return {**kwargs, **spec.kwargs}


def resolve_gym_env_cfg(task: str, num_envs: int, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``num_envs`` and the env kwargs that ``env.*`` overrides set, typed and checked
    (TaskError naming the closest keys for an unknown one)."""
    from training.overrides import apply_overrides, select

    env_cfg: dict[str, Any] = {"num_envs": num_envs, **gym_env_kwargs(task)}
    apply_overrides(env_cfg, overrides, "env")
    if not isinstance(env_cfg["num_envs"], int) or env_cfg["num_envs"] < 1:
        raise TaskError(f"env.num_envs must be a whole number of at least 1, got "
                        f"{env_cfg['num_envs']!r}")
    return {"num_envs": env_cfg["num_envs"],
            **{key: env_cfg[key] for key in select(overrides, "env") if key != "num_envs"}}


def seed_offset() -> int:
    from training.distributed import seed_offset as global_rank

    return global_rank()


def read_agent_cfg(task: str, seed: int | None, library: str = "", *,
                   overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Our agent cfg for a gymnasium task (training/agents[/<library>]), seed applied, then the
    ``agent.*`` overrides (version-neutral paths); TaskError when the payload's YAML is broken
    or an override names a key the cfg does not have."""
    import yaml

    from training.agents import AGENTS_DIR, load_agent_cfg

    try:
        neutral = load_agent_cfg(task, AGENTS_DIR / library if library else AGENTS_DIR)
    except (OSError, ValueError, yaml.YAMLError) as error:  # a broken YAML in the payload
        raise TaskError(f"cannot read the agent cfg for {task}: {one_line(error)}") from error
    if seed is not None:
        neutral["seed"] = seed
    neutral["seed"] = int(neutral["seed"]) + seed_offset()  # + global rank (distributed)
    if overrides:
        from training.overrides import apply_overrides

        directory = f"training/agents/{library}" if library else "training/agents"
        apply_overrides(neutral, overrides, "agent",
                        whose=f"{library or 'rsl-rl'}'s agent cfg, {directory}")
    return neutral
