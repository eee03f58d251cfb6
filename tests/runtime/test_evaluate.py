"""The policy after training, end to end: the exports a trained run logs, the registered
version as an MLflow pyfunc model, RUN_MODE=evaluate / export, and what a bad URI or the
wrong task gives. Real training (InvertedPendulum-v5 through each backend), a real
`mlflow server` on 127.0.0.1, the launcher run as the container runs it."""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from launcher_runs import (
    TASK,
    artifact_names,
    assert_clean_failure,
    launcher_env,
    run_id_from,
    run_launcher,
    train_args,
)
from mlflow import MlflowClient
from support.mlflow_server import MlflowServer

pytestmark = pytest.mark.slow

MODEL = "pendulum-exported"
EPISODES = 6
# Iterations each backend trains InvertedPendulum-v5 for, enough to beat a random policy
# (skrl's iterations are longer: more env steps each).
ITERATIONS = {"rsl_rl": 15, "skrl": 5}


def _client(uri: str) -> MlflowClient:
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient()


def _versions(backend: str) -> dict[str, str]:
    """policy.json's library versions: the venv's (rsl-rl pinned by the project, skrl as
    installed)."""
    import importlib.metadata

    if backend == "rsl_rl":
        return {"rsl_rl_version": "5.5.1"}
    return {"skrl_version": importlib.metadata.version("skrl")}


@pytest.fixture(scope="module")
def train(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory):
    """backend -> one run of it trained long enough to beat a random policy, its final
    registered as model MODEL-<backend>; each backend trained once for the module."""
    runs: dict[str, dict[str, Any]] = {}

    def trained_with(backend: str) -> dict[str, Any]:
        if backend not in runs:
            cwd = tmp_path_factory.mktemp(f"trained-{backend}")
            env = launcher_env(mlflow_server.url, cwd / "out")
            iterations = ITERATIONS[backend]
            result = run_launcher(env, *train_args(iterations, "--backend", backend,
                                                   "--register-checkpoint",
                                                   f"{MODEL}-{backend}"), cwd=cwd)
            assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
            runs[backend] = {"run_id": run_id_from(result.stdout), "result": result,
                             "cwd": cwd, "backend": backend, "model": f"{MODEL}-{backend}",
                             "iterations": iterations}
        return runs[backend]

    return trained_with


