"""python -m training.sweep_report RECORD --png OUT: a sweep's table, plot and parent run
(`--prepare-store`: only create a fresh store's tables, before a local sweep's tasks start).

RECORD is the client's `.tmp/sweeps/<sweep id>.json` (grid, tasks, each task's workflow id).
Each task's MLflow run is found by its `workflow_id` tag (what the runtime tags every run
with; a sweep task's is `<workflow id>-t<index>`), so this works on runs that a runtime
without sweep support made. Then:

- one parent run per sweep (tag `sweep.id`, `sweep.parent=true`), found again or created in
  the runs' experiment; each task's run gets `mlflow.parentRunId` (MLflow's own nesting tag,
  which its UI shows as a tree), `sweep.id`, `sweep.task` and `sweep.value.<key>`;
- a table on stdout: one row per combination of the values other than `seed`, with its
  seeds, the final mean return (`Train/mean_reward` at the last iteration) as mean ± std over
  the seeds, and the best iteration of the seed-mean curve;
- a PNG of the learning curves (mean ± std across seeds per combination), written to --png
  and logged to the parent run with the table (`sweep/`).

Exit 0; 2 for a bad record; 5 when a task's run is missing from the store (the table and
plot still cover the runs found).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REWARD_METRIC = "Train/mean_reward"
SEED_KEY = "seed"
PARENT_TAG = "mlflow.parentRunId"
EXIT_BAD_INPUT, EXIT_MISSING = 2, 5


def sweep_tags(environ: Mapping[str, str]) -> dict[str, str]:
    """Tags for a sweep task's run at its start (SWEEP_ID, SWEEP_TASK, and `sweep.value.<key>`
    from SWEEP_VALUES, the JSON object of the task's values); empty outside a sweep. For the
    launcher's run tags: a sweep's runs carry their values before any report links them."""
    sweep_id, label = environ.get("SWEEP_ID", ""), environ.get("SWEEP_TASK", "")
    if not sweep_id:
        return {}
    try:
        values = json.loads(environ.get("SWEEP_VALUES", "") or "{}")
    except ValueError:
        values = {}  # the client writes it; a hand-made task may not: its label still tells
    tags = {"sweep.id": sweep_id, "sweep.task": label}
    if isinstance(values, dict):
        tags.update({f"sweep.value.{key}": str(value) for key, value in values.items()})
    return tags


def group_label(values: Mapping[str, str]) -> str:
    rest = {k: v for k, v in values.items() if k != SEED_KEY}
    return ",".join(f"{k}={v}" for k, v in rest.items()) or "(all)"


def find_runs(client: Any, tasks: Sequence[Mapping[str, Any]]) -> dict[int, Any]:
    """Task index -> its newest run with that workflow id, over every experiment."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = {}
    for task in tasks:
        runs = client.search_runs(experiments,
                                  filter_string=f"tags.workflow_id = '{task['workflow_id']}'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
        if runs:
            found[task["index"]] = runs[0]
    return found


def parent_run(client: Any, experiment_id: str, sweep_id: str) -> str:
    existing = client.search_runs(
        [experiment_id], filter_string=f"tags.`sweep.id` = '{sweep_id}' and "
        "tags.`sweep.parent` = 'true'", order_by=["attributes.start_time ASC"], max_results=1)
    if existing:
        return existing[0].info.run_id
    run = client.create_run(experiment_id, run_name=sweep_id,
                            tags={"sweep.id": sweep_id, "sweep.parent": "true"})
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def link(client: Any, run_id: str, parent_id: str, sweep_id: str,
         task: Mapping[str, Any]) -> None:
    client.set_tag(run_id, PARENT_TAG, parent_id)
    client.set_tag(run_id, "sweep.id", sweep_id)
    client.set_tag(run_id, "sweep.task", task["label"])
    for key, value in task["values"].items():
        client.set_tag(run_id, f"sweep.value.{key}", value)


def curve(client: Any, run_id: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, REWARD_METRIC)}


