"""What ``--video`` costs a training run: the same run with and without it, side by side.

Each sample is ``python -m training.launch`` in a fresh process, exactly as the container runs
it (same task, envs, iterations, seed), tracking into a real ``mlflow server`` on 127.0.0.1;
the timed part is the whole process, start to exit, so the wait at the end for the final
video and its upload count. The video side uses the default interval and length unless told
otherwise (``--video-interval``, ``--video-length``). Runs alternate in pairs, the order
flipping each pair (plain/video, video/plain, ...), so a machine that gets busier or quieter
weighs on both sides alike; the result is the median of the per-pair ratios video/plain and
their spread (min, max). Requirement (README): the median costs at most 5 %, with every video
the interval asks for written (after iteration 1, every interval-th and the last): a video run
that skipped one is reported, and the verdict is then not "within". Each sample also reports
its CPU seconds (user + system of the launcher and every child it reaped, the video renderers
among them): on a machine with a free core the wall cost can be small while the videos still
take CPU that a busier node would miss.

    .venv/bin/python bench/video_cost.py [--pairs 3] [--iterations 300] [--num-envs 16]
        [--task HalfCheetah-v5] [--backend rsl_rl|skrl] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.mlflow_server import MlflowServer  # noqa: E402

REQUIREMENT = 1.05  # video/plain wall time, median over pairs
DEFAULT_INTERVAL = 100  # training.config.DEFAULT_VIDEO_INTERVAL (not imported: no torch here)


def expected_videos(iterations: int, interval: int) -> list[str]:
    done = {1, iterations, *range(interval, iterations + 1, interval)}
    return [f"iteration_{n}.mp4" for n in sorted(done)]


def cpu_seconds_of_children() -> float:
    """User + system seconds of every process this one has waited for (and theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sample(video: bool, args: argparse.Namespace, server: MlflowServer, scratch: Path,
           index: int, **extra_env: str) -> tuple[float, float, list[str]]:
    """Wall and CPU seconds of one launcher process (exit 0 required) and the videos it
    wrote."""
    out = scratch / f"out{index}"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), SKIP_PIP_INSTALL="1",
               MLFLOW_TRACKING_URI=server.url, TRAINING_OUTPUT_DIR=str(out),
               EXPERIMENT_NAME=f"video-cost-{'video' if video else 'plain'}", **extra_env)
    for name in ("VIDEO", "VIDEO_LENGTH", "VIDEO_INTERVAL", "WORKFLOW_ID"):
        env.pop(name, None)
    command = [sys.executable, "-m", "training.launch", "--task", args.task, "--backend",
               args.backend, "--num_envs", str(args.num_envs), "--max_iterations",
               str(args.iterations), "--seed", "1", "--device", "cpu"]
    if video:
        command.append("--video")
        if args.video_interval:
            command += ["--video-interval", str(args.video_interval)]
        if args.video_length:
            command += ["--video-length", str(args.video_length)]
    cpu_before = cpu_seconds_of_children()
    start = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=scratch, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    cpu = cpu_seconds_of_children() - cpu_before
    if result.returncode != 0:
        raise SystemExit(f"{'video' if video else 'plain'} run failed ({result.returncode}):\n"
                         + result.stderr[-2000:])
    if video and "video: the trained policy: " not in result.stdout:
        raise SystemExit("the video run recorded no final video:\n" + result.stdout[-2000:])
    return seconds, cpu, sorted({path.name for path in out.rglob("iteration_*.mp4")
                            if not path.name.endswith(".partial.mp4")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--task", default="HalfCheetah-v5")
    parser.add_argument("--backend", default="rsl_rl")
    parser.add_argument("--video-interval", type=int, default=0, help="0: the default")
    parser.add_argument("--video-length", type=int, default=0, help="0: the default")
    parser.add_argument("--json", type=Path, help="also write the samples and result here")
    args = parser.parse_args()

    pairs: list[dict] = []
    expected = expected_videos(args.iterations, args.video_interval or DEFAULT_INTERVAL)
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        server = MlflowServer(scratch / "mlflow").start()
        try:
            for index in range(args.pairs):
                order = (False, True) if index % 2 == 0 else (True, False)
                runs = {video: sample(video, args, server, scratch, 2 * index + position)
                        for position, video in enumerate(order)}
                (plain_s, plain_cpu, _), (video_s, video_cpu, written) = runs[False], runs[True]
                missing = [name for name in expected if name not in written]
                pair = {"plain_s": plain_s, "video_s": video_s, "ratio": video_s / plain_s,
                        "plain_cpu_s": plain_cpu, "video_cpu_s": video_cpu,
                        "cpu_ratio": video_cpu / plain_cpu, "videos": written,
                        "missing": missing}
                pairs.append(pair)
                print(f"pair {index + 1}/{args.pairs}: plain {plain_s:.1f} s ({plain_cpu:.1f} "
                      f"CPU s), video {video_s:.1f} s ({video_cpu:.1f} CPU s), ratio "
                      f"{pair['ratio']:.3f} (CPU {pair['cpu_ratio']:.3f}); videos "
                      f"{', '.join(written)}" + (f"; MISSING {', '.join(missing)}"
                                                 if missing else ""), flush=True)
        finally:
            server.stop()
    ratios = [pair["ratio"] for pair in pairs]
    result = {"task": args.task, "backend": args.backend, "num_envs": args.num_envs,
              "iterations": args.iterations, "video_interval": args.video_interval or "default",
              "video_length": args.video_length or "default", "pairs": pairs,
              "median_ratio": statistics.median(ratios), "min_ratio": min(ratios),
              "max_ratio": max(ratios),
              "median_cpu_ratio": statistics.median(pair["cpu_ratio"] for pair in pairs),
              "cpus": os.cpu_count(), "expected_videos": expected}
    skipped = sum(bool(pair["missing"]) for pair in pairs)
    verdict = ("NOT MET: videos missing" if skipped else
               "within" if result["median_ratio"] <= REQUIREMENT else "ABOVE")
    print(f"video/plain wall time: median {result['median_ratio']:.3f} (min "
          f"{result['min_ratio']:.3f}, max {result['max_ratio']:.3f}) over {len(pairs)} pairs, "
          f"{len(pairs) - skipped} of them with every video ({', '.join(expected)}): "
          f"{verdict} the {100 * (REQUIREMENT - 1):.0f} % budget")
    print(f"video/plain CPU seconds: median {result['median_cpu_ratio']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
