"""Videos of a policy: H.264 mp4 files rendered headless, logged under the run's ``videos/``.

**The entry point**, for training and for evaluation alike::

    from training.video import record_video
    video = record_video(policy, "HalfCheetah-v5", Path("eval.mp4"), length=200)
    video.path, video.frames, video.width, video.height, video.fps

- ``policy``: a callable from observation to action. It gets a float32 torch tensor of shape
  ``(1, obs_dim)`` (under ``torch.inference_mode``) and returns the action as a tensor or an
  array of shape ``(1, act_dim)`` or ``(act_dim,)``; the action is clipped to the action space.
- It renders one gymnasium env of ``task`` (``render_mode="rgb_array"``, ``width`` x
  ``height`` where the env takes them, ``env_kwargs`` to ``gymnasium.make``) for ``length``
  frames: the first after ``reset(seed=seed)``, then one per env step; an episode that ends
  starts again. MuJoCo scenes are drawn without multisampling, shadows and floor reflections:
  under Mesa's software renderer a frame of HalfCheetah-v5 at 320x240 then takes 6.4 ms of CPU
  instead of 152 (:func:`_without_multisampling`, :func:`_without_shadows_and_reflections`).
  Encoded with imageio's ffmpeg plugin (imageio-ffmpeg ships the binary) as H.264, yuv420p,
  at the env's ``render_fps``; written to ``<name>.partial.mp4`` and renamed, so a file named
  ``*.mp4`` is always complete.
- MuJoCo renders through ``MUJOCO_GL``, ``egl`` when unset (headless; Mesa's software EGL
  where there is no GPU). No GL here: :class:`RenderUnavailable`, one line saying what to
  install.

**During training** (``--video``, ``--video-length``, ``--video-interval``; the session calls
:func:`training_videos`): the policy after the first iteration, after every ``interval``-th and
after the last is recorded (``videos/iteration_<n>.mp4``, ``n`` iterations done, as
``model_<n>.pt``). Rendering on a CPU is slow (seconds per video), so it never runs on the
training thread:

- **gymnasium tasks**: at the iteration boundary the launcher takes a CPU copy of the
  deterministic policy (``TrainHooks.policy_ready``: the actor with its normaliser, a small
  MLP: 2-3 ms on this CPU) and forks; the child renders with that copy and exits, while
  training goes on. A video is a fixed amount of work (HalfCheetah-v5, 200 frames: about
  2.5 CPU seconds here), so the child keeps the launcher's CPU priority: at a lower one it got
  no CPU at all while training kept both cores of a small machine busy, and its video came
  only after the run (or never). The child touches only the CPU copy, never the
  training device, so this holds whatever the device: a policy training on a GPU is recorded
  mid-run too (the child must not use CUDA, and has nothing on it). Forking needs no pickling
  (skrl's model classes are generated at run time and do not pickle) and no imports, and a
  renderer that crashes takes only the child with it (the launcher itself never renders: a
  process that has drawn with Mesa's EGL hangs drawing again in a forked child). At most one
  mid-run video renders at a time (a trigger while one renders is skipped, with one line); the
  final one always starts. The end of the run waits for the videos still rendering (bounded)
  and uploads them.
- **Isaac Lab tasks** (the app started with cameras, as Isaac Lab's train scripts force with
  ``--video``): the training env records, as those scripts make it (2.x: gymnasium's
  ``RecordVideo``, :func:`record_isaaclab_env`; 3.0: the env's own recorders; see
  ``training.envs.isaaclab_compat.make_task_env``); each file is uploaded at the next
  iteration boundary after it is finished.

The first failure to render prints one line and turns videos off; training goes on.
Standard library only at import: torch, gymnasium and imageio load when a video is made.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.config import DEFAULT_VIDEO_LENGTH as DEFAULT_LENGTH  # frames (= env steps)

DEFAULT_WIDTH, DEFAULT_HEIGHT = 320, 240
ARTIFACT_PATH = "videos"
# What to install when nothing renders (Debian/Ubuntu names; PyOpenGL is what mujoco.egl uses).
INSTALL_HINT = ("to render headless install PyOpenGL (pip install PyOpenGL) and Mesa's EGL "
                "(apt-get install libegl1 libgl1-mesa-dri) and leave MUJOCO_GL unset or egl")
# How long the end of a run waits for the last video to render and upload.
FINAL_VIDEO_TIMEOUT_S = 300.0
UPLOAD_TIMEOUT_S = 60.0
TRAINED = "the trained policy"  # what the last line names (quickstart.sh shows it)

Policy = Callable[[Any], Any]


class RenderUnavailable(RuntimeError):
    """Nothing renders here (no GL, no PyOpenGL, a MUJOCO_GL this machine lacks); one line."""


@dataclass(frozen=True)
class VideoFile:
    path: Path
    frames: int
    width: int
    height: int
    fps: float


@dataclass(frozen=True)
class VideoSettings:
    """What --video asked for; ``folder``: where this launch writes its videos."""

    length: int
    interval: int
    folder: Path


def settings_for(config: Any) -> VideoSettings | None:
    """The run's video settings (None: --video is off)."""
    if not config.video:
        return None
    folder = config.output_dir / ARTIFACT_PATH / uuid.uuid4().hex  # this launch's own
    return VideoSettings(length=config.video_length, interval=config.video_interval,
                         folder=folder)


