"""MLFLOW_ARTIFACT_LOCATION: experiments the launcher creates keep their artifacts there, set
through MLflow's public create_experiment(artifact_location=) (the local executor uses it for
its project store instead of MLflow's private _MLFLOW_SERVER_ARTIFACT_ROOT). A real sqlite
store, a real artifact upload."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from training.config import parse_config
from training.tracking import experiment_id_for, resolve_tracking_target, use_tracking_target


def test_new_experiments_keep_artifacts_under_mlflow_artifact_location(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a sqlite store's own default would be ./mlruns here
    monkeypatch.delenv("_MLFLOW_SERVER_ARTIFACT_ROOT", raising=False)
    artifacts = tmp_path / "store" / "mlartifacts"
    env = {"TASK": "Ant-v5", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'store.db'}",
           "MLFLOW_ARTIFACT_LOCATION": artifacts.as_uri()}
    target = resolve_tracking_target(parse_config([], env))
    assert target.artifact_location == artifacts.as_uri()
    use_tracking_target(target)
    client = MlflowClient()
    run = client.create_run(experiment_id_for("placed", target))
    client.log_text(run.info.run_id, "kept", "checkpoints/final/checkpoint.json")

    (stored,) = artifacts.rglob("checkpoints/final/checkpoint.json")
    assert stored.read_text() == "kept"
    assert not (tmp_path / "mlruns").exists()


def test_an_experiment_a_sibling_task_creates_meanwhile_is_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep's tasks start side by side: between our look-up and our create_experiment,
    a sibling creates the same experiment. The real store refuses the second create; the
    sibling's experiment is the one to log into."""
    env = {"TASK": "Ant-v5", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'store.db'}"}
    target = resolve_tracking_target(parse_config([], env))
    use_tracking_target(target)
    sibling = MlflowClient(tracking_uri=target.uri)
    created: list[str] = []
    real_lookup = MlflowClient.get_experiment_by_name

    def lookup_while_the_sibling_creates(self: MlflowClient, name: str):
        found = real_lookup(self, name)
        if not created:  # our first look-up saw nothing; the sibling creates it right after
            created.append(sibling.create_experiment(name))
        return found

    monkeypatch.setattr(MlflowClient, "get_experiment_by_name",
                        lookup_while_the_sibling_creates)
    assert experiment_id_for("sweep-experiment", target) == created[0]
