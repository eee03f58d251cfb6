"""Probe, run under one rsl-rl or skrl version (support.lib_versions): the policy a backend
hands to ``TrainHooks.policy_ready``, used as training.video uses it.

``python video_policy_probe.py BACKEND OUT_DIR``: trains one iteration of InvertedPendulum-v5
(4 envs) with the real backend, calls the function ``policy_ready`` received after training
(as the launcher does for the final video), feeds it one observation twice and records a short
real video with it; writes ``OUT_DIR/scenario.json``: ``{"version", "actions", "same",
"frames", "video"}``.
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
    received = []
    hooks = TrainHooks(policy_ready=received.append)
    backend.train(handle, log_dir=out / "log", device="cpu", max_iterations=1, save_interval=1,
                  init=None, mode=None, hooks=hooks)
    handle.close()
    policy = received[0]()
    obs = torch.tensor([[0.0, 0.05, 0.0, 0.1]])
    with torch.inference_mode():
        first, second = policy(obs), policy(obs)
    video = record_video(policy, TASK, out / "probe.mp4", length=12, width=96, height=64)
    (out / "scenario.json").write_text(json.dumps({
        "version": next(iter(backend.versions().values())),
        "actions": list(first.shape),
        "same": bool(torch.equal(torch.as_tensor(first), torch.as_tensor(second))),
        "frames": video.frames,
        "video": str(video.path),
    }))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