def summarise(curves: Mapping[str, Sequence[tuple[str, dict[int, float]]]]) -> list[dict]:
    """Per combination: seeds, final return mean ± std, best iteration, the mean/std curve
    (over the steps every run with metrics has: a run that logged none, e.g. one that failed
    before its first iteration, is left out of the numbers, not allowed to empty them)."""
    rows = []
    for label, runs in curves.items():
        logged = [c for _, c in runs if c]
        finals = [c[max(c)] for c in logged]
        steps = sorted(set.intersection(*(set(c) for c in logged))) if logged else []
        means = [statistics.fmean(c[s] for c in logged) for s in steps]
        stds = [statistics.pstdev([c[s] for c in logged]) for s in steps]
        best = steps[max(range(len(means)), key=means.__getitem__)] if means else None
        rows.append({"combination": label, "seeds": [seed for seed, _ in runs],
                     "final_mean": statistics.fmean(finals) if finals else float("nan"),
                     "final_std": statistics.pstdev(finals) if finals else float("nan"),
                     "best_iteration": best, "steps": steps, "means": means, "stds": stds})
    return rows


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    header = ("combination", "seeds", "final mean return", "best iteration")
    body = [(r["combination"], ",".join(r["seeds"]),
             f"{r['final_mean']:.2f} ± {r['final_std']:.2f}",
             "-" if r["best_iteration"] is None else str(r["best_iteration"])) for r in rows]
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
             .rstrip() for line in (header, *body)]
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[Mapping[str, Any]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: render to a file
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, axes = plt.subplots(figsize=(8, 5), dpi=100)
    for row in rows:
        means, stds = row["means"], row["stds"]
        axes.plot(row["steps"], means, label=f"{row['combination']} ({len(row['seeds'])} seeds)")
        axes.fill_between(row["steps"], [m - s for m, s in zip(means, stds, strict=True)],
                          [m + s for m, s in zip(means, stds, strict=True)], alpha=0.25)
    axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes.set_xlabel("iteration")
    axes.set_ylabel("mean return (Train/mean_reward)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def prepare_store() -> int:
    """Create the tables of the store at MLFLOW_TRACKING_URI (MLflow migrates a new sqlite
    database when a client first opens it). Run once before a local sweep's tasks start side
    by side: each would run that migration on the same fresh file, and all but one fail."""
    from mlflow import MlflowClient

    MlflowClient().search_experiments(max_results=1)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.sweep_report")
    parser.add_argument("record", type=Path, nargs="?",
                        help="the client's .tmp/sweeps/<id>.json")
    parser.add_argument("--png", type=Path, help="where to write the plot")
    parser.add_argument("--prepare-store", action="store_true",
                        help="only create the tracking store's tables, then exit")
    args = parser.parse_args(argv)
    if args.prepare_store:
        return prepare_store()
    if args.record is None or args.png is None:
        parser.error("give RECORD and --png (or --prepare-store)")
    try:
        record = json.loads(args.record.read_text())
        sweep_id, tasks = record["sweep_id"], record["tasks"]
    except (OSError, ValueError, KeyError) as error:
        print(f"sweep report: cannot read {args.record}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from mlflow import MlflowClient

    client = MlflowClient()
    runs = find_runs(client, tasks)
    missing = [t["label"] for t in tasks if t["index"] not in runs]
    if not runs:
        print(f"sweep {sweep_id}: no run of its {len(tasks)} tasks in the store",
              file=sys.stderr)
        return EXIT_MISSING
    parent_id = parent_run(client, next(iter(runs.values())).info.experiment_id, sweep_id)
    curves: dict[str, list[tuple[str, dict[int, float]]]] = {}
    for task in tasks:
        run = runs.get(task["index"])
        if run is None:
            continue
        link(client, run.info.run_id, parent_id, sweep_id, task)
        seed = task["values"].get(SEED_KEY, run.data.params.get(SEED_KEY, "?"))
        curves.setdefault(group_label(task["values"]), []).append(
            (seed, curve(client, run.info.run_id)))
    rows = summarise(curves)
    text = table(rows)
    print(f"sweep {sweep_id} ({record.get('task', '')}), parent run {parent_id}:\n{text}",
          end="")
    plot(rows, f"{record.get('task', '')}: sweep {sweep_id}", args.png)
    client.log_artifact(parent_id, str(args.png), artifact_path="sweep")
    client.log_text(parent_id, text, "sweep/report.txt")
    print(f"learning curves: {args.png}")
    if missing:
        print(f"sweep {sweep_id}: no run found for {', '.join(missing)}", file=sys.stderr)
        return EXIT_MISSING
    return 0


if __name__ == "__main__":
    sys.exit(main())