# --- one video -------------------------------------------------------------------------------


def record_video(policy: Policy, task: str, path: Path, *, length: int = DEFAULT_LENGTH,
                 width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT, seed: int = 0,
                 env_kwargs: Mapping[str, Any] | None = None) -> VideoFile:
    """Render ``length`` frames of ``policy`` acting in ``task`` into the mp4 ``path`` (see the
    module doc). Raises RenderUnavailable when nothing renders here."""
    import numpy as np
    import torch

    os.environ.setdefault("MUJOCO_GL", "egl")
    path = Path(path)
    env, obs, first_frame = _render_env(task, width, height, seed, dict(env_kwargs or {}))
    try:
        low, high = env.action_space.low, env.action_space.high
        fps = float(env.metadata.get("render_fps") or 30)
        with _Mp4Writer(path, fps) as writer:
            writer.append(first_frame)
            frames_written = 1
            with torch.inference_mode():
                while frames_written < length:
                    observation = torch.as_tensor(np.asarray(obs, dtype=np.float32)).reshape(1, -1)
                    action = policy(observation)
                    if isinstance(action, torch.Tensor):
                        action = action.detach().cpu().numpy()
                    action = np.clip(np.asarray(action, dtype=np.float64).reshape(low.shape),
                                     low, high)
                    obs, _, terminated, truncated, _ = env.step(action)
                    if terminated or truncated:
                        obs, _ = env.reset()
                    writer.append(env.render())
                    frames_written += 1
    finally:
        env.close()
    height_px, width_px = first_frame.shape[:2]
    return VideoFile(path=path, frames=frames_written, width=int(width_px),
                     height=int(height_px), fps=fps)


