"""Payload size: the seed's method (`zip -qr` + `base64`) against ours, on the same trees.

    .venv/bin/python bench/payload_size.py

The seed zipped src/training as it was on disk; a tree as a user has it after a local run
holds caches, checkpoints and logs. Ours leaves those out and packs the rest deterministically.
"""

from __future__ import annotations

import compileall
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

from osmo_inline.payload import base64_size, build_payload

REPO = Path(__file__).resolve().parents[1]
ARGV_LIMIT = 128 * 1024
CACHES = ("__pycache__", ".pytest_cache", "logs", "outputs")


def clean_project(root: Path) -> Path:
    """A project dir with the template and a copy of src/training without any caches."""
    (root / "templates").mkdir(parents=True)
    shutil.copy(REPO / "templates" / "isaaclab-inline.yaml", root / "templates")
    shutil.copytree(REPO / "src" / "training", root / "src" / "training",
                    ignore=shutil.ignore_patterns(*CACHES, "*.pyc"))
    return root


def used_project(root: Path, checkpoints: int = 3, checkpoint_bytes: int = 400_000) -> Path:
    """clean_project plus what training and testing leave behind in src/training."""
    clean_project(root)
    source = root / "src" / "training"
    compileall.compile_dir(source, quiet=1)  # real __pycache__/*.pyc
    cache = source / ".pytest_cache" / "v" / "cache"
    cache.mkdir(parents=True)
    (cache / "nodeids").write_text('["tests/test_x.py::test_a"]\n')
    run = source / "logs" / "rsl_rl" / "anymal_c_rough" / "2026-01-01_12-00-00"
    run.mkdir(parents=True)
    rng = random.Random(0)  # fixed bytes: the numbers repeat run to run
    for index in range(checkpoints):
        (run / f"model_{index * 50}.pt").write_bytes(rng.randbytes(checkpoint_bytes))
    (run / "events.out.tfevents.1767268800").write_bytes(rng.randbytes(64_000))
    hydra = source / "outputs" / "2026-01-01" / "12-00-00" / ".hydra"
    hydra.mkdir(parents=True)
    (hydra / "config.yaml").write_text("seed: 42\nnum_envs: 2048\n" * 20)
    return root


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def seed_size(project: Path) -> int:
    """Bytes of base64 text the seed produced (`base64 -w0` of `zip -qr` of src/training)."""
    zip_path = project / "seed.zip"
    subprocess.run(["zip", "-qr", str(zip_path), "src/training"], cwd=project, check=True)
    encoded = subprocess.run(["base64", "-w0", str(zip_path)], check=True,
                             capture_output=True).stdout
    zip_path.unlink()
    return len(encoded)


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for label, make in (("clean src/training", clean_project),
                            ("after a local run (caches, logs, checkpoints)", used_project)):
            project = make(Path(scratch) / label.split()[0])
            source = project / "src" / "training"
            ours = base64_size(len(build_payload(source).zip_bytes))
            seed = seed_size(project)
            rows.append((label, tree_bytes(source), seed, ours))
    print("| tree | tree bytes | seed base64 | ours base64 | ours / seed | seed fits argv "
          "(128 KiB)? |")
    print("|---|---:|---:|---:|---:|---|")
    for label, tree, seed, ours in rows:
        print(f"| {label} | {tree:,} | {seed:,} | {ours:,} | {ours / seed:.3f} "
              f"({(1 - ours / seed) * 100:.1f}% smaller) | {'yes' if seed <= ARGV_LIMIT else 'no'}"
              " |")


if __name__ == "__main__":
    main()
