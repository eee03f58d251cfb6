"""Chaos: kill a local training run at a random iteration, rerun it, count what was lost.

Each trial runs `submit-training --local --workflow-id <id>` (a 30-iteration HalfCheetah-v5
run, 4 envs, a checkpoint every 5 iterations) in a scratch copy of the project, SIGKILLs the
task's whole process group (what an OOM kill or a lost node does to a pod) when the progress
line of a randomly drawn iteration K shows, then reruns the same command with the same workflow
id, as OSMO reschedules a failed task. The rerun must finish; its auto-resume line says which
checkpoint R it resumed from, so K - R iterations were lost. Afterwards every checkpoint in
the store must download with its recorded sha256, every save (each multiple of the save
interval and the last iteration) must be there, and checkpoints/final must hold the last
iteration.

    .venv/bin/python bench/chaos.py                        # 10 kills, prints a table
    .venv/bin/python bench/chaos.py --kills 3 --seed 7     # replay a run's choices
    .venv/bin/python bench/chaos.py --write-results        # also into bench/RESULTS.md

Nothing is written into the repository except with --write-results; the project-local MLflow
store lives in the scratch copy, which is removed afterwards (kept when a trial fails).
Exit code 0 only when every rerun finished and no checkpoint was lost or corrupt.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from local_overhead import REPO_ROOT, make_project
from mlflow import MlflowClient

from osmo_inline.local_plan import LocalStore

sys.path.insert(0, str(REPO_ROOT / "tests"))
sys.path.insert(0, str(REPO_ROOT / "tests" / "resilience"))
from faults import (  # noqa: E402
    RESUMED,
    audit_checkpoints,
    expected_saves,
    find_line,
    last_progress,
    runs_of_workflow,
)
from runtime.launcher_runs import CONTRACT_VARIABLES  # noqa: E402
from support.streamed import StreamedProcess  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "RESULTS.md"  # its "## Chaos" section is replaced
ATTEMPT_TIMEOUT_S = 900.0
# Set in a developer's shell, these would reach the task: the local executor's environment
# is the shell's with the rendered spec's on top, and the spec does not set all of them.
LEAKY_VARIABLES = (*CONTRACT_VARIABLES, "_MLFLOW_SERVER_ARTIFACT_ROOT")


@dataclass
class Trial:
    workflow_id: str
    kill_at: int  # the drawn iteration
    killed_at: int  # the last progress line before the task died
    killed_exit: int  # submit-training's exit code for the killed attempt
    resumed_from: int  # the rerun's auto-resume checkpoint; 0 when it started over
    rerun_exit: int
    runs: int  # MLflow runs tagged with the workflow id (1: the rerun continued the same run)
    final_iteration: int | None
    lost: list[int]  # saves missing from the store
    corrupt: list[str]  # checkpoints in the store whose bytes do not match
    rerun_s: float

    @property
    def iterations_lost(self) -> int:
        return self.killed_at - self.resumed_from

    def ok(self, iterations: int) -> bool:
        return (self.rerun_exit == 0 and self.final_iteration == iterations and self.runs == 1
                and not self.lost and not self.corrupt)


def kill_task_group(client_process: StreamedProcess) -> None:
    """SIGKILL the task's process group. The local executor starts the task in a session of
    its own, so the task is the client's child and leads its group; submit-training itself
    survives and reports the task's death, as OSMO would."""
    for child in psutil.Process(client_process.process.pid).children():
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_trial(number: int, options: argparse.Namespace, rng: random.Random, project: Path,
              env: dict[str, str], client: MlflowClient) -> Trial:
    workflow_id = f"chaos-{options.seed}-{number}"
    argv = [sys.executable, "-m", "osmo_inline", "--local", "--workflow-id", workflow_id,
            "-t", options.task, "-b", "rsl_rl", "-n", str(options.num_envs),
            "-m", str(options.iterations),
            "--", f"save_interval={options.save_interval}",
            f"experiment_name={options.experiment}"]
    kill_at = rng.randint(1, options.iterations - 1)

    first = StreamedProcess(argv, env=env, cwd=project)
    try:
        first.wait_for(rf"^it {kill_at}/{options.iterations}\b", ATTEMPT_TIMEOUT_S)
        kill_task_group(first)
        killed_exit = first.finish(120)
    finally:
        first.stop_if_running()

    second = StreamedProcess(argv, env=env, cwd=project)
    started = time.monotonic()
    try:
        rerun_exit = second.finish(ATTEMPT_TIMEOUT_S)
    finally:
        second.stop_if_running()
    rerun_s = time.monotonic() - started
    (project / f"{workflow_id}-attempt-1.log").write_text(first.output + "\n")
    (project / f"{workflow_id}-attempt-2.log").write_text(second.output + "\n")
    resumed = find_line(second.lines, RESUMED)

    runs = runs_of_workflow(client, options.experiment, workflow_id)
    audits = [audit_checkpoints(client, run.info.run_id) for run in runs]
    finished = [audit for audit in audits if audit.final_iteration is not None]
    stored = finished[-1] if finished else None
    saves = expected_saves(options.iterations, options.save_interval)
    return Trial(
        workflow_id=workflow_id,
        kill_at=kill_at,
        killed_at=last_progress(first.lines),
        killed_exit=killed_exit,
        resumed_from=int(resumed.group(3)) if resumed else 0,
        rerun_exit=rerun_exit,
        runs=len(runs),
        final_iteration=stored.final_iteration if stored else None,
        lost=sorted(saves - stored.intact) if stored else sorted(saves),
        corrupt=[f"model_{it}.pt: {why}" for audit in audits
                 for it, why in sorted(audit.corrupt.items())],
        rerun_s=rerun_s,
    )


