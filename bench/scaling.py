"""Several ranks on one node: samples per second and time per iteration with 1, 2, ... local
ranks, side by side in one run, and the collectives' overhead per iteration.

Each configuration is a real ``python -m training.launch`` with ``NPROC_PER_NODE=<ranks>``
(torchrun; gloo on CPU, nccl and ``cuda:<local rank>`` on a GPU machine), tracked in a real
``mlflow server`` on 127.0.0.1; the figures are rank 0's metrics as rsl-rl computed them,
read back from the run (median over the iterations after the first):

- two layouts per rank count: the **same total envs** split over the ranks
  (``--total-envs``), and the **same envs per rank** (``--envs-per-rank``; the total grows);
- samples/s: ``Perf/total_fps`` (rsl-rl counts every rank's samples); time per iteration:
  collection + learning;
- collectives' overhead per iteration: learning time with N ranks minus learning time with one
  rank, both with the same envs per rank (the gradient all-reduce, the adaptive-KL mean and
  the learning-rate broadcast are in learning; each rank collects its own envs). The launcher's
  own per-iteration all-reduce of the stop flag is outside both times;
- every rank, and the single process, with ``OMP_NUM_THREADS=1`` (torchrun's default per
  rank) unless the variable is set.

    .venv/bin/python bench/scaling.py --ranks 1,2 [--total-envs 8] [--envs-per-rank 4]
        [--iterations 8] [--repeats 1] [--task InvertedPendulum-v5]

``--repeats N`` runs every configuration N times in rounds (all configurations once per
round, so a slow phase of a shared machine hits them alike) and reports medians.

On a GPU machine the same command runs unchanged (e.g. ``--ranks 1,2,4,8``, a larger task).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.mlflow_server import MlflowServer, free_port  # noqa: E402

PERF = ("Perf/total_fps", "Perf/collection_time", "Perf/learning_time")


def run_once(server: MlflowServer, workdir: Path, *, task: str, ranks: int, envs: int,
             iterations: int) -> dict[str, float]:
    """One launcher run; rank 0's per-iteration figures (medians after the first)."""
    from mlflow import MlflowClient

    experiment = f"scaling-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "SKIP_PIP_INSTALL": "1",
           "MLFLOW_TRACKING_URI": server.url, "EXPERIMENT_NAME": experiment,
           "TRAINING_OUTPUT_DIR": str(workdir / experiment), "AUTO_RESUME": "false",
           "NPROC_PER_NODE": str(ranks), "MASTER_PORT": str(free_port()),
           "GIT_PYTHON_REFRESH": "quiet",
           # torchrun gives each rank OMP_NUM_THREADS=1 (unless set); one rank alone runs
           # without torchrun: the same threads per rank for a fair comparison
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    command = [sys.executable, "-m", "training.launch", "--task", task, "--num_envs", str(envs),
               "--max_iterations", str(iterations), "--save-interval", str(iterations)]
    started = time.monotonic()
    done = subprocess.run(command, env=env, cwd=workdir, capture_output=True, text=True)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{ranks} rank(s), {envs} envs: exit {done.returncode}\n"
                         f"{(done.stdout + done.stderr)[-3000:]}")
    client = MlflowClient(server.url)
    (experiment_record,) = [e for e in client.search_experiments() if e.name == experiment]
    (run,) = client.search_runs([experiment_record.experiment_id])
    figures = {}
    for name in PERF:
        history = sorted(client.get_metric_history(run.info.run_id, name), key=lambda m: m.step)
        values = [m.value for m in history[1:]] or [m.value for m in history]
        figures[name] = statistics.median(values)
    figures["iteration_s"] = figures["Perf/collection_time"] + figures["Perf/learning_time"]
    figures["wall_s"] = wall
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="1,2", help="comma-separated local rank counts")
    parser.add_argument("--total-envs", type=int, default=8)
    parser.add_argument("--envs-per-rank", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--task", default="InvertedPendulum-v5")
    args = parser.parse_args()
    rank_counts = [int(text) for text in args.ranks.split(",")]
    if any(args.total_envs % count for count in rank_counts):
        parser.error("--total-envs must divide by every rank count")

    configurations = [(count, layout, envs) for count in rank_counts
                      for layout, envs in (("same total envs", args.total_envs // count),
                                           ("same envs per rank", args.envs_per_rank))]
    samples: dict[tuple[int, str, int], list[dict[str, float]]] = {c: [] for c in configurations}
    with tempfile.TemporaryDirectory() as tmp:
        server = MlflowServer(Path(tmp) / "mlflow").start()
        try:
            for _ in range(args.repeats):
                for count, layout, envs in configurations:
                    figures = run_once(server, Path(tmp), task=args.task, ranks=count,
                                       envs=envs, iterations=args.iterations)
                    samples[(count, layout, envs)].append(figures)
                    print(f"{count} rank(s), {layout}: {envs} envs per rank, "
                          f"{figures['Perf/total_fps']:,.0f} samples/s, "
                          f"{figures['iteration_s'] * 1000:.0f} ms/iteration", flush=True)
        finally:
            server.stop()
    rows = [(count, layout, envs,
             {name: statistics.median(run[name] for run in samples[(count, layout, envs)])
              for name in samples[(count, layout, envs)][0]})
            for count, layout, envs in configurations]

    one_rank_learning = next(f["Perf/learning_time"] for count, layout, _, f in rows
                             if count == rank_counts[0] and layout == "same envs per rank")
    print(f"\n{args.task}, {args.iterations} iterations, medians after the first, "
          f"{args.repeats} repeat(s); ranks {args.ranks}\n")
    print("| ranks | layout | envs per rank | total envs | samples/s | ms per iteration "
          "| collection ms | learning ms | collectives overhead ms/iteration |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for count, layout, envs, f in rows:
        overhead = ""
        if layout == "same envs per rank" and count != rank_counts[0]:
            overhead = f"{(f['Perf/learning_time'] - one_rank_learning) * 1000:+.1f}"
        print(f"| {count} | {layout} | {envs} | {envs * count} | {f['Perf/total_fps']:,.0f} | "
              f"{f['iteration_s'] * 1000:.0f} | {f['Perf/collection_time'] * 1000:.0f} | "
              f"{f['Perf/learning_time'] * 1000:.1f} | {overhead} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
