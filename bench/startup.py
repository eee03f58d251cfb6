"""Start-up of `python -m training.launch` with every requirement present.

Measures the seconds from process start to the first iteration line (`it 1/...`), with the
intermediate milestones, and proves that no package index is contacted: pip's index and
extra index point at a local listener that counts connections (any pip run would hit it).
Tracking is the default local sqlite store, so no network at all is needed.

    .venv/bin/python bench/startup.py [--runs 3] [--task InvertedPendulum-v5]
"""

from __future__ import annotations

import argparse
import os
import socketserver
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MILESTONES = {"tracking: ": "tracking resolved", "run ": "MLflow run started",
              "it 1/": "first iteration"}


class CountingIndex(socketserver.ThreadingTCPServer):
    """Accepts and counts connections; answers nothing (a package index that is never used)."""

    daemon_threads = True
    connections = 0

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), socketserver.BaseRequestHandler)

    def process_request(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        type(self).connections += 1
        self.shutdown_request(request)


def one_run(args: argparse.Namespace, index_url: str, output_dir: Path) -> dict[str, float]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("SKIP_PIP_INSTALL", "MLFLOW_TRACKING_URI")}
    env |= {"PIP_INDEX_URL": index_url, "PIP_EXTRA_INDEX_URL": index_url, "PIP_FIND_LINKS": "",
            "PIP_NO_INDEX": "", "TRAINING_OUTPUT_DIR": str(output_dir),
            "PYTHONPATH": str(REPO / "src")}
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "training.launch", "--task", args.task, "--num_envs", "8",
         "--max_iterations", "2", "--headless"],
        env=env, cwd=output_dir, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    seen: dict[str, float] = {}
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("installed missing packages"):
            raise SystemExit(f"the launcher installed something: {line.strip()}")
        for prefix, name in MILESTONES.items():
            if line.startswith(prefix) and name not in seen:
                seen[name] = time.perf_counter() - start
    if process.wait() != 0 or len(seen) != len(MILESTONES):
        raise SystemExit(f"launcher run failed (exit {process.returncode}); saw {seen}")
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--task", default="InvertedPendulum-v5")
    args = parser.parse_args()

    index = CountingIndex()
    threading.Thread(target=index.serve_forever, daemon=True).start()
    index_url = f"http://127.0.0.1:{index.server_address[1]}/simple/"
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for number in range(args.runs):
            output_dir = Path(scratch) / f"run{number}"
            output_dir.mkdir()
            results.append(one_run(args, index_url, output_dir))
            print(f"run {number + 1}: " + ", ".join(f"{name} {seconds:.2f} s"
                                                   for name, seconds in results[-1].items()),
                  flush=True)
    index.shutdown()
    medians = {name: statistics.median(r[name] for r in results) for name in MILESTONES.values()}
    print(f"{args.task}, median of {args.runs}: " + ", ".join(
        f"{name} at {seconds:.2f} s" for name, seconds in medians.items()))
    print(f"package index connections: {CountingIndex.connections}")
    if CountingIndex.connections:
        raise SystemExit("the launcher contacted a package index")


if __name__ == "__main__":
    main()