def report(trials: list[Trial], options: argparse.Namespace, command: str,
           elapsed_s: float) -> list[str]:
    lost = [trial.iterations_lost for trial in trials]
    lost_checkpoints = sum(len(trial.lost) for trial in trials)
    corrupt_checkpoints = sum(len(trial.corrupt) for trial in trials)
    failed = [trial for trial in trials if not trial.ok(options.iterations)]
    lines = [
        "## Chaos: random SIGKILLs of a local run, each followed by a rerun",
        "",
        f"{len(trials)} trials of `submit-training --local --workflow-id <id> -t {options.task}"
        f" -n {options.num_envs} -m {options.iterations} -- save_interval="
        f"{options.save_interval}`: the task's process group is SIGKILLed when the progress "
        f"line of a random iteration K in 1..{options.iterations - 1} shows, then the same "
        f"command runs again with the same workflow id. Seed {options.seed}; "
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), CPU only, "
        f"Python {platform.python_version()}; {elapsed_s / 60:.1f} min in all.",
        "",
        "| trial | killed at | resumed from | iterations lost | killed exit | rerun exit "
        "| rerun | final | runs | saves missing | corrupt |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for number, trial in enumerate(trials, 1):
        lines.append(
            f"| {number} | {trial.killed_at} | {trial.resumed_from} | {trial.iterations_lost} "
            f"| {trial.killed_exit} | {trial.rerun_exit} | {trial.rerun_s:.0f} s "
            f"| {trial.final_iteration} | {trial.runs} "
            f"| {', '.join(map(str, trial.lost)) or 0} | {len(trial.corrupt)} |")
    lines += [
        "",
        "Iterations lost = K - R: K is the last progress line before the kill, R the checkpoint"
        " the rerun resumed from (0: none was stored yet, so it started over in the same run). "
        "A kill right at a multiple of the save interval loses a whole interval: that "
        "iteration's progress line is printed before its checkpoint is written.",
        "",
        f"Iterations lost per kill: median **{statistics.median(lost):g}**, max "
        f"**{max(lost)}** (save interval {options.save_interval}). Lost or corrupt "
        f"checkpoints: **{lost_checkpoints + corrupt_checkpoints}** ({lost_checkpoints} saves "
        f"missing from the store, {corrupt_checkpoints} whose bytes do not match their "
        f"sha256). Reruns that did not reach iteration {options.iterations} in the same MLflow "
        f"run: **{len(failed)}**.",
    ]
    for trial in failed:
        lines.append(f"- {trial.workflow_id}: {trial}")
    lines += ["", f"Command: `{command}`"]
    return lines


def write_section(results: Path, section: str) -> None:
    """Replace the "## Chaos" section of the results file (or append it), keep the rest."""
    text = results.read_text() if results.exists() else ""
    start = text.find("\n## Chaos")
    if start < 0:
        results.write_text(text.rstrip() + "\n\n" + section)
        return
    end = text.find("\n## ", start + 1)
    rest = text[end:] if end >= 0 else ""
    results.write_text(text[:start].rstrip() + "\n\n" + section + rest)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="trials (default: 10)")
    parser.add_argument("--iterations", type=int, default=30, help="per run (default: 30)")
    parser.add_argument("--save-interval", type=int, default=5, help="(default: 5)")
    parser.add_argument("--seed", type=int, help="random kill points (default: a fresh seed)")
    parser.add_argument("--task", default="HalfCheetah-v5")
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--write-results", action="store_true",
                        help=f"also write {RESULTS.relative_to(REPO_ROOT)}")
    options = parser.parse_args()
    if options.kills < 1 or options.iterations < 2 or options.save_interval < 1:
        parser.error("--kills and --save-interval must be at least 1, --iterations at least 2")
    if options.seed is None:
        options.seed = random.SystemRandom().randrange(1 << 31)
    options.experiment = f"chaos-{options.seed}"
    command = shlex.join([".venv/bin/python", "bench/chaos.py", *sys.argv[1:]])
    if "--seed" not in sys.argv:
        command += f" --seed {options.seed}"

    work = Path(tempfile.mkdtemp(prefix="chaos-"))
    project = make_project(work / "project")
    env = {key: value for key, value in os.environ.items() if key not in LEAKY_VARIABLES}
    client = MlflowClient(tracking_uri=LocalStore.in_project(project).tracking_uri)
    rng = random.Random(options.seed)
    print(f"seed {options.seed}; scratch project {project}", flush=True)
    started = time.monotonic()
    trials: list[Trial] = []
    for number in range(1, options.kills + 1):
        trial = run_trial(number, options, rng, project, env, client)
        trials.append(trial)
        print(f"trial {number}/{options.kills}: killed at {trial.killed_at}, resumed from "
              f"{trial.resumed_from}, lost {trial.iterations_lost}, rerun exit "
              f"{trial.rerun_exit}, final {trial.final_iteration}, saves missing "
              f"{trial.lost or 0}, corrupt {len(trial.corrupt)}", flush=True)

    lines = report(trials, options, command, time.monotonic() - started)
    print("\n" + "\n".join(lines))
    passed = all(trial.ok(options.iterations) for trial in trials)
    if options.write_results:
        write_section(RESULTS, "\n".join(lines) + "\n")
    if passed:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept for inspection: {work} (attempt logs next to the project's files)",
              file=sys.stderr)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
