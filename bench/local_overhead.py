"""Overhead of `submit-training --local` over running the launcher directly.

Both sides train the same task with the same arguments into the same project-local MLflow
store; they differ only in what `--local` adds: packaging, rendering and validating the spec,
writing the run directory, the bootstrap's sha256 check and extraction, and teeing the output.
Runs alternate (local, direct, local, direct, ...) so that a machine getting busier or idler
affects both sides alike.

    .venv/bin/python bench/local_overhead.py                 # 20 pairs, prints a table
    .venv/bin/python bench/local_overhead.py --results /tmp/local.md  # then into bench/RESULTS.md

Target: median local wall time <= 1.05 x median direct wall time.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from osmo_inline.local_plan import LocalStore

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.05


def make_project(root: Path) -> Path:
    """A user repository as `submit-training` expects it: the code and the template."""
    for part in ("src/training", "templates"):
        shutil.copytree(REPO_ROOT / part, root / part, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def timed(argv: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> float:
    started = time.perf_counter()
    with open(log, "wb") as out:
        code = subprocess.call(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    elapsed = time.perf_counter() - started
    if code != 0:
        sys.exit(f"{shlex.join(argv)} exited {code}; see {log}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--task", default="InvertedPendulum-v5")
    parser.add_argument("--num-envs", default="8")
    parser.add_argument("--max-iterations", default="10")
    parser.add_argument("--results", type=Path, help="also write the results (markdown) here")
    options = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="local-overhead-"))
    project = make_project(work / "project")
    store = LocalStore.in_project(project)
    training_args = ["--task", options.task, "--num_envs", options.num_envs,
                     "--max_iterations", options.max_iterations]
    local_argv = [str(Path(sys.executable).with_name("submit-training")), "--local", "-q",
                  "-b", "rsl_rl",  # the same backend as the direct launcher's default
                  "--task", options.task, "--num-envs", options.num_envs,
                  "-m", options.max_iterations]
    direct_argv = [sys.executable, "-m", "training.launch", "--headless", *training_args]
    base_env = {key: value for key, value in os.environ.items()
                if key not in ("MLFLOW_TRACKING_URI", "TASK", "NUM_ENVS", "MAX_ITERATIONS")}
    # The direct run gets what the local run's task gets: the same code, the same store.
    direct_env = {**base_env, **store.environment(), "PYTHONUNBUFFERED": "1",
                  "PYTHONPATH": str(project / "src")}

    # Warm-up, untimed: creates the sqlite store's tables and fills the OS file cache.
    timed(local_argv, cwd=project, env=base_env, log=work / "warmup-local.log")
    timed(direct_argv, cwd=work, log=work / "warmup-direct.log",
          env={**direct_env, "TRAINING_OUTPUT_DIR": str(work / "warmup-direct")})

    local_s: list[float] = []
    direct_s: list[float] = []
    for pair in range(options.pairs):
        local_s.append(timed(local_argv, cwd=project, env=base_env,
                             log=work / f"local-{pair}.log"))
        output = work / f"direct-{pair}"
        direct_s.append(timed(direct_argv, cwd=work, log=work / f"direct-{pair}.log",
                              env={**direct_env, "TRAINING_OUTPUT_DIR": str(output)}))
        print(f"pair {pair + 1:2}/{options.pairs}: local {local_s[-1]:6.2f} s   "
              f"direct {direct_s[-1]:6.2f} s", flush=True)

    # The fixed cost itself, without training: package, render, validate, write the run
    # directory, verify and extract the payload, then the bootstrap's inspection exit.
    fixed_s = [timed([*local_argv, "--sleep-after-unpack", "0"], cwd=project, env=base_env,
                     log=work / f"fixed-{run}.log") for run in range(options.pairs)]

    ratio = statistics.median(local_s) / statistics.median(direct_s)
    pair_ratios = [local / direct for local, direct in zip(local_s, direct_s, strict=True)]
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    lines = [
        "## Local executor overhead",
        "",
        f"`submit-training --local` against `python -m training.launch` with the same arguments"
        f" ({options.task}, {options.num_envs} envs, {options.max_iterations} iterations, the "
        f"same sqlite store), alternated, {options.pairs} pairs, on {os.cpu_count()} cores "
        f"({platform.processor() or platform.machine()}), Python {platform.python_version()}.",
        "",
        "| | median | min | max |",
        "|---|---|---|---|",
        f"| `--local` | {statistics.median(local_s):.2f} s | {min(local_s):.2f} s "
        f"| {max(local_s):.2f} s |",
        f"| direct | {statistics.median(direct_s):.2f} s | {min(direct_s):.2f} s "
        f"| {max(direct_s):.2f} s |",
        "",
        f"Ratio of medians: **{ratio:.3f}** (target <= {TARGET_RATIO}): {verdict}. "
        f"Median extra time: {statistics.median(local_s) - statistics.median(direct_s):+.2f} s;"
        f" median of the per-pair ratios: {statistics.median(pair_ratios):.3f}.",
        "",
        f"What `--local` adds, measured alone ({options.pairs} runs of `--local "
        f"--sleep-after-unpack 0`: packaging, render, validation, run directory, bootstrap "
        f"sha256 check and extraction, no training): median {statistics.median(fixed_s):.2f} s,"
        f" min {min(fixed_s):.2f} s.",
        "",
        f"Command: `.venv/bin/python bench/local_overhead.py --pairs {options.pairs} --task "
        f"{options.task} --num-envs {options.num_envs} --max-iterations "
        f"{options.max_iterations}`",
    ]
    print("\n".join(lines))
    if options.results:
        options.results.write_text("\n".join(lines) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