@pytest.fixture(params=["rsl_rl", "skrl"])
def trained(train, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The trained run of each backend (tests where the backend matters)."""
    return train(request.param)


@pytest.fixture
def trained_rsl_rl(train) -> dict[str, Any]:
    return train("rsl_rl")


def _evaluate(server: MlflowServer, cwd: Path, *args: str, **extra: str):
    env = launcher_env(server.url, cwd / "out", **extra)
    return run_launcher(env, *args, cwd=cwd)


def random_policy_mean_return(episodes: int) -> float:
    """Uniformly random actions in the same task, same number of episodes."""
    import gymnasium

    env = gymnasium.make(TASK)
    env.action_space.seed(0)
    returns = []
    for episode in range(episodes):
        env.reset(seed=episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return sum(returns) / len(returns)


def test_a_trained_run_logs_its_policy_exports(mlflow_server: MlflowServer, trained) -> None:
    client = _client(mlflow_server.url)
    run_id = trained["run_id"]
    assert f"policy exported: runs:/{run_id}/policy" in trained["result"].stdout, \
        trained["result"].stderr[-2000:]
    assert "type hints" not in trained["result"].stderr  # MLflow's note on predict is off
    names = artifact_names(client, run_id, "policy")
    assert {"policy.onnx", "policy_jit.pt", "policy.sha256", "policy_jit.sha256",
            "policy.json", "MLmodel"} <= names
    folder = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/policy",
                                                      dst_path=str(trained["cwd"] / "p")))
    meta = json.loads((folder / "policy.json").read_text())
    assert meta["observation_shape"] == [4] and meta["action_shape"] == [1]
    assert meta["versions"] == _versions(trained["backend"])
    assert meta["backend"] == trained["backend"]
    assert meta["source_checkpoint"]["file"] == f"model_{trained['iterations']}.pt"
    assert meta["source_checkpoint"]["uri"] == f"runs:/{run_id}/checkpoints/final"
    # A gymnasium task has no term names (an Isaac Lab task's: test_policy_export.py).
    assert "observation_names" not in meta and "action_names" not in meta
    digest = hashlib.sha256((folder / "policy.onnx").read_bytes()).hexdigest()
    assert (folder / "policy.sha256").read_text() == f"{digest}  policy.onnx\n"
    assert client.get_run(run_id).data.tags["policy_export"] == "policy/"


def test_the_registered_version_predicts_actions_with_pyfunc(mlflow_server: MlflowServer,
                                                             trained) -> None:
    _client(mlflow_server.url)
    model = mlflow.pyfunc.load_model(f"models:/{trained['model']}/1")
    observations = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    actions = model.predict(observations)
    assert actions.shape == (5, 1)
    # The same actions as the run's TorchScript export of the same checkpoint.
    import torch

    folder = Path(mlflow.artifacts.download_artifacts(
        f"runs:/{trained['run_id']}/policy/policy_jit.pt", dst_path=str(trained["cwd"] / "j")))
    with torch.no_grad():
        expected = torch.jit.load(str(folder))(torch.from_numpy(observations)).numpy()
    assert np.abs(actions - expected).max() <= 1e-5
    # What predict takes (README: Look at your policy): float32 rows, also as a DataFrame;
    # MLflow's schema check refuses float64 and a lone 1-D observation, naming the fix.
    import pandas

    assert np.array_equal(model.predict(pandas.DataFrame(observations)), actions)
    assert np.array_equal(model.predict(observations[0][None]), actions[:1])
    with pytest.raises(mlflow.exceptions.MlflowException,
                       match="dtype of input float64 does not match expected dtype float32"):
        model.predict(observations.astype(np.float64))
    with pytest.raises(mlflow.exceptions.MlflowException,
                       match=r"Shape of input \(4,\) does not match expected shape \(-1, 4\)"):
        model.predict(observations[0])
    inputs = model.metadata.get_input_schema().inputs[0]
    assert inputs.shape == (-1, 4) and inputs.type == np.dtype(np.float32)
    # The raw checkpoint is still the version's, as before: a warm start can use it.
    version = MlflowClient().get_model_version(trained["model"], "1")
    assert version.run_id == trained["run_id"]
    assert f"model_{trained['iterations']}.pt" in artifact_names(MlflowClient(), trained["run_id"],
                                           "checkpoints/final")


def test_evaluation_beats_a_random_policy_and_is_logged(mlflow_server: MlflowServer,
                                                        trained, tmp_path: Path) -> None:
    client = _client(mlflow_server.url)
    source = f"runs:/{trained['run_id']}/checkpoints/final"
    result = _evaluate(mlflow_server, tmp_path, "--mode", "evaluate", "--checkpoint-uri",
                       source, "--episodes", str(EPISODES), "--num_envs", "4")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    summary = [line for line in result.stdout.splitlines() if line.startswith("evaluated ")]
    assert len(summary) == 1 and f"on {TASK}: {EPISODES} episodes, return " in summary[0]
    eval_run_id = summary[0].rsplit("run ", 1)[1]
    run = client.get_run(eval_run_id)
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    for name in ("return", "length"):
        for kind in ("mean", "std", "min", "max"):
            assert math.isfinite(metrics[f"eval/{name}_{kind}"])
        assert metrics[f"eval/{name}_min"] <= metrics[f"eval/{name}_mean"] \
            <= metrics[f"eval/{name}_max"]
    assert metrics["eval/episodes"] == EPISODES
    assert metrics["eval/return_mean"] > random_policy_mean_return(EPISODES) + 5
    tags = run.data.tags
    assert tags["source_run_id"] == trained["run_id"]
    assert tags["source_checkpoint_uri"] == source
    assert tags["source_iteration"] == str(trained["iterations"])
    assert tags["run_mode"] == "evaluate" and tags["backend"] == trained["backend"]
    assert tags["task"] == TASK  # taken from the checkpoint: no --task was given
    if trained["backend"] != "rsl_rl":
        return  # seeding and the episode loop are the backends' alike: checked once below
    # Deterministic: a second evaluation gives the same numbers.
    again = _evaluate(mlflow_server, tmp_path, "--mode", "evaluate", "--checkpoint-uri",
                      source, "--episodes", str(EPISODES), "--num_envs", "4")
    second = [line for line in again.stdout.splitlines() if line.startswith("evaluated ")]
    assert second[0].rsplit("; run ", 1)[0] == summary[0].rsplit("; run ", 1)[0]


def test_evaluate_with_video_logs_a_video_of_the_policy_per_evaluation(
        mlflow_server: MlflowServer, trained, tmp_path: Path) -> None:
    """--evaluate --video: a real mp4 (MuJoCo through Mesa's EGL, H.264) under the evaluation
    run's videos/ and on disk where the last video line says; a second evaluation into the
    same output directory keeps the first one's file."""
    import imageio.v3 as iio

    client = _client(mlflow_server.url)
    source = f"runs:/{trained['run_id']}/checkpoints/final"
    files = []
    for _ in range(2):
        result = _evaluate(mlflow_server, tmp_path, "--mode", "evaluate", "--checkpoint-uri",
                           source, "--episodes", "2", "--video", "--video-length", "12")
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        eval_run_id = result.stdout.rsplit("; run ", 1)[1].split()[0]
        lines = [line for line in result.stdout.splitlines() if line.startswith("video: ")]
        uri = f"runs:/{eval_run_id}/videos/evaluation.mp4"
        assert len(lines) == 1 and lines[0].endswith(f" (MLflow artifact {uri})"), lines
        path = Path(lines[0].removeprefix("video: the evaluated policy: ").split(" (MLflow")[0])
        assert artifact_names(client, eval_run_id, "videos") == {"evaluation.mp4"}
        logged = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "dl")))
        for video in (path, logged):
            frames = np.stack(list(iio.imiter(video)))
            assert iio.immeta(video)["codec"] == "h264"
            assert frames.shape == (12, 240, 320, 3) and frames[0].std() > 5
        files.append(path)
    assert files[0] != files[1] and all(path.is_file() for path in files)


