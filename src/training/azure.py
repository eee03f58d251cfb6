"""Azure ML: the credential, the workspace's MLflow URI, and the limits Azure ML puts on MLflow
calls. Everything Azure-specific of the runtime lives here; azure-identity and azure-ai-ml are
imported only when a workspace is used.

The credential (`build_credential`):
- a workload identity (what OSMO's pods get) when any of AZURE_CLIENT_ID, AZURE_TENANT_ID,
  AZURE_FEDERATED_TOKEN_FILE is set and no service principal secret/certificate is: all three
  must be there and the token file must exist, else one line names what is missing;
- otherwise DefaultAzureCredential (environment service principal, managed identity, `az`, ...;
  AZURE_TOKEN_CREDENTIALS narrows it), never with interactive browser sign-in.
Its failure is one line (`AzureError`) that says what is wrong; azure.identity's multi-line
warning block is kept off stderr.

Nothing can prompt: azureml-mlflow builds a chain of its own for an `azureml://` URI that ends
in interactive browser and device code sign-in (azureml/mlflow/_internal/utils.py,
get_service_context_from_tracking_url_default_auth), unless the URI was obtained from
azure-ai-ml's `workspaces.get`, which hands the credential used for it to azureml-mlflow for
that URI (azure/ai/ml/operations/_workspace_operations_base.py -> azureml.mlflow.
get_mlflow_tracking_uri_v2). So every Azure ML tracking URI goes through `resolve_workspace`,
an `azureml://` MLFLOW_TRACKING_URI included (`workspace_from_tracking_uri`).
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WORKLOAD_IDENTITY_VARIABLES = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE")
SERVICE_PRINCIPAL_VARIABLES = ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH")
MANAGEMENT_SCOPE = "https://management.azure.com/.default"
_WORKSPACE_IN_URI = re.compile(
    r"/subscriptions/([^/]+)/resourceGroups/([^/]+)"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/([^/?]+)", re.IGNORECASE)


class AzureError(Exception):
    """No token, or no workspace: the message is one line that says why."""


@dataclass(frozen=True)
class TrackingLimits:
    """What one MLflow call may carry to this tracking store."""

    max_metrics_per_batch: int
    max_tag_value_length: int


# MLflow's own REST limits (mlflow/utils/validation.py: MAX_METRICS_PER_BATCH,
# MAX_TAG_VAL_LENGTH).
MLFLOW_LIMITS = TrackingLimits(max_metrics_per_batch=1000, max_tag_value_length=8000)
# Azure ML's "resource limits and capacity" page, Runs: "Metric rows per batch uploaded: 250",
# "tag value length: 1000". The page does not say whether its MLflow endpoint enforces them;
# staying within them costs nothing. Its other per-run limits (50 metric names, 50 tags) cannot
# be met by batching and are documented in docs/runtime.md instead.
AZUREML_LIMITS = TrackingLimits(max_metrics_per_batch=250, max_tag_value_length=1000)


def limits_for(tracking_uri: str) -> TrackingLimits:
    """The limits of the store at tracking_uri: Azure ML's for `azureml://`, else MLflow's."""
    return AZUREML_LIMITS if tracking_uri.startswith("azureml://") else MLFLOW_LIMITS


def fit_tags(tags: Mapping[str, str], tracking_uri: str) -> dict[str, str]:
    """tags with values cut to what the store at tracking_uri accepts (the cut is marked)."""
    limit = limits_for(tracking_uri).max_tag_value_length
    fitted = {}
    for key, value in tags.items():
        text = str(value)
        fitted[key] = text if len(text) <= limit else text[: limit - 3] + "..."
    return fitted


def workspace_from_tracking_uri(uri: str) -> tuple[str, str, str] | None:
    """(subscription, resource group, workspace) of an `azureml://` workspace URI, else None."""
    if not uri.startswith("azureml://"):
        return None
    found = _WORKSPACE_IN_URI.search(uri)
    return (found.group(1), found.group(2), found.group(3)) if found else None


def build_credential(environ: Mapping[str, str] = os.environ) -> Any:
    """The credential of this process (module docstring); AzureError when its settings are
    incomplete. No token is requested yet."""
    _quiet_azure_identity()
    workload = {name: environ.get(name, "").strip() for name in WORKLOAD_IDENTITY_VARIABLES}
    service_principal = any(environ.get(name, "").strip()
                            for name in SERVICE_PRINCIPAL_VARIABLES)
    if any(workload.values()) and not service_principal:
        missing = [name for name, value in workload.items() if not value]
        if missing:
            raise AzureError(
                f"workload identity: {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not set (set are: "
                f"{', '.join(n for n, v in workload.items() if v)}); OSMO's pods get all three "
                f"from the workload identity webhook")
        token_file = Path(workload["AZURE_FEDERATED_TOKEN_FILE"])
        if not token_file.is_file():
            raise AzureError(f"workload identity: AZURE_FEDERATED_TOKEN_FILE={token_file} does "
                             f"not exist (is the service account token projected into the pod?)")
        WorkloadIdentityCredential = _identity().WorkloadIdentityCredential  # noqa: N806
        return WorkloadIdentityCredential(
            tenant_id=workload["AZURE_TENANT_ID"], client_id=workload["AZURE_CLIENT_ID"],
            token_file_path=str(token_file))
    return _identity().DefaultAzureCredential(exclude_interactive_browser_credential=True)


def _identity() -> Any:
    try:
        import azure.identity
    except ImportError as error:  # SKIP_PIP_INSTALL=1 on an image without the azure extra
        raise AzureError(f"azure-identity is not installed ({error}); it is in "
                         "src/training/requirements.txt, 'only: azure'") from error
    return azure.identity


def acquire_token(credential: Any) -> Any:
    """A management token from credential, or AzureError with what the identity service (or
    the chain) answered, on one line."""
    try:
        return credential.get_token(MANAGEMENT_SCOPE)
    except Exception as error:  # azure.core's ClientAuthenticationError and its causes
        raise AzureError(f"{type(credential).__name__}: {_token_failure(error)}") from error


def workspace_client(workspace: tuple[str, str, str], credential: Any) -> Any:
    from azure.ai.ml import MLClient  # an ImportError becomes resolve_workspace's AzureError

    subscription_id, resource_group, name = workspace
    return MLClient(credential, subscription_id, resource_group, name)


@dataclass(frozen=True)
class ResolvedWorkspace:
    name: str
    location: str
    tracking_uri: str
    credential_name: str
    token_expires_on: int


@functools.cache  # one workspace request per process (smoke test, launcher)
def resolve_workspace(workspace: tuple[str, str, str]) -> ResolvedWorkspace:
    """Token, then the workspace's MLflow tracking URI (which registers the credential with
    azureml-mlflow for that URI). AzureError, one line, when either fails."""
    subscription_id, resource_group, name = workspace
    credential = build_credential()
    token = acquire_token(credential)
    try:
        found = workspace_client(workspace, credential).workspaces.get(name)
    except Exception as error:  # azure-core HttpResponseError and friends
        raise AzureError(
            f"cannot get Azure ML workspace {name!r} (subscription {subscription_id}, "
            f"resource group {resource_group}): {_one_line(error)}") from error
    if not found.mlflow_tracking_uri:
        raise AzureError(f"Azure ML workspace {name!r} has no MLflow tracking URI")
    return ResolvedWorkspace(name=found.name, location=found.location,
                             tracking_uri=found.mlflow_tracking_uri,
                             credential_name=type(credential).__name__,
                             token_expires_on=token.expires_on)


def _quiet_azure_identity() -> None:
    """azure.identity logs every failed chain as a multi-line WARNING (and Python prints
    unhandled warnings to stderr); this module reports the failure itself, on one line."""
    logging.getLogger("azure.identity").setLevel(logging.ERROR)


def _token_failure(error: BaseException) -> str:
    """The most specific line of a credential failure: the identity service's
    error_description (AADSTS...), the OS error of a token file, or the chain's summary."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.filename:
            return f"{cause.strerror}: {cause.filename}"
        cause = cause.__cause__ or cause.__context__
    text = getattr(error, "message", None) or str(error)
    description = re.search(r"(AADSTS\d+:[^\r\n]*)", text)
    if description:
        return "the workload identity exchange answered " + description.group(1).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # DefaultAzureCredential: "failed to retrieve a token from the included credentials." then
    # one "Attempted credentials:" line per member: the members say what is wrong.
    members = [line for line in lines if ":" in line and "Credential" in line.split(":")[0]]
    return "; ".join(members) if members else (lines[0] if lines else type(error).__name__)


def _one_line(error: BaseException) -> str:
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
