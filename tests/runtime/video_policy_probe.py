"""Probe, run under one rsl-rl or skrl version (support.lib_versions): the policy a backend
hands to ``TrainHooks.policy_ready``, taken as training.video takes it, at an iteration
boundary while training goes on.

``python video_policy_probe.py BACKEND OUT_DIR``: trains two iterations of InvertedPendulum-v5
(4 envs) with the real backend; after the first (in ``on_iteration``, where the launcher forks
its renderer) it takes the policy, feeds it one observation, and after training feeds that
copy and a policy taken then the same observation; records a short real video with the copy.
Writes ``OUT_DIR/scenario.json``: ``{"version", "actions", "same", "copy_unchanged",
"trained_on", "on_cpu", "frames", "video"}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from training.backends import load_backend
from training.backends.base import TrainHooks
from training.envs import make_env
from training.video import record_video

TASK = "InvertedPendulum-v5"


def main(backend_name: str, out: Path) -> None:
    backend = load_backend(backend_name)
    handle = make_env(TASK, backend=backend, num_envs=4, seed=3, device="cpu")
    received, taken = [], []
    obs = torch.tensor([[0.0, 0.05, 0.0, 0.1]])

    def on_iteration(iteration: int, metrics: dict) -> None:
        if iteration == 0:
            policy = received[0]()
            with torch.inference_mode():
                taken.append((policy, policy(obs), policy(obs)))

    hooks = TrainHooks(policy_ready=received.append, on_iteration=on_iteration)
    backend.train(handle, log_dir=out / "log", device="cpu", max_iterations=2, save_interval=2,
                  init=None, mode=None, hooks=hooks)
    handle.close()
    policy, first, second = taken[0]
    with torch.inference_mode():
        later, trained = policy(obs), received[0]()(obs)
    video = record_video(policy, TASK, out / "probe.mp4", length=12, width=96, height=64)
    (out / "scenario.json").write_text(json.dumps({
        "version": next(iter(backend.versions().values())),
        "actions": list(first.shape),
        "same": bool(torch.equal(first, second)),
        "copy_unchanged": bool(torch.equal(first, later)),  # the second iteration trained on
        "trained_on": not torch.equal(first, trained),
        "on_cpu": all(tensor.device.type == "cpu" for tensor in _tensors(policy)),
        "frames": video.frames,
        "video": str(video.path),
    }))


def _tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    """Parameters, buffers and plain tensor attributes of every submodule."""
    found = list(module.state_dict().values())
    for sub in module.modules():
        found += [value for value in vars(sub).values() if isinstance(value, torch.Tensor)]
    return found


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