def test_the_checkpoint_chooses_the_backend_that_acts_with_it(
        mlflow_server: MlflowServer, trained_rsl_rl, tmp_path: Path) -> None:
    # An rsl-rl checkpoint evaluated where TRAINING_BACKEND says skrl (a local run's default):
    # only rsl-rl can act with it, so the evaluation uses rsl-rl instead of exiting 7.
    source = f"runs:/{trained_rsl_rl['run_id']}/checkpoints/final"
    result = _evaluate(mlflow_server, tmp_path, "--mode", "evaluate", "--checkpoint-uri",
                       source, "--episodes", "2", "--num_envs", "2", "--backend", "skrl")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "is a checkpoint of the rsl_rl backend: using rsl_rl" in result.stderr
    assert any(line.startswith("evaluated ") for line in result.stdout.splitlines())


def test_export_mode_logs_the_policy_to_a_new_run(mlflow_server: MlflowServer, trained,
                                                  tmp_path: Path) -> None:
    client = _client(mlflow_server.url)
    source = f"runs:/{trained['run_id']}/checkpoints/final"
    result = _evaluate(mlflow_server, tmp_path, "--checkpoint-uri", source, RUN_MODE="export")
    assert result.returncode == 0, result.stderr[-3000:]
    export_run_id = result.stdout.strip().splitlines()[-1].rsplit("runs:/", 1)[1].split("/")[0]
    assert {"policy.onnx", "policy_jit.pt", "MLmodel"} <= artifact_names(client, export_run_id,
                                                                         "policy")
    tags = client.get_run(export_run_id).data.tags
    assert tags["source_run_id"] == trained["run_id"] and tags["backend"] == trained["backend"]
    model = mlflow.pyfunc.load_model(f"runs:/{export_run_id}/policy")
    assert model.predict(np.zeros((2, 4), dtype=np.float32)).shape == (2, 1)


