"""Registration: the run's checkpoints/final as a new version of a model in the MLflow Model
Registry (Azure ML's own registry when tracking is Azure ML: the registry URI is the tracking
URI). Only when --register-checkpoint / REGISTER_CHECKPOINT names the model."""

from __future__ import annotations

from collections.abc import Mapping

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

from training.azure import fit_tags
from training.checkpoints import resume_uri
from training.tracking import first_line


class RegistrationError(Exception):
    """The model version could not be created (exit code 6; the checkpoint stays in the run)."""


def register_final_checkpoint(name: str, run_id: str, tags: Mapping[str, str]) -> int:
    """Create model `name` if needed and add checkpoints/final as its next version.

    The version's source is the run's artifact location of checkpoints/final, resolved as
    `mlflow.register_model` resolves a `runs:/` URI (RunsArtifactRepository.get_underlying_uri
    in mlflow/tracking/_model_registry/fluent.py): azureml-mlflow passes a source through
    unchanged, and Azure ML's registry documents only artifact locations. register_model
    itself is not used: MLflow 3's wants an MLmodel file or a logged model, and a checkpoint
    directory has neither."""
    client = MlflowClient()
    registry_uri = mlflow.get_registry_uri()
    try:
        try:
            client.create_registered_model(name)
        except MlflowException as error:
            if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
        version = client.create_model_version(
            name=name,
            source=RunsArtifactRepository.get_underlying_uri(resume_uri(run_id)),
            run_id=run_id,
            tags=fit_tags({key: value for key, value in tags.items() if value}, registry_uri),
        )
    except Exception as error:  # MLflow or Azure ML refusing: one line for the user
        raise RegistrationError(
            f"cannot register {resume_uri(run_id)} as model {name!r}: {first_line(error)}"
        ) from error
    return int(version.version)
