"""The cost of tracking: the launcher (MLflow metrics, checkpoint uploads, run start and end
against a real `mlflow server` on 127.0.0.1) against the bare library, split into a fixed cost
per run (seconds) and a cost per iteration (ms and % of an iteration), for each backend.

Sides, each a fresh process forked from one that has imported everything (so imports are not
timed, and no sample pays them):

- ``launcher``: ``python -m training.launch`` (``launch.main``), stdout to /dev/null;
- ``bare-logger``: the library as a user runs it today: rsl-rl's ``OnPolicyRunner.learn`` with
  its TensorBoard writer and its own checkpoints; skrl's ``Runner`` with its TensorBoard writer
  written every iteration and its checkpoints every save interval;
- ``bare-off``: the same with logging off (rsl-rl: no log dir, so no writer and no
  checkpoints; skrl: write and checkpoint intervals 0).

Same task, env adapter, agent cfg, seed and save interval on every side. Loads: the task's own
metrics (``--extra-metrics 0``) and an Isaac Lab-sized one (``60``: the env reports 60 more
scalars every step, as Isaac Lab's reward terms, terminations and curriculum do, in
``extras["log"]`` for rsl-rl and ``infos["episode"]`` for skrl, so the library's own logger
and ours see the same values).

Each process measures wall time, its CPU time (all threads), the training thread's CPU
(``time.thread_time``), both over the whole timed part and over the training loop alone, and
for the launcher the training thread's time spent inside our hooks. Figures:

- per iteration, direct (little affected by other load): training-thread CPU inside our hooks,
  plus the CPU of the launcher's background threads during the loop (process CPU minus
  training-thread CPU, less the same for the bare library), per iteration;
- per iteration, from two run lengths: the slope of process CPU (and of the training thread's
  CPU in the loop) over iterations, launcher minus bare, per round of alternated samples;
- fixed: wall time outside the training loop, launcher minus bare (run creation, params, cfg
  artifacts, final upload, ending the run, and the policy export), with the launcher's own
  phases; the same without the policy export (timed on its own: a feature of its own, not a
  cost of tracking);
- where the background CPU goes: each of the launcher's other threads (per-thread CPU clocks).

Each round runs every side at every length, in an order rotated from round to round. Reported:
median and min-max over rounds (over samples for the direct figures).

    .venv/bin/python bench/tracking_cost.py   # both backends, both loads: ~11 min when quiet
    .venv/bin/python bench/tracking_cost.py --backends skrl --rounds 2 --lengths 5,15
    .venv/bin/python bench/tracking_cost.py --backends skrl --extra-metrics 0 \
        --baselines bare-logger --lengths 15,900     # whole runs of ~2.5 minutes: ~11 min
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

SIDES = ("launcher", "bare-logger", "bare-off")


# --- one sample (runs in a forked child) ----------------------------------------------------


class Clock:
    """Wall, process CPU and this thread's CPU, read together."""

    @staticmethod
    def now() -> tuple[float, float, float]:
        return time.perf_counter(), time.process_time(), time.thread_time()


