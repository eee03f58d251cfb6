"""Probe: a mid-run video as the launcher makes it, in a process of its own that never renders
itself (as the launcher for a gymnasium task: a process that has rendered with Mesa's EGL
cannot render again in a forked child, so this cannot run inside the pytest worker).

``python busy_video_probe.py OUT_DIR``: a ForkedVideos for InvertedPendulum-v5 (100 frames,
interval 2, 10 iterations), the policy pushing right; iteration 1 ends (a mid-run video is
forked), iteration 2 ends at once (skipped: the first still renders); then waits up to 60 s
for the first video's upload. Prints one JSON line: ``{"uploaded": [names], "seconds": s}``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from training.video import ForkedVideos, VideoSettings

WAIT_S = 60.0


def main(out: Path) -> None:
    uploaded: list[str] = []

    def upload(path: Path) -> str:
        uploaded.append(path.name)
        return path.name

    videos = ForkedVideos(VideoSettings(length=100, interval=2, folder=out),
                          task="InvertedPendulum-v5", env_kwargs={}, seed=0, max_iterations=10,
                          upload=upload)
    videos.policy_ready(lambda: lambda obs: torch.full((1, 1), 3.0))
    start = time.monotonic()
    videos.after_iteration(0)  # iteration 1: a mid-run video
    videos.after_iteration(1)  # iteration 2: while the first renders
    while not uploaded and time.monotonic() < start + WAIT_S:
        time.sleep(0.1)
    seconds = time.monotonic() - start
    videos.abort()
    print(json.dumps({"uploaded": uploaded, "seconds": round(seconds, 1)}), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
