"""The policy as files another program can run: TorchScript, ONNX and an MLflow model.

From a backend's :class:`~training.backends.base.Policy` (the checkpoint's deterministic actor
with its observation normaliser), :func:`write_exports` writes into one folder:

- ``policy_jit.pt``: TorchScript (``torch.jit.script`` of the library's export module where it
  has one, else ``torch.jit.trace``); ``torch.jit.load(path)(obs)`` returns actions;
- ``policy.onnx``: ONNX (opset 18), input ``obs`` ``(batch, obs_dim)`` float32, output
  ``actions``, the batch dimension dynamic;
- ``policy.sha256``/``policy_jit.sha256``: sidecars (``<hex>  <file>``, named as the
  checkpoints' are, training.checkpoints.sidecar_of);
- ``policy.json``: observation/action shapes and names (where the task has them), library
  versions, the source checkpoint, the exporter and the largest difference found between the
  exports and the torch module;
- an MLflow pyfunc model (``MLmodel`` and its files; the model's code is
  training/policy_pyfunc.py, copied in, and runs ``policy.onnx`` in onnxruntime) with a tensor
  signature, so ``mlflow.pyfunc.load_model(uri).predict(obs)`` returns actions.

Before anything is logged, both exports are run on sample observations and must give the
torch module's actions within :data:`TOLERANCE` (relative to the largest action when that is
above 1: :func:`allowed_difference`).

ONNX exporter: the TorchScript-based one (``dynamo=False``), the one Isaac Lab's own exporter
(isaaclab_rl/rsl_rl/exporter.py, with its ``dynamic_axes``) was written for. torch 2.13's
default, the torch.export-based exporter, also exports every module here, but it needs
``onnxscript`` (not in the Isaac Lab 2.x images), and its start-up (torch.export,
onnxscript) made the first export of a small MLP many times slower here: a cost at the end of
every run. The legacy exporter is in every torch the images ship and in 2.13, where it warns
that it will be removed; when it is, ``_export_onnx`` is the one place to change.

:func:`export_final` is the end of a training run: the folder goes to the run's ``policy/`` and
into ``checkpoints/final`` (the registered version's source, so ``models:/NAME/V`` loads as a
pyfunc model). A failed export does not fail the run: the checkpoint is already stored; a
warning line says why and how to export it later, the run is tagged ``policy_export`` =
``failed: <reason>``, the exit code stays what training earned.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training import checkpoints
from training.console import quiet_stdout
from training.store import first_line

if TYPE_CHECKING:
    from training.backends.base import Backend, Checkpoint, Policy
    from training.config import RunConfig
    from training.envs import EnvHandle

POLICY_ARTIFACT_PATH = "policy"
ONNX_FILE = "policy.onnx"
JIT_FILE = "policy_jit.pt"
META_FILE = "policy.json"
PYFUNC_CODE = Path(__file__).with_name("policy_pyfunc.py")
ONNX_OPSET = 18
# Largest difference allowed between an export's actions and the module's (for actions up to
# 1; relative to the largest action above that: allowed_difference).
TOLERANCE = 1e-5
EXPORT_TAG = "policy_export"  # "policy/" when exported, "failed: <reason>" when not
SAMPLE_ROWS = 64
UPLOAD_WORKERS = 4  # files of the exports sent to the store at once


class ExportFailed(Exception):
    """The policy could not be exported (the one line says why)."""


def write_exports(policy: Policy, out_dir: Path, *, details: Mapping[str, Any]) -> Path:
    """Every file of the module doc in ``out_dir`` (created; must not exist), checked against
    the torch module; ``details`` go into policy.json. Raises ExportFailed."""
    import torch

    samples = sample_observations(policy.obs_dim)
    with torch.no_grad():
        expected = policy.module(samples).numpy()
    model_dir = out_dir
    try:
        with tempfile.TemporaryDirectory() as scratch:
            onnx_path, jit_path = Path(scratch) / ONNX_FILE, Path(scratch) / JIT_FILE
            _export_jit(policy, jit_path, samples)
            _export_onnx(policy, onnx_path, samples)
            difference = max(_largest_difference(expected, _jit_actions(jit_path, samples)),
                             _largest_difference(expected, onnx_actions(onnx_path, samples)))
            allowed = allowed_difference(expected)
            if difference > allowed:
                raise ExportFailed(f"the exports' actions differ from the policy's by "
                                   f"{difference:.2e} (more than {allowed:.2e})")
            _save_pyfunc_model(policy, onnx_path, model_dir)
            for path in (onnx_path, jit_path):
                target = model_dir / path.name
                target.write_bytes(path.read_bytes())
                checkpoints.sidecar_of(target).write_text(
                    f"{checkpoints.sha256_of(target)}  {target.name}\n")
    except ExportFailed:
        raise
    except Exception as error:  # torch's exporters and MLflow raise many types
        raise ExportFailed(f"{type(error).__name__}: {first_line(error)}") from error
    meta = {
        "observation_shape": [policy.obs_dim],
        "action_shape": [policy.action_dim],
        "files": {"onnx": ONNX_FILE, "torchscript": JIT_FILE},
        "onnx": {"input": "obs", "output": "actions", "opset": ONNX_OPSET,
                 "dynamic_batch": True},
        "exporter": policy.exporter,
        "max_abs_difference": difference,
        **details,
    }
    (model_dir / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return model_dir


def allowed_difference(actions: Any) -> float:
    """TOLERANCE, scaled by the largest action when that is above 1: the sample observations
    are wide, actions then large, and float32 rounding grows with them."""
    import numpy as np

    return TOLERANCE * max(1.0, float(np.max(np.abs(actions))))


def sample_observations(obs_dim: int) -> Any:
    """Observations to compare exports on: wide (normalisers far from identity must show)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    return torch.randn(SAMPLE_ROWS, obs_dim, generator=generator) * 3.0