def extra_scalars(count: int) -> Callable[[], dict[str, Any]]:
    """A step's worth of `count` Isaac Lab-like scalars (reward terms, terminations, metrics),
    each a 0-dim tensor, as an Isaac Lab env's per-step log holds them."""
    import torch

    names = ([f"Episode_Reward/term_{i}" for i in range(count * 2 // 3)]
             + [f"Episode_Termination/cause_{i}" for i in range(count // 6)])
    names += [f"Metrics/command/error_{i}" for i in range(count - len(names))]

    def one_step() -> dict[str, Any]:
        values = torch.rand(count)
        return {name: values[i] for i, name in enumerate(names)}

    return one_step


def add_extra_metrics(handle: Any, backend_name: str, count: int) -> None:
    """Make the env report `count` more scalars every step, where each library reads them:
    rsl-rl's runner the ``extras["log"]`` of ``step`` (Isaac Lab's RslRlVecEnvWrapper passes the
    env's extras), skrl's trainer ``infos["episode"]`` (its ``environment_info`` default)."""
    if count <= 0:
        return
    env, scalars, inner_step = handle.env, extra_scalars(count), handle.env.step
    if backend_name == "rsl_rl":
        def step(actions: Any) -> Any:
            obs, rewards, dones, extras = inner_step(actions)
            extras["log"] = {**extras.get("log", {}), **scalars()}
            return obs, rewards, dones, extras
    else:
        def step(actions: Any) -> Any:
            obs, rewards, terminated, truncated, infos = inner_step(actions)
            infos = dict(infos)
            infos["episode"] = scalars()
            return obs, rewards, terminated, truncated, infos
    env.step = step


def threads_cpu() -> dict[str, float]:
    """CPU seconds of every other live thread, by name (Linux per-thread CPU clocks)."""
    import threading

    cpu: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread is threading.current_thread() or thread.ident is None:
            continue
        with contextlib.suppress(OSError, ProcessLookupError):
            clock = time.pthread_getcpuclockid(thread.ident)
            cpu[thread.name] = cpu.get(thread.name, 0.0) + time.clock_gettime(clock)
    return cpu


class Sample:
    """What one child measures; `marks` holds named Clock readings."""

    def __init__(self) -> None:
        self.marks: dict[str, tuple[float, float, float]] = {}
        self.threads: dict[str, dict[str, float]] = {}  # mark -> {thread name: CPU seconds}
        self.hook_cpu = 0.0
        self.hook_calls = 0
        self.iterations = 0

    def mark(self, name: str) -> None:
        self.marks[name] = Clock.now()
        if name.startswith("loop_"):
            self.threads[name] = threads_cpu()

    def timed_hook(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            start = time.thread_time()
            try:
                return hook(*args)
            finally:
                self.hook_cpu += time.thread_time() - start
                self.hook_calls += 1

        return timed


def run_sample(side: str, backend_name: str, args: argparse.Namespace, iterations: int,
               extra: int) -> dict[str, Any]:
    import torch

    from training import envs, launch, policy_export, session
    from training.backends import load_backend

    backend = load_backend(backend_name)
    torch.set_num_threads(1)
    sample = Sample()
    original_make_env = envs.make_env

    def make_env(*a: Any, **kw: Any) -> Any:
        handle = original_make_env(*a, **kw)
        add_extra_metrics(handle, backend_name, extra)
        return handle

    envs.make_env = make_env
    scratch = tempfile.mkdtemp(prefix="tracking-cost-")
    sample.mark("start")
    if side == "launcher":
        original_train = backend.train

        def train(*a: Any, hooks: Any, **kw: Any) -> Any:
            from training.backends.base import TrainHooks

            timed = TrainHooks(on_iteration=sample.timed_hook(hooks.on_iteration),
                               on_checkpoint=sample.timed_hook(hooks.on_checkpoint),
                               should_stop=sample.timed_hook(hooks.should_stop))
            sample.mark("loop_start")
            try:
                result = original_train(*a, hooks=timed, **kw)
            finally:
                sample.mark("loop_end")
            sample.iterations = result.final_iteration - result.start_iteration
            return result

        backend.train = train
        phases = {"__enter__": "enter", "finish": "finish", "__exit__": "exit"}
        for method, label in phases.items():
            setattr(session.TrackedRun, method, timed_phase(
                getattr(session.TrackedRun, method), sample, label))
        # The policy export (inside finish): a feature of its own, timed apart from tracking.
        policy_export.export_final = timed_phase(policy_export.export_final, sample, "export")
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            code = launch.main(["--task", args.task, "--backend", backend_name,
                                "--num_envs", str(args.num_envs), "--max_iterations",
                                str(iterations), "--save-interval", str(args.save_interval),
                                "--device", "cpu"])
        if code != 0:
            raise SystemExit(f"launcher exited {code}")
    else:
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            handle = make_env(args.task, backend=backend, num_envs=args.num_envs, seed=None,
                              device="cpu")
            if backend_name == "rsl_rl":
                bare_rsl_rl(handle, side, iterations, args.save_interval, scratch, sample)
            else:
                bare_skrl(handle, side, iterations, args.save_interval, scratch, sample)
        handle.close()
        sample.iterations = iterations
    sample.mark("end")
    return {"side": side, "backend": backend_name, "length": iterations, "extra": extra,
            "marks": sample.marks, "threads": sample.threads, "hook_cpu": sample.hook_cpu,
            "hook_calls": sample.hook_calls, "iterations": sample.iterations}


def timed_phase(method: Callable[..., Any], sample: Sample, label: str) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        sample.mark(f"{label}_start")
        try:
            return method(*args, **kwargs)
        finally:
            sample.mark(f"{label}_end")

    return timed


def bare_rsl_rl(handle: Any, side: str, iterations: int, save_interval: int, scratch: str,
                sample: Sample) -> None:
    import torch
    from rsl_rl.runners import OnPolicyRunner

    from training.backends import rsl_rl_compat

    cfg = rsl_rl_compat.runner_cfg(dict(handle.agent_cfg, save_interval=save_interval))
    cfg["seed"] = handle.seed
    torch.manual_seed(handle.seed)
    runner = OnPolicyRunner(handle.env, cfg, log_dir=scratch if side == "bare-logger" else None,
                            device="cpu")
    sample.mark("loop_start")
    runner.learn(iterations, init_at_random_ep_len=True)
    sample.mark("loop_end")


def bare_skrl(handle: Any, side: str, iterations: int, save_interval: int, scratch: str,
              sample: Sample) -> None:
    from skrl.utils.runner.torch import Runner

    from training.backends import skrl_compat

    cfg = skrl_compat.runner_cfg(handle.agent_cfg, directory=scratch)
    cfg["seed"] = handle.seed
    rollouts = int(cfg["agent"]["rollouts"])
    if side == "bare-logger":  # skrl's TensorBoard writer every iteration, its checkpoints
        cfg["agent"]["experiment"].update(write_interval=rollouts,
                                          checkpoint_interval=save_interval * rollouts)
    runner = Runner(handle.env, cfg)
    skrl_compat.set_timesteps(runner.trainer, iterations * rollouts)
    sample.mark("loop_start")
    runner.run("train")
    sample.mark("loop_end")


def forked(function: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """function(*args) in a child forked from this (warm) process; its result as JSON."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        code = 0
        try:
            result = json.dumps(function(*args))
        except BaseException as error:  # noqa: BLE001 - reported to the parent
            result, code = json.dumps({"error": f"{type(error).__name__}: {error}"}), 1
        with os.fdopen(write_end, "w") as out:
            out.write(result)
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as answer:
        text = answer.read()
    os.waitpid(pid, 0)
    data = json.loads(text)
    if "error" in data:
        raise SystemExit(f"sample {args[:2]} failed: {data['error']}")
    return data


# --- figures ----------------------------------------------------------------------------------


def spans(data: dict[str, Any]) -> dict[str, float]:
    """Derived times of one sample (seconds)."""
    marks = data["marks"]

    def delta(start: str, end: str, part: int) -> float:
        return marks[end][part] - marks[start][part]

    wall, cpu, thread = (delta("start", "end", part) for part in range(3))
    loop_wall, loop_cpu, loop_thread = (delta("loop_start", "loop_end", part)
                                        for part in range(3))
    figures = {"wall": wall, "cpu": cpu, "thread": thread, "loop_wall": loop_wall,
               "loop_cpu": loop_cpu, "loop_thread": loop_thread,
               "loop_background": loop_cpu - loop_thread, "outside_wall": wall - loop_wall,
               "hook_cpu": data["hook_cpu"]}
    for phase in ("enter", "finish", "exit", "export"):
        if f"{phase}_start" in marks:
            figures[f"{phase}_wall"] = delta(f"{phase}_start", f"{phase}_end", 0)
            figures[f"{phase}_cpu"] = delta(f"{phase}_start", f"{phase}_end", 1)
    return figures


def median_range(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def fmt(values: list[float], scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
    """median (min to max)"""
    middle, low, high = (value * scale for value in median_range(values))
    return f"{middle:.{digits}f}{unit} ({low:.{digits}f} to {high:.{digits}f})"


def of_side(samples: list[dict[str, Any]], side: str) -> list[dict[str, Any]]:
    return [s for s in samples if s["side"] == side]


def per_round(samples: list[dict[str, Any]], baseline: str, lengths: tuple[int, int]
              ) -> dict[str, list[float]]:
    """Slopes over the two run lengths and the costs outside the loop, launcher minus
    `baseline`, one value per round (two per round for the fixed costs: one per length)."""
    short, long = lengths

    def pick(side: str, length: int, round_: int) -> dict[str, float]:
        return next(spans(s) for s in samples
                    if s["side"] == side and s["length"] == length and s["round"] == round_)

    out: dict[str, list[float]] = {key: [] for key in (
        "iteration_ms", "cpu_ms", "cpu_pct", "thread_ms", "thread_pct", "fixed_s", "fixed_cpu_s",
        "tracking_s", "tracking_cpu_s", "run_cpu_pct", "run_wall_pct", "run_s")}
    for round_ in sorted({s["round"] for s in samples}):
        ours = [pick("launcher", n, round_) for n in lengths]
        base = [pick(baseline, n, round_) for n in lengths]

        def slope(side: list[dict[str, float]], key: str) -> float:
            return (side[1][key] - side[0][key]) / (long - short)

        for key, name in (("cpu", "cpu"), ("loop_thread", "thread")):
            ours_slope, base_slope = slope(ours, key), slope(base, key)
            out[f"{name}_ms"].append(1000 * (ours_slope - base_slope))
            out[f"{name}_pct"].append(100 * (ours_slope / base_slope - 1))
        out["iteration_ms"].append(1000 * slope(base, "cpu"))
        # The whole longer run (the timed part: env, training, the launcher's start and end).
        out["run_cpu_pct"].append(100 * (ours[1]["cpu"] / base[1]["cpu"] - 1))
        out["run_wall_pct"].append(100 * (ours[1]["wall"] / base[1]["wall"] - 1))
        out["run_s"].append(base[1]["wall"])
        for n in range(2):
            out["fixed_s"].append(ours[n]["outside_wall"] - base[n]["outside_wall"])
            out["fixed_cpu_s"].append((ours[n]["cpu"] - ours[n]["loop_cpu"])
                                      - (base[n]["cpu"] - base[n]["loop_cpu"]))
            out["tracking_s"].append(out["fixed_s"][-1] - ours[n].get("export_wall", 0.0))
            out["tracking_cpu_s"].append(out["fixed_cpu_s"][-1] - ours[n].get("export_cpu", 0.0))
    return out


def direct(samples: list[dict[str, Any]], baseline: str) -> dict[str, list[float]]:
    """Per iteration, one value per launcher sample: CPU inside our hooks on the training
    thread, CPU of the other threads during the loop over the bare library's (the median of
    its samples), their sum as % of the bare library's CPU per iteration of the loop."""
    base = [(spans(s), s["iterations"]) for s in of_side(samples, baseline)]
    base_background = statistics.median(b["loop_background"] / n for b, n in base)
    base_iteration = statistics.median(b["loop_cpu"] / n for b, n in base)
    out: dict[str, list[float]] = {"hooks_ms": [], "background_ms": [], "pct": [],
                                   "iteration_ms": [1000 * base_iteration]}
    for sample in of_side(samples, "launcher"):
        figures, n = spans(sample), sample["iterations"]
        hooks = figures["hook_cpu"] / n
        background = figures["loop_background"] / n - base_background
        out["hooks_ms"].append(1000 * hooks)
        out["background_ms"].append(1000 * background)
        out["pct"].append(100 * (hooks + background) / base_iteration)
    return out


def thread_shares(samples: list[dict[str, Any]]) -> dict[str, list[float]]:
    """ms of CPU per iteration of each of the launcher's other threads during the loop."""
    out: dict[str, list[float]] = {}
    for sample in of_side(samples, "launcher"):
        before, after = sample["threads"]["loop_start"], sample["threads"]["loop_end"]
        for name, seconds in after.items():
            out.setdefault(name, []).append(
                1000 * (seconds - before.get(name, 0.0)) / sample["iterations"])
    return out


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    short, long = args.lengths
    per_iteration = [
        "| backend | metric names | baseline | baseline CPU per iteration (loop) | direct: hooks + "
        "background threads, ms per iteration | direct, % of an iteration | slope of process "
        "CPU, ms per iteration | same, % | slope of training-thread CPU, % |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    fixed = ["| backend | metric names | baseline | fixed wall, all | fixed CPU, all | "
             "tracking: fixed wall without the export | tracking: fixed CPU without it |",
             "|---|---:|---|---:|---:|---:|---:|"]
    whole = [f"| backend | metric names | baseline | baseline run ({long} iterations), wall | "
             "launcher over it, CPU | launcher over it, wall |", "|---|---:|---|---:|---:|---:|"]
    phases = ["| backend | metric names | start | finish, tracking | finish, policy export "
              "(wall) | policy export (CPU) | exit |", "|---|---:|---:|---:|---:|---:|---:|"]
    names = ("mlflow-metrics", "checkpoint-uploads", "SystemMetricsMonitor", "progress-lines")
    threads = ["| backend | metric names | " + " | ".join(names) + " | others |",
               "|---|---:|" + "---:|" * (len(names) + 1)]
    for backend in args.backends:
        for extra in args.extra_metrics:
            samples = [r for r in results if r["backend"] == backend and r["extra"] == extra]
            ours = of_side(samples, "launcher")
            count = f"{statistics.median(s['metric_names'] for s in ours):.0f}"
            for baseline in args.baselines:
                slopes = per_round(samples, baseline, (short, long))
                mine = direct(samples, baseline)
                per_iteration.append(
                    f"| {backend} | {count} | {baseline} "
                    f"| {fmt(mine['iteration_ms'], digits=1, unit=' ms')}"
                    f" | {fmt(mine['hooks_ms'], digits=3)} + {fmt(mine['background_ms'], digits=3)}"
                    f" | **{fmt(mine['pct'], unit=' %')}** | {fmt(slopes['cpu_ms'], unit=' ms')} "
                    f"| {fmt(slopes['cpu_pct'], digits=1, unit=' %')} "
                    f"| {fmt(slopes['thread_pct'], digits=1, unit=' %')} |")
                fixed.append(f"| {backend} | {count} | {baseline} | "
                             f"{fmt(slopes['fixed_s'], unit=' s')} | "
                             f"{fmt(slopes['fixed_cpu_s'], unit=' s')} | "
                             f"**{fmt(slopes['tracking_s'], unit=' s')}** | "
                             f"{fmt(slopes['tracking_cpu_s'], unit=' s')} |")
                whole.append(f"| {backend} | {count} | {baseline} | "
                             f"{fmt(slopes['run_s'], digits=1, unit=' s')} | "
                             f"**{fmt(slopes['run_cpu_pct'], unit=' %')}** | "
                             f"{fmt(slopes['run_wall_pct'], unit=' %')} |")
            figures = [spans(o) for o in ours]
            phases.append(f"| {backend} | {count} | " + " | ".join(
                fmt(values, unit=" s") for values in (
                    [f["enter_wall"] for f in figures],
                    [f["finish_wall"] - f.get("export_wall", 0.0) for f in figures],
                    [f.get("export_wall", 0.0) for f in figures],
                    [f.get("export_cpu", 0.0) for f in figures],
                    [f["exit_wall"] for f in figures])) + " |")
            shares = thread_shares(samples)
            others = [sum(values) for values in zip(*(v for k, v in shares.items()
                                                      if k not in names), strict=True)]
            threads.append(f"| {backend} | {count} | " + " | ".join(
                fmt(shares[name], digits=3) if name in shares else "-" for name in names)
                + f" | {fmt(others, digits=3) if others else '-'} |")
    rounds = f"{args.rounds} round{'s' if args.rounds > 1 else ''}"
    return "\n".join([
        f"{args.task}, {args.num_envs} envs, a checkpoint every {args.save_interval} "
        f"iterations, runs of {short} and {long} iterations, {rounds}; median (min to max); "
        f"load average {args.load[0]:.1f} at the start, {args.load[1]:.1f} at the end.",
        "", "Per iteration, launcher over the bare library:", "", *per_iteration,
        "", "Fixed per run (outside the training loop), launcher over the bare library:", "",
        *fixed, "", f"Whole runs of {long} iterations (everything the sample times: env, "
        "training and the launcher's start and end, policy export included), launcher over "
        "the bare library, per round:", "", *whole, "",
        "The launcher's phases (wall unless said): start = experiment, run, params, "
        "cfg files, senders; finish, tracking = pending uploads, metrics, final checkpoint, "
        "resume tag; finish, policy export = TorchScript, ONNX, their checks, the MLflow model, "
        "their upload (training.policy_export); exit = close the senders, end the run:", "",
        *phases,
        "", "The launcher's other threads during the loop, ms of CPU per iteration:", "",
        *threads])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="rsl_rl,skrl", type=lambda v: v.split(","))
    parser.add_argument("--extra-metrics", default="0,60",
                        type=lambda v: [int(x) for x in v.split(",")])
    parser.add_argument("--lengths", default="15,45",
                        type=lambda v: [int(x) for x in v.split(",")])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--task", default="HalfCheetah-v5")
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--save-interval", type=int, default=10)
    parser.add_argument("--baselines", default=",".join(SIDES[1:]),
                        type=lambda v: v.split(","), help="bare-logger, bare-off or both")
    parser.add_argument("--json", type=Path, help="also write every sample here")
    args = parser.parse_args()
    if len(args.lengths) != 2 or args.lengths[0] >= args.lengths[1]:
        parser.error("--lengths takes two run lengths, the shorter first (e.g. 15,45)")
    if not args.baselines or not set(args.baselines) <= set(SIDES[1:]):
        parser.error(f"--baselines takes {' and/or '.join(SIDES[1:])}")

    from support.mlflow_server import MlflowServer

    from training import launch

    # The environment the launcher gives MLflow before importing it (telemetry off, ...).
    for name, value in launch.ENVIRONMENT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    # Everything the samples use, imported once here; each sample is a fork of this process.
    import mlflow  # noqa: F401
    import rsl_rl.runners  # noqa: F401
    import skrl.utils.runner.torch  # noqa: F401
    import torch  # noqa: F401
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401

    from training import session, tracking  # noqa: F401
    from training.backends import load_backend

    for name in args.backends:
        load_backend(name)
    # A SIGTERM (timeout, kill) ends the run through `finally`, which stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory() as scratch:
        server = MlflowServer(Path(scratch) / "server").start()
        try:
            os.environ.update(MLFLOW_TRACKING_URI=server.url, SKIP_PIP_INSTALL="1",
                              TRAINING_OUTPUT_DIR=str(Path(scratch) / "out"))
            load_before = os.getloadavg()[0]
            results = list(collect(args, server.url))
            args.load = (load_before, os.getloadavg()[0])
        finally:
            server.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print()
    print(report(results, args))


def collect(args: argparse.Namespace, url: str) -> Iterator[dict[str, Any]]:
    sides = ("launcher", *args.baselines)
    total = args.rounds * len(args.backends) * len(args.extra_metrics) * 2 * len(sides)
    done, started = 0, time.monotonic()
    for round_ in range(args.rounds):
        for backend in args.backends:
            for extra in args.extra_metrics:
                order = [(length, side) for length in args.lengths for side in sides]
                shift = round_ % len(order)
                for length, side in order[shift:] + order[:shift]:
                    data = forked(run_sample, side, backend, args, length, extra)
                    data["round"] = round_
                    data["metric_names"] = stored_metric_names(url, data)
                    done += 1
                    figures = spans(data)
                    print(f"[{done}/{total} {time.monotonic() - started:.0f} s] round "
                          f"{round_ + 1} {backend} +{extra} {side} {length} it: wall "
                          f"{figures['wall']:.2f} s, cpu {figures['cpu']:.2f} s, loop "
                          f"{figures['loop_cpu']:.2f} s cpu", flush=True)
                    yield data


def stored_metric_names(url: str, data: dict[str, Any]) -> float:
    """Metric names (system metrics aside) of the launcher's last run; 0 for the bare library."""
    if data["side"] != "launcher":
        return 0.0
    from mlflow import MlflowClient

    client = MlflowClient(url)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              order_by=["attributes.start_time DESC"], max_results=1)
    names = [key for key in runs[0].data.metrics if not key.startswith("system/")]
    return float(len(names))


if __name__ == "__main__":
    main()
