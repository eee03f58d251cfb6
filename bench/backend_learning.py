"""How fast the default agent cfg learns a gymnasium task on CPU (for the quick start).

    .venv/bin/python bench/backend_learning.py [TASK] [ITERATIONS] [NUM_ENVS]

Trains with training.envs.make_env + training.backends.rsl_rl.train (the launcher's path,
without tracking) and prints mean reward and elapsed training time every 10 iterations.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from training.backends import rsl_rl as backend
from training.backends.base import TrainHooks
from training.envs import make_env


def main() -> None:
    task = sys.argv[1] if len(sys.argv) > 1 else "HalfCheetah-v5"
    iterations = int(sys.argv[2]) if len(sys.argv) > 2 else 150
    num_envs = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    handle = make_env(task, backend=backend, num_envs=num_envs, seed=None, device="cpu")
    start = time.perf_counter()
    rows: list[tuple[int, float, float]] = []

    def on_iteration(it: int, metrics: dict[str, float]) -> None:
        if it % 10 == 0 or it == iterations - 1:
            reward = metrics.get("Train/mean_reward", float("nan"))
            rows.append((it + 1, time.perf_counter() - start, reward))
            print(f"{it + 1:4d} iterations  {rows[-1][1]:6.1f} s  mean reward {reward:8.1f}")

    with tempfile.TemporaryDirectory() as log_dir:
        backend.train(
            handle, log_dir=Path(log_dir), device="cpu", max_iterations=iterations,
            save_interval=handle.save_interval, init=None, mode=None,
            hooks=TrainHooks(on_iteration=on_iteration),
        )
    handle.close()
    print(
        f"{task}, {num_envs} envs, rsl-rl {backend.RSL_RL_VERSION}: reward "
        f"{rows[0][2]:.1f} -> {rows[-1][2]:.1f} in {iterations} iterations, "
        f"{rows[-1][1]:.1f} s of training"
    )


if __name__ == "__main__":
    main()