def onnx_actions(path: Path, observations: Any) -> Any:
    """What ``path`` computes for ``observations`` in onnxruntime (numpy)."""
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"obs": np.asarray(observations, dtype=np.float32)})[0]


def _jit_actions(path: Path, observations: Any) -> Any:
    import torch

    with torch.no_grad():
        return torch.jit.load(str(path))(observations).numpy()


def _largest_difference(expected: Any, actual: Any) -> float:
    import numpy as np

    if expected.shape != actual.shape:
        raise ExportFailed(f"an export returns shape {actual.shape}, the policy {expected.shape}")
    return float(np.max(np.abs(expected - actual)))


def _export_jit(policy: Policy, path: Path, samples: Any) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings on skrl's generated code
        if policy.scriptable:
            exported = torch.jit.script(policy.module)
        else:
            exported = torch.jit.trace(policy.module, (samples,), check_trace=False)
    exported.save(str(path))


def _export_onnx(policy: Policy, path: Path, samples: Any) -> None:
    """The TorchScript-based exporter (``dynamo=False``; see the module doc for why)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "legacy exporter", deprecation notes
        torch.onnx.export(
            policy.onnx_module, (samples,), str(path), input_names=["obs"],
            output_names=["actions"], opset_version=ONNX_OPSET, dynamo=False,
            dynamic_axes={"obs": {0: "batch"}, "actions": {0: "batch"}})


def _save_pyfunc_model(policy: Policy, onnx_path: Path, model_dir: Path) -> None:
    """An MLflow pyfunc model in ``model_dir`` ("models from code": training/policy_pyfunc.py
    is copied in, nothing is pickled) whose input is ``(batch, obs_dim)`` float32."""
    import importlib.metadata

    import mlflow
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    signature = ModelSignature(
        # Unnamed: predict receives the array itself (a named spec hands it a dict).
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, policy.obs_dim))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, policy.action_dim))]),
    )
    requirements = [f"mlflow=={mlflow.__version__}",
                    f"onnxruntime=={importlib.metadata.version('onnxruntime')}",
                    f"numpy=={np.__version__}"]
    with quiet_stdout(), warnings.catch_warnings(), \
            _environment(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"):  # it copies one file
        warnings.simplefilter("ignore")
        mlflow.pyfunc.save_model(path=str(model_dir), python_model=str(PYFUNC_CODE),
                                 artifacts={"onnx": str(onnx_path)}, signature=signature,
                                 pip_requirements=requirements)


@contextlib.contextmanager
def _environment(**values: str) -> Any:
    """Environment variables set for the block, then as they were."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def observation_action_names(env_handle: EnvHandle) -> dict[str, list[str]]:
    """Names of the policy's observation and action terms where the task has them: an Isaac
    Lab manager-based env's observation manager (group "policy") and action manager."""
    names: dict[str, list[str]] = {}
    unwrapped = getattr(getattr(env_handle.env, "unwrapped", None), "unwrapped", None)
    with contextlib.suppress(Exception):  # a task without managers has no names
        names["observation_names"] = list(
            unwrapped.observation_manager.active_terms["policy"])  # type: ignore[union-attr]
    with contextlib.suppress(Exception):
        names["action_names"] = list(unwrapped.action_manager.active_terms)  # type: ignore
    return names


