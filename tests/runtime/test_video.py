"""Videos of a policy (training.video), all with a real renderer: MuJoCo through Mesa's software
EGL (MUJOCO_GL unset: the module picks egl), encoded by imageio's ffmpeg and decoded back.

- one video from a policy callable: an H.264 mp4 of the asked frame count and size, frames that
  show a scene (not one colour) that moves;
- a mid-run video while every core is busy: it comes during training, a trigger meanwhile is
  skipped with one line;
- the policy each backend version hands out (rsl-rl 2.3.3 / 3.0.1 / 5.5.1, skrl 1.4.3 / 2.1.1):
  deterministic, and records;
- ``--video`` in real training with either backend: ``videos/*.mp4`` in a real MLflow server,
  and the closing line naming the final video's file and artifact URI;
- no renderer (MUJOCO_GL=glfw without a display): one line saying what to install, training
  finishes with exit 0;
- Isaac Lab: 3.0's real registry through ``make_isaaclab_env`` (recorders in the env cfg only
  with --video), 2.x's RecordVideo wrapping (only with --video) on a real rendering env.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from launcher_runs import launcher_env, run_id_from, run_launcher, train_args
from mlflow import MlflowClient
from support.isaaclab_releases import env_for_release
from support.lib_versions import RSL_RL, SKRL
from support.mlflow_server import MlflowServer

from training.video import record_video

HERE = Path(__file__).parent
TASK = "InvertedPendulum-v5"


def _assert_a_video(path: Path, frames: int, width: int, height: int) -> np.ndarray:
    decoded = np.stack(list(iio.imiter(path)))
    assert iio.immeta(path)["codec"] == "h264"
    assert decoded.shape == (frames, height, width, 3)
    assert decoded[0].std() > 5, "the first frame is one colour"
    return decoded


def test_record_video_writes_an_h264_mp4_of_the_policy(tmp_path: Path) -> None:
    path = tmp_path / "videos" / "push.mp4"
    video = record_video(lambda obs: torch.full((1, 1), 3.0), TASK, path, length=24,
                         width=160, height=128)
    assert (video.path, video.frames, video.width, video.height) == (path, 24, 160, 128)
    decoded = _assert_a_video(path, 24, 160, 128)
    moved = np.abs(decoded[-1].astype(int) - decoded[0].astype(int)).mean()
    assert moved > 0.5, "pushed for 24 steps, the pendulum did not move"
    assert sorted(p.name for p in path.parent.iterdir()) == ["push.mp4"]  # no partial left


@pytest.mark.slow
@pytest.mark.parametrize(("library", "version"), [
    *((RSL_RL, v) for v in RSL_RL.versions), *((SKRL, v) for v in SKRL.versions)],
    ids=lambda x: getattr(x, "package", x))
def test_each_backend_version_hands_out_a_deterministic_policy(library, version: str,
                                                               tmp_path: Path) -> None:
    result = library.run_python(version, str(HERE / "video_policy_probe.py"), library.package,
                                str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    scenario = json.loads((tmp_path / "scenario.json").read_text())
    assert scenario["version"] == version
    assert scenario["actions"] == [1, 1] and scenario["same"], scenario
    # taken mid-run it is a CPU copy: what trains on afterwards does not reach the video
    assert scenario["on_cpu"] and scenario["copy_unchanged"] and scenario["trained_on"], scenario
    _assert_a_video(Path(scenario["video"]), 12, 96, 64)


@pytest.mark.slow
def test_mid_run_videos_render_while_training_keeps_every_core_busy(tmp_path: Path) -> None:
    """Training on a small CPU machine keeps every core busy (here: one spinning process a
    core). A mid-run video still comes while training goes on, within seconds, not after
    the run; a trigger while it renders is skipped with one line. Fails on the code that
    rendered mid-run videos at nice 19: that child got no CPU while the cores were busy."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.5)  # the spinners are running
        result = subprocess.run([sys.executable, str(HERE / "busy_video_probe.py"),
                                 str(tmp_path)], capture_output=True, text=True, timeout=120)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    outcome = json.loads(lines[-1])
    assert outcome["uploaded"] == ["iteration_1.mp4"], f"no mid-run video in 60 s: {outcome}"
    assert lines[:-1] == ["video: iteration_2.mp4 skipped: iteration_1.mp4 is still rendering"]
    _assert_a_video(tmp_path / "iteration_1.mp4", 100, 320, 240)


