"""Checkpoint modes through the launcher, under each rsl-rl version Isaac Lab images ship,
and every bad checkpoint input: exit code, one clear line, no run left RUNNING. Real training
(subprocess under the version's rsl-rl), real sqlite store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pytest
import torch
from launcher_runs import (
    all_runs,
    artifact_names,
    assert_clean_failure,
    launcher_env,
    metric_steps,
    run_id_from,
    run_launcher,
    train_args,
)
from mlflow import MlflowClient
from support.mlflow_server import MlflowServer, SqliteStore

pytestmark = pytest.mark.slow


def _client(store: SqliteStore) -> MlflowClient:
    mlflow.set_tracking_uri(store.uri)
    mlflow.set_registry_uri(store.uri)
    return MlflowClient()


def _final(client: MlflowClient, run_id: str, into: Path) -> tuple[dict[str, Any], Path]:
    folder = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/checkpoints/final",
                                                      dst_path=str(into)))
    manifest = json.loads((folder / "checkpoint.json").read_text())
    return manifest, folder / manifest["file"]


def _adam_steps(checkpoint: Path) -> float:
    """Optimizer updates so far: Adam's per-parameter step count (resets when fresh)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return float(next(iter(state["optimizer_state_dict"]["state"].values()))["step"])


def _normalizer_count(checkpoint: Path) -> float:
    """Observations the policy's normaliser has seen (kept by warm-start and resume)."""
    def find(tree: Any, inside_norm: bool) -> float | None:
        if isinstance(tree, dict):
            for key, value in tree.items():
                hit = find(value, inside_norm or "norm" in str(key))
                if hit is not None:
                    return hit
                if inside_norm or "norm" in str(key):
                    if str(key).endswith("count") and torch.is_tensor(value):
                        return float(value)
        return None

    count = find(torch.load(checkpoint, map_location="cpu", weights_only=False), False)
    assert count is not None, f"no observation normaliser in {checkpoint}"
    return count


def test_resume_and_warm_start(rslrl_version: str, sqlite_store: SqliteStore,
                               tmp_path: Path) -> None:
    client = _client(sqlite_store)
    env = launcher_env(sqlite_store.uri, tmp_path / "out", version=rslrl_version)
    first = run_launcher(env, *train_args(6, "--save-interval", "2"), cwd=sqlite_store.root)
    assert first.returncode == 0, first.stderr
    first_id = run_id_from(first.stdout)
    assert {"model_2.pt", "model_4.pt", "model_6.pt"} <= artifact_names(client, first_id,
                                                                        "checkpoints")
    manifest, at_6 = _final(client, first_id, tmp_path / "six")
    assert manifest["iteration"] == 6 and manifest["rsl_rl_version"] == rslrl_version
    updates_per_iteration = _adam_steps(at_6) / 6
    samples_per_iteration = _normalizer_count(at_6) / 6

    uri = f"runs:/{first_id}/checkpoints/final"
    resumed = run_launcher(env, *train_args(10, "--save-interval", "2", "--checkpoint-mode",
                                            "resume", "--checkpoint-uri", uri),
                           cwd=sqlite_store.root)
    assert resumed.returncode == 0, resumed.stderr
    assert "iteration 6" in resumed.stdout and "it 7/10" in resumed.stdout
    resumed_id = run_id_from(resumed.stdout)
    assert metric_steps(client, resumed_id, "Train/mean_reward") == [6, 7, 8, 9]
    manifest, at_10 = _final(client, resumed_id, tmp_path / "ten")
    assert manifest["iteration"] == 10 and manifest["source_checkpoint_uri"] == uri
    # The optimizer went on from the saved one: 10 iterations of updates in total.
    assert _adam_steps(at_10) == pytest.approx(10 * updates_per_iteration)

    warm = run_launcher(env, *train_args(3, "--checkpoint-mode", "warm-start",
                                         "--checkpoint-uri", uri), cwd=sqlite_store.root)
    assert warm.returncode == 0, warm.stderr
    warm_id = run_id_from(warm.stdout)
    assert metric_steps(client, warm_id, "Train/mean_reward") == [0, 1, 2]
    manifest, at_3 = _final(client, warm_id, tmp_path / "warm")
    assert manifest["iteration"] == 3
    assert _adam_steps(at_3) == pytest.approx(3 * updates_per_iteration)  # fresh optimizer
    # ... but the policy side came from the checkpoint: its normaliser kept counting.
    assert _normalizer_count(at_3) == pytest.approx(9 * samples_per_iteration)

    done = run_launcher(env, *train_args(6, "--checkpoint-mode", "resume", "--checkpoint-uri",
                                         uri), cwd=sqlite_store.root)
    assert done.returncode == 0 and "nothing to do" in done.stdout
    assert len(all_runs(client)) == 3  # no run for nothing to do
    assert all(run.info.status == "FINISHED" for run in all_runs(client))
    # The checkpoints fetched to start from were removed once each launch ended.
    downloads = tmp_path / "out" / "downloads"
    assert not downloads.exists() or list(downloads.iterdir()) == []