def export_checkpoint(backend: Backend, checkpoint: Checkpoint, env_handle: EnvHandle, *,
                      device: str, out_dir: Path, task: str,
                      source_uri: str | None) -> tuple[Policy, Path]:
    """(the policy, the folder of exports) for ``checkpoint`` on ``env_handle``'s task.
    CheckpointError when it does not fit the task; ExportFailed when the export fails."""
    policy = backend.policy_from_checkpoint(checkpoint, env_handle, device=device)
    details = {
        "task": task,
        "backend": backend.NAME,
        "versions": dict(backend.versions()),
        "source_checkpoint": {"file": checkpoint.path.name, "iteration": checkpoint.iteration,
                              "format": checkpoint.format, "uri": source_uri,
                              "sha256": checkpoints.sha256_of(checkpoint.path)},
        **observation_action_names(env_handle),
    }
    return policy, write_exports(policy, out_dir, details=details)


def log_exports(client: Any, run_id: str, folder: Path, *artifact_paths: str) -> None:
    """The folder's files (and subfolders) under each of ``artifact_paths`` of the run, sent
    side by side: a file is a request, and the store's round trips, not our CPU, are what a
    run's end waits for (``client.log_artifacts`` sends them one after another)."""
    from concurrent.futures import ThreadPoolExecutor

    uploads = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        subfolder = path.parent.relative_to(folder).as_posix()
        uploads += [(str(path), artifact_path if subfolder == "." else
                     f"{artifact_path}/{subfolder}") for artifact_path in artifact_paths]
    with ThreadPoolExecutor(max_workers=UPLOAD_WORKERS) as pool:
        requests = [pool.submit(client.log_artifact, run_id, local, destination)
                    for local, destination in uploads]
    for request in requests:
        request.result()  # raises the first error


def export_final(client: Any, config: RunConfig, backend: Backend, env_handle: EnvHandle,
                 run_id: str, final: Checkpoint, *, device: str) -> bool:
    """The end of a training run (after checkpoints/final is stored): the exports to the run's
    ``policy/`` and to ``checkpoints/final``. Never raises for a failed export (see the module
    doc); True when exported."""
    from training.backends.base import CheckpointError

    with tempfile.TemporaryDirectory() as scratch:
        try:
            _, folder = export_checkpoint(
                backend, final, env_handle, device=device, out_dir=Path(scratch) / "policy",
                task=config.task, source_uri=checkpoints.resume_uri(run_id))
            log_exports(client, run_id, folder, POLICY_ARTIFACT_PATH,
                        checkpoints.FINAL_ARTIFACT_PATH)
            client.set_tag(run_id, EXPORT_TAG, f"{POLICY_ARTIFACT_PATH}/")
        except (ExportFailed, CheckpointError) as error:
            return export_failed(client, run_id, str(error))
        except Exception as error:  # the store refused or went away while logging
            return export_failed(client, run_id, f"cannot log the exports: {first_line(error)}")
    print(f"policy exported: runs:/{run_id}/{POLICY_ARTIFACT_PATH} ({ONNX_FILE}, {JIT_FILE}, "
          f"MLflow model)", flush=True)
    return True


def export_failed(client: Any, run_id: str, reason: str) -> bool:
    print(f"warning: policy export failed ({reason}); the checkpoint is stored at "
          f"{checkpoints.resume_uri(run_id)}: export it later with submit-training --export -c "
          f"{checkpoints.resume_uri(run_id)}", file=sys.stderr, flush=True)
    with contextlib.suppress(Exception):  # the warning above is the record that matters
        client.set_tag(run_id, EXPORT_TAG, f"failed: {reason}"[:250])
    return False
