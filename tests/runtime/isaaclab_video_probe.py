"""Probe, run as a subprocess under Isaac Lab 3.0's real sources (support.isaaclab_releases,
no app): ``make_isaaclab_env`` with and without ``--video`` on a real registered task.

``python isaaclab_video_probe.py TASK``: prints one JSON line per (backend, video) case:
``{"backend", "video", "make_kwargs", "recorders", "folders", "steps_per_iteration"}``.

The task's cfgs come from 3.0's real registry (``resolve_task_config``); only what needs the
simulator is stood in, as in isaaclab_cfg_probe.py: ``gymnasium.make`` returns a placeholder
env (it records the keyword arguments and the env cfg's ``video_recorders`` it was given) and
the backend's ``wrap_isaaclab_env`` returns a bare handle (Isaac Lab's own wrappers need a
running env).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import gymnasium

from training.envs import EnvHandle
from training.envs.isaaclab import make_isaaclab_env
from training.video import VideoSettings

INTERVAL, LENGTH = 3, 50
made: dict[str, Any] = {}


class _Placeholder:
    unwrapped = property(lambda self: self)

    def close(self) -> None:
        pass


def _make(task: str, cfg: Any, **kwargs: Any) -> _Placeholder:
    made.clear()
    made["kwargs"] = kwargs
    made["recorders"] = [
        {"source": r.source, "output_dir": r.output_dir, "video_length": r.video_length,
         "video_interval": r.video_interval} for r in getattr(cfg, "video_recorders", None) or []]
    return _Placeholder()


class StandInBackend:
    """The names make_isaaclab_env reads of a backend; wrap_isaaclab_env keeps the agent cfg."""

    def __init__(self, name: str) -> None:
        self.NAME = name
        self.ISAACLAB_CFG_ENTRY_POINT = f"{name}_cfg_entry_point"
        self.agent_cfg: Any = None

    def versions(self) -> dict[str, str]:
        return {"rsl_rl_version": "5.5.1"} if self.NAME == "rsl_rl" else {"skrl_version": "2.1.1"}

    def wrap_isaaclab_env(self, env: Any, agent_cfg: Any, *, device: str) -> EnvHandle:
        self.agent_cfg = agent_cfg
        return EnvHandle(env=env, agent_cfg={}, kind="isaaclab", max_iterations=1,
                         save_interval=1, seed=1, _close=env.close)


def steps_per_iteration(backend: StandInBackend) -> int:
    cfg = backend.agent_cfg
    return int(cfg["agent"]["rollouts"]) if isinstance(cfg, dict) else int(cfg.num_steps_per_env)


def main(task: str) -> None:
    gymnasium.make = _make
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "videos"
        for name in ("rsl_rl", "skrl"):
            for video in (None, VideoSettings(length=LENGTH, interval=INTERVAL, folder=folder)):
                backend = StandInBackend(name)
                handle = make_isaaclab_env(task, backend=backend, num_envs=4, seed=None,
                                           device="cpu", video=video)
                print(json.dumps({
                    "backend": name, "video": video is not None, "folder": str(folder),
                    "make_kwargs": made["kwargs"], "recorders": made["recorders"],
                    "folders": [str(path) for path in handle.video_folders],
                    "steps_per_iteration": steps_per_iteration(backend),
                }), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
