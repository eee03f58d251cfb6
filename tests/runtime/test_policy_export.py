"""Policy exports under every library version: rsl-rl 2.3.3 / 3.0.1 / 5.5.1 and skrl 1.4.3 /
2.1.1, each in its own subprocess (one process imports one version).

The scenario (this file's ``__main__`` part) trains InvertedPendulum-v5 for 2 iterations, then
moves the checkpoint's observation normaliser far from identity (mean 2, std 0.1, in the
library's own state dict), exports that checkpoint through the backend, and runs the exports:
TorchScript with torch.jit.load, ONNX in onnxruntime. Both are compared with the library's
*own* deterministic inference on the same observations (rsl-rl's ``get_inference_policy``,
skrl's ``agent.act`` mean action in eval mode).

The names of an Isaac Lab task's observation and action terms in ``policy.json`` come from
isaaclab_names_probe.py, under Isaac Lab 3.0's sources.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from support.lib_versions import RSL_RL, SKRL, LibraryVersions

pytestmark = pytest.mark.slow

CASES = [(RSL_RL, version) for version in RSL_RL.versions] + [
    (SKRL, version) for version in SKRL.versions]
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory):
    results: dict[tuple[str, str], dict[str, Any]] = {}

    def run(library: LibraryVersions, version: str) -> dict[str, Any]:
        key = (library.package, version)
        if key not in results:
            out = tmp_path_factory.mktemp(f"export-{library.package}-{version}")
            proc = library.run_python(version, __file__, str(out), library.package)
            assert proc.returncode == 0, proc.stderr[-3000:]
            results[key] = json.loads((out / "scenario.json").read_text())
            results[key]["dir"] = out
        return results[key]

    return run


@pytest.fixture(params=CASES, ids=lambda case: f"{case[0].package}-{case[1]}")
def scenario(request: pytest.FixtureRequest, scenarios) -> dict[str, Any]:
    library, version = request.param
    result = scenarios(library, version)
    assert result["version"] == version  # the subprocess imported the intended version
    return result


def test_the_normaliser_is_far_from_identity_and_changes_the_actions(scenario):
    # Without it in the exports, they could not match the library's actions below.
    assert scenario["normaliser_effect"] > 0.1


def test_torchscript_gives_the_librarys_actions(scenario):
    assert scenario["jit_difference"] <= TOLERANCE


def test_onnx_in_onnxruntime_gives_the_librarys_actions(scenario):
    assert scenario["onnx_difference"] <= TOLERANCE
    assert scenario["onnx_batch_sizes"] == [1, 7, 300]  # the batch dimension is dynamic


def test_policy_json_and_sidecars_describe_the_exports(scenario):
    folder = Path(scenario["dir"]) / "policy"
    meta = json.loads((folder / "policy.json").read_text())
    assert meta["observation_shape"] == [4] and meta["action_shape"] == [1]
    assert meta["backend"] == scenario["backend"] and meta["task"] == "InvertedPendulum-v5"
    assert meta["versions"] == {f"{scenario['backend']}_version": scenario["version"]}
    assert meta["source_checkpoint"]["file"] == "model_far.pt"
    assert meta["source_checkpoint"]["uri"] == "file:model_far.pt"
    for name, sidecar in (("policy.onnx", "policy.sha256"),
                          ("policy_jit.pt", "policy_jit.sha256")):
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert (folder / sidecar).read_text() == f"{digest}  {name}\n"


def test_rsl_rl_5_uses_the_librarys_own_export_modules(scenarios):
    assert "MLPModel.as_jit/as_onnx" in scenarios(RSL_RL, "5.5.1")["exporter"]


def test_policy_json_names_an_isaaclab_tasks_observation_and_action_terms() -> None:
    """Through each backend's real wrapper of an Isaac Lab env (Isaac Lab 3.0's sources and
    managers, the simulator stood in: isaaclab_names_probe.py), the "policy" group's terms."""
    import subprocess

    from support.isaaclab_releases import env_for_release

    probe = Path(__file__).with_name("isaaclab_names_probe.py")
    result = subprocess.run([sys.executable, str(probe)], env=env_for_release("3.0", standin=False),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [line["backend"] for line in lines] == ["rsl_rl", "skrl"]
    expected = {"observation_names": ["joint_pos_rel", "joint_vel_rel"],
                "action_names": ["joint_efforts"]}
    for line in lines:
        assert line["policy_json"] == expected, line


# --- the scenario, run in a subprocess: python test_policy_export.py OUT_DIR BACKEND ----------


def _far_from_identity(state: Any) -> Any:
    """The state dict with every observation normaliser's statistics set to mean 2, std 0.1:
    rsl-rl's EmpiricalNormalization (_mean, _var, _std) and skrl's RunningStandardScaler
    (running_mean, running_variance), wherever the version keeps them."""
    if isinstance(state, dict):
        return {key: _far_value(key, _far_from_identity(value)) for key, value in state.items()}
    return state


def _far_value(key: Any, value: Any) -> Any:
    import torch

    if not isinstance(value, torch.Tensor) or not isinstance(key, str):
        return value
    if key.endswith("_mean") or key == "running_mean":
        return torch.full_like(value, 2.0)
    if key.endswith("_var") or key == "running_variance":
        return torch.full_like(value, 0.01)
    if key.endswith("._std") or key == "_std":
        return torch.full_like(value, 0.1)
    return value


def _library_actions(backend: Any, handle: Any, checkpoint: Any, obs: Any, out: Path) -> Any:
    """The library's own deterministic inference of ``checkpoint`` on ``obs``."""
    import torch

    with torch.no_grad():
        if backend.NAME == "rsl_rl":
            from training.backends import rsl_rl_compat as compat

            runner = backend.build_runner(handle, log_dir=out / "probe", device="cpu",
                                          init=checkpoint, mode="warm-start")
            inference = runner.get_inference_policy(device="cpu")
            return inference(compat.pack_observations(obs, for_step=True))
        from training.backends import skrl_compat as compat

        agent = backend.build_training(handle, log_dir=out / "probe", init=checkpoint,
                                       mode="warm-start").agent
        if compat.MAJOR >= 2:  # skrl's trainers switch to evaluation like this before eval()
            agent.enable_training_mode(False, apply_to_models=True)
            return agent.act(obs, None, timestep=0, timesteps=1)[-1]["mean_actions"]
        agent.set_running_mode("eval")
        return agent.act(obs, timestep=0, timesteps=1)[-1]["mean_actions"]


def _scenario(out: Path, backend_name: str) -> None:
    import numpy as np
    import torch

    from training import policy_export
    from training.backends import load_backend
    from training.backends.base import TrainHooks
    from training.envs import make_env

    backend = load_backend(backend_name)
    handle = make_env("InvertedPendulum-v5", backend=backend, num_envs=4, seed=3, device="cpu")
    if backend_name == "rsl_rl":
        handle.agent_cfg = dict(handle.agent_cfg, num_steps_per_env=8)
    result = backend.train(handle, log_dir=out / "train", device="cpu", max_iterations=2,
                           save_interval=2, init=None, mode=None, hooks=TrainHooks())
    trained = backend.inspect_checkpoint(result.final_checkpoint)
    far_path = out / "model_far.pt"
    torch.save(_far_from_identity(torch.load(trained.path, weights_only=False)), far_path)
    far = backend.inspect_checkpoint(far_path)

    generator = torch.Generator().manual_seed(1)
    obs = torch.cat([2.0 + 0.1 * torch.randn(200, 4, generator=generator),  # near the mean
                     0.3 * torch.randn(100, 4, generator=generator)])  # what the env shows
    expected = _library_actions(backend, handle, far, obs, out)
    untouched = _library_actions(backend, handle, trained, obs, out)

    policy, folder = policy_export.export_checkpoint(
        backend, far, handle, device="cpu", out_dir=out / "policy", task="InvertedPendulum-v5",
        source_uri="file:model_far.pt")
    with torch.no_grad():
        jit_actions = torch.jit.load(str(folder / "policy_jit.pt"))(obs)
    onnx_actions = policy_export.onnx_actions(folder / "policy.onnx", obs.numpy())
    batches = [policy_export.onnx_actions(folder / "policy.onnx", obs[:n].numpy()).shape[0]
               for n in (1, 7, 300)]
    report = {
        "version": next(iter(backend.versions().values())),
        "backend": backend.NAME,
        "exporter": policy.exporter,
        "normaliser_effect": float((expected - untouched).abs().max()),
        "jit_difference": float((jit_actions - expected).abs().max()),
        "onnx_difference": float(np.abs(onnx_actions - expected.numpy()).max()),
        "onnx_batch_sizes": batches,
    }
    handle.close()
    (out / "scenario.json").write_text(json.dumps(report))


if __name__ == "__main__":
    _scenario(Path(sys.argv[1]), sys.argv[2])
