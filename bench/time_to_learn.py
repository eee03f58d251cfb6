"""Time to learn: both backends' default cfgs on the same gymnasium task, side by side.

Each run trains through the launcher's own path without tracking (training.envs.make_env +
the backend's train, as bench/backend_learning.py does for rsl-rl) and stops at the first
iteration whose mean return reaches the target; runs alternate between the backends (one
fresh process each, imports not timed) and the medians are compared.

    .venv/bin/python bench/time_to_learn.py [--task HalfCheetah-v5] [--num-envs 16]
        [--target 500] [--repeats 1] [--max-iterations 600]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("rsl_rl", "skrl")

SAMPLE = r"""
import json, os, sys, tempfile, time
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
import torch
from pathlib import Path
from training.backends import load_backend
from training.backends.base import TrainHooks
from training.envs import make_env

name, task, num_envs, target, max_iterations = sys.argv[1:6]
backend = load_backend(name)
torch.set_num_threads(1)
handle = make_env(task, backend=backend, num_envs=int(num_envs), seed=None, device="cpu")
start = time.perf_counter()
seen = {"reached": None, "best": float("-inf"), "iterations": 0}

def on_iteration(iteration, metrics):
    seen["iterations"] = iteration + 1
    if backend.REWARD_METRIC in metrics:
        reward = float(metrics[backend.REWARD_METRIC])
        seen["best"] = max(seen["best"], reward)
        if reward >= float(target) and seen["reached"] is None:
            seen["reached"] = [iteration + 1, time.perf_counter() - start, reward]

with tempfile.TemporaryDirectory() as log_dir:
    backend.train(handle, log_dir=Path(log_dir), device="cpu",
                  max_iterations=int(max_iterations), save_interval=int(max_iterations),
                  init=None, mode=None,
                  hooks=TrainHooks(on_iteration=on_iteration,
                                   should_stop=lambda: seen["reached"] is not None))
handle.close()
print(json.dumps(dict(seen, seconds=time.perf_counter() - start)))
"""


def sample(backend: str, args: argparse.Namespace) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", SAMPLE, backend, args.task, str(args.num_envs), str(args.target),
         str(args.max_iterations)],
        env=dict(os.environ, PYTHONPATH=str(REPO / "src")),
        capture_output=True, text=True, timeout=3600,
    )
    if result.returncode != 0:
        raise SystemExit(f"{backend} run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="HalfCheetah-v5")
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--target", type=float, default=500.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--max-iterations", type=int, default=600)
    args = parser.parse_args()

    results: dict[str, list[dict]] = {name: [] for name in BACKENDS}
    for repeat in range(args.repeats):
        for name in BACKENDS if repeat % 2 == 0 else reversed(BACKENDS):
            run = sample(name, args)
            results[name].append(run)
            reached = run["reached"]
            what = (f"mean return {reached[2]:.0f} at iteration {reached[0]}, {reached[1]:.1f} s"
                    if reached else f"not reached in {run['iterations']} iterations "
                    f"({run['seconds']:.1f} s; best {run['best']:.0f})")
            print(f"{name}: {what}", flush=True)
    print(f"{args.task}, {args.num_envs} envs, default cfgs, target mean return "
          f"{args.target:g}, {args.repeats} run(s) each:")
    for name, runs in results.items():
        times = [run["reached"][1] for run in runs if run["reached"]]
        median = f"{statistics.median(times):.1f} s" if times else "never"
        print(f"  {name}: median {median} to the target ({len(times)}/{len(runs)} reached)")


if __name__ == "__main__":
    main()
