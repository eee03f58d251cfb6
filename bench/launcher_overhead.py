"""Overhead of the launcher over the bare library: rsl-rl's `OnPolicyRunner.learn`, or skrl's
`Runner` (`--backend skrl`).

Same task, env adapter, agent cfg, seed and iterations on both sides; the launcher also logs
every metric and uploads every checkpoint to a real `mlflow server` on 127.0.0.1. Each sample
runs in a fresh process that imports everything first, so import time is not counted on
either side; the timed part is make_env + training (+ for the launcher: run creation, metric
and checkpoint uploads, the final upload and ending the run). Runs alternate bare/launcher;
the result is the median of the per-pair ratios.

    .venv/bin/python bench/launcher_overhead.py [--backend rsl_rl|skrl] [--pairs 5]
        [--iterations 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.mlflow_server import MlflowServer  # noqa: E402

SAMPLE = r"""
import json, os, sys, tempfile, time
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
import mlflow, torch  # noqa: F401  (imported up front: not part of the timing)
from training import launch, tracking, checkpoints, registry  # noqa: F401
from training.backends import load_backend
from training.envs import make_env

side, backend_name, task, num_envs, iterations, save_interval = sys.argv[1:7]
backend = load_backend(backend_name)
torch.set_num_threads(1)
start, cpu_start = time.perf_counter(), time.process_time()
if side == "bare" and backend_name == "rsl_rl":  # the library's own runner, logging off
    from rsl_rl.runners import OnPolicyRunner
    from training.backends import rsl_rl_compat

    handle = make_env(task, backend=backend, num_envs=int(num_envs), seed=None, device="cpu")
    cfg = rsl_rl_compat.runner_cfg(dict(handle.agent_cfg, save_interval=int(save_interval)))
    torch.manual_seed(handle.seed)
    with rsl_rl_compat.quiet_stdout():
        runner = OnPolicyRunner(handle.env, cfg, log_dir=tempfile.mkdtemp(), device="cpu")
        runner.learn(int(iterations))
    handle.close()
    code = 0
elif side == "bare":  # skrl's own Runner with the same cfg, seed and env, its writer off
    from skrl.utils.runner.torch import Runner
    from training.backends import skrl_compat

    handle = make_env(task, backend=backend, num_envs=int(num_envs), seed=None, device="cpu")
    cfg = skrl_compat.runner_cfg(handle.agent_cfg, directory=tempfile.mkdtemp())
    cfg["seed"] = handle.seed
    with skrl_compat.quiet_stdout():
        runner = Runner(handle.env, cfg)
    skrl_compat.set_timesteps(runner.trainer, int(iterations) * skrl_compat.rollouts(runner.agent))
    runner.run("train")
    handle.close()
    code = 0
else:
    with open(os.devnull, "w") as quiet, __import__("contextlib").redirect_stdout(quiet):
        code = launch.main(["--task", task, "--backend", backend_name, "--num_envs", num_envs,
                            "--max_iterations", iterations, "--save-interval", save_interval,
                            "--device", "cpu"])
print(json.dumps({"seconds": time.perf_counter() - start, "code": code,
                  "cpu_seconds": time.process_time() - cpu_start}))
"""


def sample(side: str, args: argparse.Namespace, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the training process, all its threads)."""
    result = subprocess.run(
        [sys.executable, "-c", SAMPLE, side, args.backend, args.task, str(args.num_envs),
         str(args.iterations), str(args.save_interval)],
        env=env, capture_output=True, text=True, timeout=900,
    )
    if result.returncode != 0:
        raise SystemExit(f"{side} sample failed:\n{result.stderr[-3000:]}")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    if data["code"] != 0:
        raise SystemExit(f"{side} sample exited {data['code']}:\n{result.stderr[-3000:]}")
    return data["seconds"], data["cpu_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--backend", default="rsl_rl", choices=("rsl_rl", "skrl"))
    parser.add_argument("--task", default="HalfCheetah-v5")
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--save-interval", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        server = MlflowServer(Path(scratch) / "server").start()
        try:
            env = dict(os.environ, MLFLOW_TRACKING_URI=server.url, SKIP_PIP_INSTALL="1",
                       TRAINING_OUTPUT_DIR=str(Path(scratch) / "out"),
                       PYTHONPATH=str(REPO / "src"))
            wall, cpu = [], []
            for index in range(args.pairs):
                (bare, bare_cpu), (launcher, launcher_cpu) = (sample("bare", args, env),
                                                              sample("launcher", args, env))
                wall.append((bare, launcher))
                cpu.append((bare_cpu, launcher_cpu))
                print(f"pair {index + 1}: wall bare {bare:.2f} s, launcher {launcher:.2f} s "
                      f"({100 * (launcher / bare - 1):+.1f} %); CPU bare {bare_cpu:.2f} s, "
                      f"launcher {launcher_cpu:.2f} s ({100 * (launcher_cpu / bare_cpu - 1):+.1f}"
                      " %)", flush=True)
        finally:
            server.stop()
    print(f"{args.backend}, {args.task}, {args.num_envs} envs, {args.iterations} iterations, "
          f"save every {args.save_interval}, {args.pairs} pairs:")
    for label, pairs in (("wall", wall), ("CPU", cpu)):
        overhead = statistics.median(launcher / bare - 1 for bare, launcher in pairs)
        print(f"  {label}: median bare {statistics.median(b for b, _ in pairs):.2f} s, "
              f"median launcher {statistics.median(w for _, w in pairs):.2f} s, "
              f"median overhead {100 * overhead:+.1f} % (target <= 3 %)")


if __name__ == "__main__":
    main()