def _video_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("video: ")]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["rsl_rl", "skrl"])
def test_training_with_video_logs_videos_to_mlflow(backend: str, mlflow_server: MlflowServer,
                                                   tmp_path: Path) -> None:
    env = launcher_env(mlflow_server.url, tmp_path / "out",
                       EXPERIMENT_NAME=f"video-{uuid.uuid4().hex[:8]}")
    result = run_launcher(env, *train_args(4, "--backend", backend, "--video",
                                           "--video-interval", "2", "--video-length", "16",
                                           num_envs=4), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    run_id = run_id_from(result.stdout)
    client = MlflowClient(mlflow_server.url)
    logged = {Path(f.path).name for f in client.list_artifacts(run_id, "videos")}
    # After iterations 1, 2 (unless 1 was still rendering: one mid-run video at a time, and a
    # line says so) and 4 (the last, always); the end of the run waits for what still renders.
    assert {"iteration_1.mp4", "iteration_4.mp4"} <= logged
    assert logged <= {"iteration_1.mp4", "iteration_2.mp4", "iteration_4.mp4"}
    if "iteration_2.mp4" not in logged:
        assert ("video: iteration_2.mp4 skipped: iteration_1.mp4 is still rendering"
                in result.stdout)
    final = Path(client.download_artifacts(run_id, "videos/iteration_4.mp4", str(tmp_path)))
    _assert_a_video(final, 16, 320, 240)
    closing = _video_lines(result.stdout)[-1]
    uri = f"runs:/{run_id}/videos/iteration_4.mp4"
    assert closing.startswith("video: the trained policy: ") and uri in closing, closing
    local = Path(closing.removeprefix("video: the trained policy: ").split(" (")[0])
    assert local.read_bytes() == final.read_bytes()


@pytest.mark.slow
def test_without_a_renderer_one_line_and_training_goes_on(mlflow_server: MlflowServer,
                                                          tmp_path: Path) -> None:
    env = launcher_env(mlflow_server.url, tmp_path / "out",
                       EXPERIMENT_NAME=f"no-gl-{uuid.uuid4().hex[:8]}", MUJOCO_GL="glfw")
    env.pop("DISPLAY", None)  # GLFW needs a display: none here, as in a container
    result = run_launcher(env, *train_args(3, "--video", "--video-length", "8", num_envs=4),
                          cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    lines = _video_lines(result.stdout)
    assert len(lines) == 1, result.stdout
    assert lines[0].startswith(f"video: cannot render {TASK} here (MUJOCO_GL=glfw: ")
    assert "pip install PyOpenGL" in lines[0] and "apt-get install libegl1" in lines[0]
    assert lines[0].endswith("training goes on without videos")
    assert "Traceback" not in result.stderr
    run_id = run_id_from(result.stdout)
    client = MlflowClient(mlflow_server.url)
    assert client.list_artifacts(run_id, "videos") == []
    assert {Path(f.path).name for f in client.list_artifacts(run_id, "checkpoints/final")} \
        >= {"model_3.pt"}
    assert client.get_run(run_id).info.status == "FINISHED"


# --- Isaac Lab ------------------------------------------------------------------------------


@pytest.mark.slow
def test_isaaclab_30_sets_the_envs_own_recorders_only_with_video() -> None:
    result = subprocess.run([sys.executable, str(HERE / "isaaclab_video_probe.py"),
                             "Isaac-Cartpole"], env=env_for_release("3.0", standin=False),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    cases = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(cases) == 4
    for case in cases:
        assert case["make_kwargs"] == {}  # 3.0 upstream: gym.make(task, cfg=env_cfg)
        if not case["video"]:
            assert case["recorders"] == [] and case["folders"] == []
            continue
        every = 3 * case["steps_per_iteration"]  # --video-interval 3 iterations, in env steps
        assert case["recorders"] == [{"source": "visualizer:kit", "output_dir": case["folder"],
                                      "video_length": 50, "video_interval": every}], case
        assert case["folders"] == [case["folder"]]


@pytest.mark.slow
def test_isaaclab_2x_wraps_with_record_video_only_with_video(
        monkeypatch: pytest.MonkeyPatch, mlflow_server: MlflowServer, tmp_path: Path) -> None:
    """2.x's branch of make_task_env with what needs Isaac Sim stood in: the release (2.x's
    isaaclab does not import without Kit), single_agent (isaaclab.envs imports omni), and
    gymnasium.make, which makes a real MuJoCo env rendering with the render_mode it is given
    (Isaac Lab's env renders its viewport the same way: render() -> an RGB array)."""
    import gymnasium
    from gymnasium.wrappers import RecordVideo

    from training.envs import isaaclab_compat as compat
    from training.video import FolderVideos, VideoSettings, upload_to

    made: list[dict] = []
    real_make = gymnasium.make

    def make(task: str, cfg: object, **kwargs: object) -> gymnasium.Env:
        made.append(kwargs)
        return real_make(TASK, width=64, height=48, **kwargs)

    monkeypatch.setattr(compat, "release", lambda: "2.2")
    monkeypatch.setattr(compat, "single_agent", lambda env: env)
    monkeypatch.setattr(gymnasium, "make", make)
    monkeypatch.setenv("MUJOCO_GL", "egl")  # the stand-in env renders headless

    plain, folders = compat.make_task_env("Isaac-Cartpole-v0", object(), None, every_steps=10)
    assert made[-1] == {} and folders == () and not isinstance(plain, RecordVideo)
    plain.close()

    settings = VideoSettings(length=6, interval=1, folder=tmp_path / "videos")
    env, folders = compat.make_task_env("Isaac-Cartpole-v0", object(), settings, every_steps=10)
    assert made[-1] == {"render_mode": "rgb_array"} and folders == (settings.folder,)
    assert isinstance(env, RecordVideo)
    env.reset(seed=0)
    for _ in range(20):  # steps 0..19: videos start at steps 0 and 10
        env.step(env.action_space.sample())
    client = MlflowClient(mlflow_server.url)
    experiment = client.create_experiment(f"isaaclab-2x-{uuid.uuid4().hex[:8]}")
    run_id = client.create_run(experiment).info.run_id
    FolderVideos(folders, upload_to(client, run_id)).after_iteration(1)
    env.close()
    logged = sorted(Path(f.path).name for f in client.list_artifacts(run_id, "videos"))
    assert logged == ["train-step-0.mp4", "train-step-10.mp4"]
    for name in logged:  # upstream's RecordVideo stops once it holds more than video_length
        _assert_a_video(settings.folder / name, 7, 64, 48)


@pytest.mark.slow
def test_isaaclab_2x_evaluation_records_from_the_first_step(
        monkeypatch: pytest.MonkeyPatch, mlflow_server: MlflowServer, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """--evaluate --video of an Isaac Lab 2.x task: the evaluated env records as in training
    (RecordVideo, from step 0 and once: the interval is beyond any evaluation), the video still
    in progress when the episodes end is saved by closing the env and logged under the
    evaluation run's videos/. Stand-ins as in the 2.x test above."""
    import gymnasium

    from training.config import parse_config
    from training.envs import EnvHandle
    from training.envs import isaaclab_compat as compat
    from training.evaluate import MAX_EVAL_STEPS, evaluation_video, evaluation_video_settings

    real_make = gymnasium.make
    monkeypatch.setattr(compat, "release", lambda: "2.2")
    monkeypatch.setattr(compat, "single_agent", lambda env: env)
    monkeypatch.setattr(gymnasium, "make", lambda task, cfg, **kwargs: real_make(
        TASK, width=64, height=48, **kwargs))
    monkeypatch.setenv("MUJOCO_GL", "egl")
    config = parse_config(["--mode", "evaluate", "--task", "Isaac-Cartpole-v0", "--video",
                           "--video-length", "30", "--checkpoint-uri", "runs:/0/checkpoints/final"],
                          {"TRAINING_OUTPUT_DIR": str(tmp_path / "out")})
    settings = evaluation_video_settings(config)
    assert settings is not None and settings.folder.parent == tmp_path / "out" / "videos"
    # as make_isaaclab_env computes it (interval x steps per iteration; 16 here)
    env, folders = compat.make_task_env(config.task, object(), settings,
                                        every_steps=settings.interval * 16)
    handle = EnvHandle(env=env, agent_cfg={}, kind="isaaclab", max_iterations=1,
                       save_interval=1, seed=0, _close=env.close, video_folders=folders)
    env.reset(seed=0)
    for _ in range(20):  # the evaluation's episodes end before video_length frames
        env.step(env.action_space.sample())
    assert MAX_EVAL_STEPS < settings.interval * 16  # no second recording ever starts
    client = MlflowClient(mlflow_server.url)
    run_id = client.create_run(client.create_experiment(f"eval-{uuid.uuid4().hex[:8]}")
                               ).info.run_id
    evaluation_video(config, settings, None, handle, "cpu", client, run_id)
    assert handle.closed
    logged = sorted(Path(f.path).name for f in client.list_artifacts(run_id, "videos"))
    assert logged == ["train-step-0.mp4"]
    _assert_a_video(settings.folder / logged[0], 20, 64, 48)  # one frame per step taken
    assert (f"video: the evaluated policy: {(settings.folder / logged[0]).resolve()} (MLflow "
            f"artifact runs:/{run_id}/videos/train-step-0.mp4)") in capsys.readouterr().out
