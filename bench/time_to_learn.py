"""Time to learn: both backends' default cfgs on the same gymnasium task, side by side.

Each run trains through the launcher's own path without tracking (training.envs.make_env +
the backend's train, as bench/backend_learning.py does for rsl-rl) and stops at the first
iteration whose mean return reaches the target; runs alternate between the backends (one
fresh process each, imports not timed; repeat i uses seed --seed + i for both) and the
medians are compared: wall seconds, CPU seconds (one torch thread and a synchronous vector
env, so CPU time is the run's own work even on a busy machine) and iterations.

    .venv/bin/python bench/time_to_learn.py [--task HalfCheetah-v5] [--num-envs 16]
        [--target 500] [--repeats 1] [--max-iterations 600] [--seed 1]
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

name, task, num_envs, target, max_iterations, seed = sys.argv[1:7]
backend = load_backend(name)
torch.set_num_threads(1)
handle = make_env(task, backend=backend, num_envs=int(num_envs), seed=int(seed), device="cpu")
start, cpu_start = time.perf_counter(), time.process_time()
seen = {"reached": None, "best": float("-inf"), "iterations": 0}

def on_iteration(iteration, metrics):
    seen["iterations"] = iteration + 1
    if backend.REWARD_METRIC in metrics:
        reward = float(metrics[backend.REWARD_METRIC])
        seen["best"] = max(seen["best"], reward)
        if reward >= float(target) and seen["reached"] is None:
            seen["reached"] = [iteration + 1, time.perf_counter() - start, reward,
                               time.process_time() - cpu_start]

with tempfile.TemporaryDirectory() as log_dir:
    backend.train(handle, log_dir=Path(log_dir), device="cpu",
                  max_iterations=int(max_iterations), save_interval=int(max_iterations),
                  init=None, mode=None,
                  hooks=TrainHooks(on_iteration=on_iteration,
                                   should_stop=lambda: seen["reached"] is not None))
handle.close()
print(json.dumps(dict(seen, seconds=time.perf_counter() - start)))
"""


def sample(backend: str, args: argparse.Namespace, seed: int) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", SAMPLE, backend, args.task, str(args.num_envs), str(args.target),
         str(args.max_iterations), str(seed)],
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
    parser.add_argument("--seed", type=int, default=1, help="the first repeat's seed; "
                        "repeat i uses seed + i, the same for both backends")
    args = parser.parse_args()

    results: dict[str, list[dict]] = {name: [] for name in BACKENDS}
    for repeat in range(args.repeats):
        for name in BACKENDS if repeat % 2 == 0 else reversed(BACKENDS):
            run = sample(name, args, seed=args.seed + repeat)  # one seed per repeat
            results[name].append(run)
            reached = run["reached"]
            what = (f"mean return {reached[2]:.0f} at iteration {reached[0]}, {reached[1]:.1f} s "
                    f"({reached[3]:.1f} s CPU)"
                    if reached else f"not reached in {run['iterations']} iterations "
                    f"({run['seconds']:.1f} s; best {run['best']:.0f})")
            print(f"{name}: {what}", flush=True)
    print(f"{args.task}, {args.num_envs} envs, default cfgs, target mean return "
          f"{args.target:g}, {args.repeats} run(s) each:")
    for name, runs in results.items():
        reached = [run["reached"] for run in runs if run["reached"]]
        if not reached:
            print(f"  {name}: never reached the target (0/{len(runs)})")
            continue
        wall, cpu, iterations = ([r[i] for r in reached] for i in (1, 3, 0))
        print(f"  {name}: median {statistics.median(wall):.1f} s wall "
              f"[{min(wall):.1f}-{max(wall):.1f}], {statistics.median(cpu):.1f} s CPU "
              f"[{min(cpu):.1f}-{max(cpu):.1f}], iteration {statistics.median(iterations):.0f} "
              f"[{min(iterations)}-{max(iterations)}] to the target "
              f"({len(reached)}/{len(runs)} reached)")


if __name__ == "__main__":
    main()