def test_a_bad_uri_exits_7_with_one_line(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    result = _evaluate(mlflow_server, tmp_path, "--mode", "evaluate", "--task", TASK,
                       "--checkpoint-uri", "runs:/0123456789abcdef/checkpoints/final")
    assert_clean_failure(result, 7, "cannot fetch checkpoint runs:/0123456789abcdef")


def test_the_wrong_task_for_the_checkpoint_exits_7_with_one_line(
        mlflow_server: MlflowServer, trained_rsl_rl, tmp_path: Path) -> None:
    source = f"runs:/{trained_rsl_rl['run_id']}/checkpoints/final"
    result = _evaluate(mlflow_server, tmp_path, "--mode", "evaluate", "--task",
                       "HalfCheetah-v5", "--checkpoint-uri", source, "--num_envs", "2")
    assert_clean_failure(result, 7, "does not fit this task's networks")


def test_another_task_whose_shapes_fit_is_evaluated_with_a_warning(
        mlflow_server: MlflowServer, trained_rsl_rl, tmp_path: Path) -> None:
    # InvertedPendulum-v4 has v5's observation and action shapes: the policy acts in it, so
    # nothing but checkpoint.json's task tells the user it was trained elsewhere.
    source = f"runs:/{trained_rsl_rl['run_id']}/checkpoints/final"
    result = _evaluate(mlflow_server, tmp_path, "--mode", "evaluate", "--task",
                       "InvertedPendulum-v4", "--checkpoint-uri", source, "--episodes", "2",
                       "--num_envs", "2")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "was trained on" in line]
    assert warnings == [f"warning: {source} was trained on {TASK} (its checkpoint.json); "
                        f"evaluate goes on with --task InvertedPendulum-v4"], result.stderr
    assert any(line.startswith(f"evaluated {source} on InvertedPendulum-v4: 2 episodes")
               for line in result.stdout.splitlines()), result.stdout[-2000:]


def test_a_failed_export_warns_and_keeps_the_trained_run(mlflow_server: MlflowServer,
                                                         tmp_path: Path) -> None:
    """An image without onnx (torch's ONNX exporter needs it): the run still succeeds
    (exit 0, FINISHED, checkpoint stored and registered), one warning line says why and how
    to export later, the run's tag records it, and nothing half-written is under policy/."""
    client = _client(mlflow_server.url)
    missing = tmp_path / "no-onnx"
    (missing / "onnx").mkdir(parents=True)
    # Stands in for the package being absent: importing it fails as Python's import system
    # does for a module that is not installed (ModuleNotFoundError, an ImportError).
    (missing / "onnx" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'onnx'\", name='onnx')\n")
    env = launcher_env(mlflow_server.url, tmp_path / "out",
                       WORKFLOW_ID=f"wf-export-fails-{uuid.uuid4().hex[:8]}")
    env["PYTHONPATH"] = f"{missing}:{env['PYTHONPATH']}"
    result = run_launcher(env, *train_args(2, "--register-checkpoint", "export-fails"),
                          cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_id = run_id_from(result.stdout)
    warnings = [line for line in result.stderr.splitlines()
                if line.startswith("warning: policy export failed")]
    assert len(warnings) == 1 and "onnx is not installed" in warnings[0], result.stderr[-3000:]
    assert f"--export -c runs:/{run_id}/checkpoints/final" in warnings[0]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["policy_export"].startswith("failed: ")
    assert "onnx is not installed" in run.data.tags["policy_export"]
    assert artifact_names(client, run_id, "policy") == set()
    assert "model_2.pt" in artifact_names(client, run_id, "checkpoints/final")
    assert "MLmodel" not in artifact_names(client, run_id, "checkpoints/final")
    assert run.data.tags["registered_model"] == "export-fails/1"

    # The same image, rescheduled after the process died before its export: the attempt that
    # finishes the run tries the export again; it fails the same way, and the run stands.
    client.delete_tag(run_id, "policy_export")
    client.update_run(run_id, status="RUNNING")
    rerun = run_launcher(env, *train_args(2, "--register-checkpoint", "export-fails"),
                         cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "nothing to do" in rerun.stdout
    warnings = [line for line in rerun.stderr.splitlines()
                if line.startswith("warning: policy export failed")]
    assert len(warnings) == 1 and "onnx is not installed" in warnings[0], rerun.stderr[-3000:]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["policy_export"].startswith("failed: ")
    assert artifact_names(client, run_id, "policy") == set()