def _render_env(task: str, width: int, height: int, seed: int,
                env_kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """The env, reset, and its first frame; RenderUnavailable when that frame cannot be drawn
    (MuJoCo picks its GL context while the env is built or first rendered)."""
    import gymnasium

    try:
        try:
            env = gymnasium.make(task, render_mode="rgb_array", width=width, height=height,
                                 **env_kwargs)
        except TypeError:  # an env that takes no size (not a MujocoEnv): its own
            env = gymnasium.make(task, render_mode="rgb_array", **env_kwargs)
    except gymnasium.error.Error:  # an unknown id, a missing extra: not the renderer
        raise
    except Exception as error:  # the GL context chosen while the env is built
        raise RenderUnavailable(_no_render_line(task, error)) from error
    try:
        _without_multisampling(env)
        obs, _ = env.reset(seed=seed)
        frame = env.render()
        if frame is None:
            raise RuntimeError("render() returned no frame")
        if _without_shadows_and_reflections(env):
            frame = env.render()  # the first frame as the others are drawn
    except Exception as error:  # mujoco.FatalError, ImportError (PyOpenGL), RuntimeError ...
        _close_quietly(env)
        raise RenderUnavailable(_no_render_line(task, error)) from error
    return env, obs, frame


def _without_multisampling(env: Any) -> None:
    """A gymnasium MuJoCo env renders into a buffer without multisampling. MuJoCo reads
    ``model.vis.quality.offsamples`` (4 by default) when the viewer's render context is made,
    at the first render, so this comes before it. Under Mesa's software renderer 4x
    multisampling triples the cost of a frame (HalfCheetah-v5 at 320x240 here: 19 -> 6.4 ms of
    CPU), for edges that at this size look hardly smoother. A non-MuJoCo env: unchanged."""
    quality = getattr(getattr(getattr(env.unwrapped, "model", None), "vis", None), "quality",
                      None)
    if quality is not None and hasattr(quality, "offsamples"):
        quality.offsamples = 0


def _without_shadows_and_reflections(env: Any) -> bool:
    """A gymnasium MuJoCo env's viewer (made by the first render) draws no shadows and no
    floor reflections: under Mesa's software renderer that is about 8x less CPU (HalfCheetah-v5
    at 320x240 here, multisampled: 152 -> 19 ms a frame) and the robot is as plain to see.
    False for an env that is not a MujocoEnv (drawn as it is)."""
    viewer = getattr(getattr(env.unwrapped, "mujoco_renderer", None), "viewer", None)
    scene = getattr(viewer, "scn", None)
    if scene is None:
        return False
    import mujoco

    scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
    scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
    return True


def _close_quietly(env: Any) -> None:
    """Close an env whose renderer failed half-built: gymnasium's viewer then fails again in
    its ``__del__`` ("Exception ignored in ... OffScreenViewer.__del__"); that second failure
    says nothing new, so it is not printed."""
    import gc

    hook, sys.unraisablehook = sys.unraisablehook, lambda unraisable: None
    try:
        with contextlib.suppress(Exception):
            env.close()
        del env
        gc.collect()
    finally:
        sys.unraisablehook = hook


def _no_render_line(task: str, error: BaseException) -> str:
    from training.store import first_line

    backend = os.environ.get("MUJOCO_GL", "")
    return (f"cannot render {task} here (MUJOCO_GL={backend}: {first_line(error)}): "
            f"{INSTALL_HINT}")


class _Mp4Writer:
    """Frames into an H.264 mp4 at ``path``, through a ``.partial.mp4`` name until complete."""

    def __init__(self, path: Path, fps: float) -> None:
        import imageio.v2 as imageio

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.partial = path.with_name(f"{path.stem}.partial{path.suffix}")
        # macro_block_size 16: H.264 wants sizes divisible by it; imageio pads (resizes) others.
        # x264's veryfast preset: 200 frames of 320x240 take 0.41 instead of 0.67 s of CPU
        # (the default, medium) for a file 4 % larger.
        self._writer = imageio.get_writer(self.partial, format="FFMPEG", fps=fps,
                                          codec="libx264", pixelformat="yuv420p",
                                          output_params=["-preset", "veryfast"],
                                          macro_block_size=16, ffmpeg_log_level="error")

    def append(self, frame: Any) -> None:
        self._writer.append_data(frame)

    def __enter__(self) -> _Mp4Writer:
        return self

    def __exit__(self, kind: Any, *rest: Any) -> None:
        self._writer.close()
        if kind is None:
            os.replace(self.partial, self.path)
        else:
            self.partial.unlink(missing_ok=True)


# --- during training -------------------------------------------------------------------------


class NoVideos:
    """What the session holds when --video is off: every call does nothing."""

    def policy_ready(self, current_policy: Callable[[], Policy]) -> None:
        pass

    def after_iteration(self, iteration: int) -> None:
        pass

    def close(self, deadline: Callable[[], float]) -> None:
        pass

    def abort(self) -> None:
        pass


NO_VIDEOS = NoVideos()


def training_videos(config: Any, env_handle: Any, *, client: Any, run_id: str, log_dir: Path,
                    max_iterations: int) -> NoVideos:
    """The session's one call: NO_VIDEOS without --video, else the recorder for this task."""
    if not config.video:
        return NO_VIDEOS
    upload = upload_to(client, run_id)
    if env_handle.kind == "isaaclab":  # the env records (training.envs.isaaclab_compat)
        return FolderVideos(tuple(env_handle.video_folders), upload)
    from training.envs import resolve_gym_env_cfg

    env_kwargs = {key: value for key, value in
                  resolve_gym_env_cfg(config.task, 1, config.overrides).items()
                  if key != "num_envs"}
    settings = VideoSettings(length=config.video_length, interval=config.video_interval,
                             folder=log_dir / ARTIFACT_PATH)
    return ForkedVideos(settings, task=config.task, env_kwargs=env_kwargs, seed=env_handle.seed,
                        max_iterations=max_iterations, upload=upload)


def upload_to(client: Any, run_id: str) -> Callable[[Path], str]:
    """path -> its runs:/ URI once logged under videos/ (retried; the store's last error)."""
    from training.store import retry, within

    def upload(path: Path) -> str:
        retry(lambda: client.log_artifact(run_id, str(path), ARTIFACT_PATH),
              deadline=within(UPLOAD_TIMEOUT_S))
        return f"runs:/{run_id}/{ARTIFACT_PATH}/{path.name}"

    return upload


def _say(line: str) -> None:
    with contextlib.suppress(ValueError, OSError):  # stdout closed under us
        print(f"video: {line}", flush=True)


class _Uploads:
    """What was uploaded, and the one line for a failure to render (then videos stop)."""

    def __init__(self, upload: Callable[[Path], str], announce: str) -> None:
        self._upload, self._announce = upload, announce
        self.lock = threading.Lock()
        self.uploaded: dict[Path, str] = {}  # file -> runs:/ URI
        self.disabled = False

    def upload(self, path: Path) -> None:
        from training.store import first_line

        try:
            uri = self._upload(path)
        except Exception as error:  # the store: the file stays on disk
            _say(f"{path.name} not uploaded ({first_line(error)}); kept at {path}")
            return
        with self.lock:
            self.uploaded[path] = uri

    def cannot_render(self, line: str) -> None:
        with self.lock:
            if self.disabled:
                return
            self.disabled = True
        _say(f"{line}; training goes on without videos")

    def announce_last(self) -> None:
        with self.lock:
            if not self.uploaded:
                return
            path, uri = max(self.uploaded.items(), key=lambda item: _iteration_of(item[0]))
        _say(f"{self._announce}: {path.resolve()} (MLflow artifact {uri})")


def _iteration_of(path: Path) -> int:
    """The number a video's name ends with (iteration_<n>, train-step-<step>, clip_<index>):
    later videos have larger ones; -1 for none."""
    match = re.search(r"(\d+)$", path.stem)
    return int(match.group(1)) if match else -1


class ForkedVideos(NoVideos):
    """gymnasium tasks: each video renders in a forked child (see the module doc)."""

    def __init__(self, settings: VideoSettings, *, task: str, env_kwargs: Mapping[str, Any],
                 seed: int, max_iterations: int, upload: Callable[[Path], str]) -> None:
        self.settings, self.task, self.folder = settings, task, settings.folder
        self.env_kwargs, self.seed = dict(env_kwargs), seed
        self.max_iterations = max_iterations
        self._uploads = _Uploads(upload, TRAINED)
        self._current_policy: Callable[[], Policy] | None = None
        self._children: dict[int, threading.Thread] = {}  # pid -> its watcher
        self._mid_run: threading.Thread | None = None  # the last mid-run video's watcher
        self._given_up: set[int] = set()  # killed by close or abort: nothing to report

    def policy_ready(self, current_policy: Callable[[], Policy]) -> None:
        self._current_policy = current_policy

    def after_iteration(self, iteration: int) -> None:
        done = iteration + 1
        final = done >= self.max_iterations
        if not (final or done == 1 or done % self.settings.interval == 0):
            return
        if self._uploads.disabled or self._current_policy is None:
            return
        rendering = self._mid_run
        if not final and rendering is not None and rendering.is_alive():  # one at a time
            _say(f"iteration_{done}.mp4 skipped: {rendering.name}.mp4 is still rendering")
            return
        from training.store import first_line

        try:
            policy = self._current_policy()  # a CPU copy: the child never sees the trainer's
        except Exception as error:  # noqa: BLE001 -- a video is not worth the run
            _say(f"iteration_{done}.mp4 not recorded: no copy of the policy ({first_line(error)})")
            return
        watcher = self._fork(done, final, policy)
        if not final:
            self._mid_run = watcher

    def _fork(self, done: int, final: bool, policy: Policy) -> threading.Thread:
        path = self.folder / f"iteration_{done}.mp4"
        read_fd, write_fd = os.pipe()
        with warnings.catch_warnings():  # 3.12+: "multi-threaded, fork may deadlock": the
            warnings.simplefilter("ignore", DeprecationWarning)  # child takes no lock (below)
            pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(read_fd)
            self._child(write_fd, path, policy)
        os.close(write_fd)
        watcher = threading.Thread(target=self._watch, args=(pid, read_fd, path),
                                   name=path.stem, daemon=True)
        self._children[pid] = watcher
        watcher.start()
        return watcher

    def _child(self, write_fd: int, path: Path, policy: Policy) -> None:
        """Render, report one JSON line through the pipe, and leave at once with os._exit: no
        atexit hook, no flush of the parent's buffers, no lock another thread of the parent
        held at fork time (MLflow's senders) is ever taken here."""
        report: dict[str, Any] = {"ok": False, "error": "the child did not finish"}
        code = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides (abort)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            warnings.simplefilter("ignore")  # GLFW's and gymnasium's: the report says it all
            _die_with_parent()
            import torch

            torch.set_num_threads(1)  # no OpenMP pool inherited in a half-forked state
            video = record_video(policy, self.task, path,
                                 length=self.settings.length, seed=self.seed,
                                 env_kwargs=self.env_kwargs)
            report, code = {"ok": True, "frames": video.frames}, 0
        except RenderUnavailable as error:
            report = {"ok": False, "no_render": True, "error": str(error)}
        except BaseException as error:  # noqa: BLE001 -- reported to the parent, never raised
            report = {"ok": False, "error": f"{type(error).__name__}: {error}".splitlines()[0]}
        finally:
            with contextlib.suppress(BaseException):
                os.write(write_fd, json.dumps(report).encode() + b"\n")
            os._exit(code)

    def _watch(self, pid: int, read_fd: int, path: Path) -> None:
        """The child's report, then its exit; upload what it wrote."""
        with os.fdopen(read_fd, "rb") as pipe:
            text = pipe.read().decode(errors="replace")
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        if pid in self._given_up:
            return
        try:
            report = json.loads(text.strip().splitlines()[-1])
        except (ValueError, IndexError):
            report = {"ok": False, "error": "the renderer ended without a report (killed?)"}
        if report.get("no_render"):
            self._uploads.cannot_render(report["error"])
        elif not report.get("ok"):
            _say(f"{path.name} not recorded: {report['error']}")
        elif path.exists():
            self._uploads.upload(path)

    def close(self, deadline: Callable[[], float]) -> None:
        """After the last iteration: the videos still rendering (the final one, a mid-run one)
        finished and uploaded, until deadline."""
        bounded = min(deadline(), time.monotonic() + FINAL_VIDEO_TIMEOUT_S)
        for pid, watcher in list(self._children.items()):
            watcher.join(max(0.0, bounded - time.monotonic()))
            if watcher.is_alive():
                if not self._uploads.disabled:  # else the one line about rendering said it
                    _say(f"{watcher.name}.mp4 was not finished by the end of the run: not "
                         "uploaded")
                self._given_up.add(pid)
                _kill(pid)
        self._children.clear()
        self._uploads.announce_last()

    def abort(self) -> None:
        """The run ends otherwise (a stop signal, a failure): end any child still rendering."""
        for pid in list(self._children):
            self._given_up.add(pid)
            _kill(pid)
        self._children.clear()


class FolderVideos(NoVideos):
    """Isaac Lab tasks: upload the mp4 files the env's recorders finished (RecordVideo on 2.x,
    the env's own recorders on 3.0; both write them whole within an env step, so a file seen
    at an iteration boundary is complete; ``*.partial.mp4``: ours, still being written)."""

    def __init__(self, folders: tuple[Path, ...], upload: Callable[[Path], str], *,
                 announce: str = TRAINED) -> None:
        self.folders = folders
        self._uploads = _Uploads(upload, announce)
        self._seen: set[Path] = set()

    def after_iteration(self, iteration: int) -> None:
        for folder in self.folders:
            for path in sorted(folder.glob("*.mp4"), key=_iteration_of):
                if path not in self._seen and not path.name.endswith(".partial.mp4"):
                    self._seen.add(path)
                    self._uploads.upload(path)

    def close(self, deadline: Callable[[], float]) -> None:
        self.after_iteration(-1)  # a video in progress is saved when the env closes, later
        self._uploads.announce_last()


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, ChildProcessError):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _die_with_parent() -> None:
    """Linux: the child gets SIGKILL when the launcher dies (prctl PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))


# --- Isaac Lab --------------------------------------------------------------------------------


def record_isaaclab_env(env: Any, settings: VideoSettings, *, every_steps: int) -> Any:
    """An Isaac Lab 2.x env (made with ``render_mode="rgb_array"``) in gymnasium's RecordVideo
    as Isaac Lab 2.x's train scripts wrap it (training.envs.isaaclab_compat.make_task_env): a
    video of ``settings.length`` steps every ``every_steps`` env steps into
    ``settings.folder``, no logger; saved by :class:`_Mp4Writer` instead of moviepy."""
    return _recorder_class()(env, video_folder=str(settings.folder),
                             step_trigger=lambda step: step % every_steps == 0,
                             video_length=settings.length, name_prefix="train",
                             disable_logger=True)


def _recorder_class() -> type:
    """gymnasium's RecordVideo, saving through our imageio writer: upstream's stop_recording
    (gymnasium/wrappers/rendering.py, 1.x) writes ``<video_folder>/<_video_name>.mp4`` with
    moviepy's ImageSequenceClip at ``frames_per_sec``, then clears ``recorded_frames``,
    ``recording`` and ``_video_name``; this one does the same with :class:`_Mp4Writer`."""
    from gymnasium.wrappers import RecordVideo

    class Mp4RecordVideo(RecordVideo):
        def stop_recording(self) -> None:
            assert self.recording, "stop_recording was called, but no recording was started"
            if self.recorded_frames:
                path = Path(self.video_folder) / f"{self._video_name}.mp4"
                with _Mp4Writer(path, float(self.frames_per_sec)) as writer:
                    for frame in self.recorded_frames:
                        writer.append(frame)
            self.recorded_frames = []
            self.recording = False
            self._video_name = None

    return Mp4RecordVideo