@pytest.fixture(scope="module")
def checkpoints_by_version(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real 2-iteration checkpoint written under rsl-rl 5.5.1 and one under 2.3.3."""
    found = {}
    for version in ("5.5.1", "2.3.3"):
        root = tmp_path_factory.mktemp(f"ckpt-{version}")
        env = launcher_env(None, root / "out", version=version)
        result = run_launcher(env, *train_args(2), cwd=root)
        assert result.returncode == 0, result.stderr
        found[version] = next((root / "out" / "runs").glob("*/model_2.pt"))
    return found


def _no_run_left_running(store: SqliteStore) -> None:
    assert [r.info.status for r in all_runs(_client(store)) if r.info.status == "RUNNING"] == []


def test_resume_without_uri_is_bad_input(sqlite_store: SqliteStore, tmp_path: Path) -> None:
    env = launcher_env(sqlite_store.uri, tmp_path / "out", CHECKPOINT_MODE="resume",
                       CHECKPOINT_URI="")
    result = run_launcher(env, *train_args(2), cwd=sqlite_store.root)
    assert_clean_failure(result, 2, "resume needs a checkpoint", "--checkpoint-uri")
    _no_run_left_running(sqlite_store)


def test_unreachable_uri_is_unusable_checkpoint(sqlite_store: SqliteStore,
                                                tmp_path: Path) -> None:
    nowhere = MlflowServer(tmp_path / "none").url  # nothing listens on that port
    env = launcher_env(nowhere, tmp_path / "out")
    result = run_launcher(env, *train_args(2, "--checkpoint-mode", "warm-start",
                                           "--checkpoint-uri", "runs:/0123abcd/checkpoints"),
                          cwd=sqlite_store.root)
    assert_clean_failure(result, 7, "cannot fetch checkpoint runs:/0123abcd/checkpoints")


def test_truncated_checkpoint_is_refused_before_training(
    checkpoints_by_version: dict[str, Path], sqlite_store: SqliteStore, tmp_path: Path
) -> None:
    whole = checkpoints_by_version["5.5.1"].read_bytes()
    truncated = tmp_path / "model_2.pt"
    truncated.write_bytes(whole[: len(whole) // 2])
    env = launcher_env(sqlite_store.uri, tmp_path / "out")
    result = run_launcher(env, *train_args(4, "--checkpoint-mode", "resume",
                                           "--checkpoint-uri", str(truncated)),
                          cwd=sqlite_store.root)
    assert_clean_failure(result, 7, "truncated or corrupt", "model_2.pt")
    assert "it 1/" not in result.stdout
    _no_run_left_running(sqlite_store)


def test_other_rsl_rl_format_is_refused_naming_both(
    checkpoints_by_version: dict[str, Path], sqlite_store: SqliteStore, tmp_path: Path
) -> None:
    env = launcher_env(sqlite_store.uri, tmp_path / "out")  # the venv's rsl-rl 5.5.1
    result = run_launcher(env, *train_args(4, "--checkpoint-mode", "warm-start",
                                           "--checkpoint-uri",
                                           str(checkpoints_by_version["2.3.3"].parent)),
                          cwd=sqlite_store.root)
    assert_clean_failure(result, 7, "rsl-rl 2.x/3.x", "5.5.1")
    _no_run_left_running(sqlite_store)


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--task", "NoSuchTask-v9", "--num_envs", "4"], "unknown task 'NoSuchTask-v9'"),
        (["--task", "InvertedPendulum-v5", "--num_envs", "0"], "num_envs must be at least 1"),
    ],
)
def test_bad_task_input_exits_2(args: list[str], phrase: str, sqlite_store: SqliteStore,
                                tmp_path: Path) -> None:
    env = launcher_env(sqlite_store.uri, tmp_path / "out")
    result = run_launcher(env, *args, cwd=sqlite_store.root)
    assert_clean_failure(result, 2, phrase)
    _no_run_left_running(sqlite_store)
