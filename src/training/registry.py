"""Registration: the run's checkpoints/final as a new version of a model in the MLflow Model
Registry (Azure ML's own registry when tracking is Azure ML: the registry URI is the tracking
URI). Only when --register-checkpoint / REGISTER_CHECKPOINT names the model."""

from __future__ import annotations

from collections.abc import Mapping

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

from training.checkpoints import resume_uri
from training.tracking import first_line


class RegistrationError(Exception):
    """The model version could not be created (exit code 6; the checkpoint stays in the run)."""


def register_final_checkpoint(name: str, run_id: str, tags: Mapping[str, str]) -> int:
    """Create model `name` if needed and add checkpoints/final as its next version."""
    client = MlflowClient()
    try:
        try:
            client.create_registered_model(name)
        except MlflowException as error:
            if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
        version = client.create_model_version(
            name=name,
            source=resume_uri(run_id),
            run_id=run_id,
            tags={key: value for key, value in tags.items() if value},
        )
    except Exception as error:  # MLflow or Azure ML refusing: one line for the user
        raise RegistrationError(
            f"cannot register {resume_uri(run_id)} as model {name!r}: {first_line(error)}"
        ) from error
    return int(version.version)
