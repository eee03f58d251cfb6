"""Torch threads on the CPU: the launcher's default (one thread, ``OMP_NUM_THREADS`` unset)
against torch's own (a thread per core, ``OMP_NUM_THREADS=<cores>``), side by side.

Each sample is a plain training run as ``bench/video_cost.py`` makes it (``python -m
training.launch`` in a fresh process, tracking into a real ``mlflow server`` on 127.0.0.1,
timed start to exit); runs alternate in pairs, the order flipping each pair. Reported: the
median of the per-pair ratios one-thread/per-core wall time and their spread, for each
``--num-envs`` given (the batch torch computes on grows with it).

    .venv/bin/python bench/cpu_threads.py [--pairs 2] [--iterations 100] [--num-envs 16,256]
        [--backend rsl_rl|skrl]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from video_cost import MlflowServer, sample  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--num-envs", default="16,256", help="comma-separated")
    parser.add_argument("--task", default="HalfCheetah-v5")
    parser.add_argument("--backend", default="rsl_rl")
    args = parser.parse_args()
    cores = str(os.cpu_count())
    os.environ.pop("OMP_NUM_THREADS", None)  # the one-thread side: the launcher's default
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        server = MlflowServer(scratch / "mlflow").start()
        index = 0
        try:
            for num_envs in [int(n) for n in args.num_envs.split(",")]:
                run_args = argparse.Namespace(**{**vars(args), "num_envs": num_envs})
                ratios = []
                for pair in range(args.pairs):
                    seconds = {}
                    for per_core in ((False, True) if pair % 2 == 0 else (True, False)):
                        extra = {"OMP_NUM_THREADS": cores} if per_core else {}
                        seconds[per_core], _, _ = sample(False, run_args, server, scratch,
                                                         index, **extra)
                        index += 1
                    ratios.append(seconds[False] / seconds[True])
                    print(f"{num_envs} envs, pair {pair + 1}/{args.pairs}: one thread "
                          f"{seconds[False]:.1f} s, {cores} threads {seconds[True]:.1f} s, "
                          f"ratio {ratios[-1]:.3f}", flush=True)
                print(f"{args.backend}, {num_envs} envs, {args.iterations} iterations: one "
                      f"thread / {cores} threads wall time: median {statistics.median(ratios):.3f}"
                      f" (min {min(ratios):.3f}, max {max(ratios):.3f}) over {args.pairs} pairs",
                      flush=True)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
