"""The RSL-RL backend: train an rsl-rl ``OnPolicyRunner`` with the launcher's hooks.

The backend interface of ``training.backends.base.Backend``::

    RSL_RL_VERSION                    # installed rsl-rl-lib, e.g. "5.5.1"
    versions()                        # {"rsl_rl_version": "5.5.1"}
    checkpoint_format()               # "rsl_rl-2" (rsl-rl 2.x/3.x) or "rsl_rl-5" (4.x/5.x)
    inspect_checkpoint(path)          # -> Checkpoint, or CheckpointError (one line)
    make_gym_env(task, ...)           # our gymnasium adapter + training/agents cfg
    wrap_isaaclab_env(env, agent_cfg) # Isaac Lab's RslRlVecEnvWrapper
    train(env_handle, log_dir=..., device=..., max_iterations=..., save_interval=...,
          init=Checkpoint | None, mode="warm-start" | "resume" | None, hooks=TrainHooks())
        -> TrainResult

Iterations are counted as iterations *done*: ``model_6.pt`` holds the state after 6 learning
iterations (metric steps 0..5) and its ``iter`` is 6, so resuming it runs iteration 6 next
and reports metrics at steps 6, 7, ... ``train`` saves ``model_<n>.pt`` in ``log_dir`` every
``save_interval`` iterations, at the end, and when ``hooks.should_stop()`` asks;
each file is complete (written, then renamed) before ``hooks.on_checkpoint`` sees it.

- from scratch (``init`` None): trains ``max_iterations`` iterations;
- ``warm-start``: weights and observation normalisers from ``init``, fresh optimizer, counter
  0, trains ``max_iterations``;
- ``resume``: weights, optimizer and counter from ``init``; trains up to ``max_iterations``
  in total (nothing when the checkpoint is already there).

How: the library's own ``learn`` runs unchanged. Its save interval is set to 1 so that it calls
``save`` after every iteration; :class:`HookedRunner` turns that call into the iteration
boundary (metrics, our own save schedule, stop requests). Metrics are what rsl-rl's own logging
code computed, received by a writer object (:class:`rsl_rl_compat.IterationMetrics`).
Importing this module imports torch and ``rsl_rl.runners``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.envs import EnvHandle

# rsl_rl.runners imports GitPython, which fails at import when no git binary is on PATH.
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

import torch  # noqa: E402
from rsl_rl.runners import OnPolicyRunner  # noqa: E402

from training.backends import rsl_rl_compat as compat  # noqa: E402
from training.backends.base import (  # noqa: E402
    Checkpoint,
    CheckpointError,
    LoadMode,
    Policy,
    TrainHooks,
    TrainResult,
    backend_of_format,
    checkpoint_format_of,
    describe_checkpoint_format,
)
from training.console import quiet_stdout  # noqa: E402
from training.store import first_line  # noqa: E402

NAME = "rsl_rl"
RSL_RL_VERSION: str = compat.RSL_RL_VERSION
REWARD_METRIC = "Train/mean_reward"
FPS_METRIC = "Perf/total_fps"
ISAACLAB_CFG_ENTRY_POINT = "rsl_rl_cfg_entry_point"


def versions() -> dict[str, str]:
    return {"rsl_rl_version": RSL_RL_VERSION}


def make_gym_env(task: str, *, num_envs: int, seed: int | None, device: str,
                 overrides: Mapping[str, Any] | None = None) -> EnvHandle:
    """A gymnasium task through our rsl-rl VecEnv adapter, with training/agents' cfg.
    ``overrides``: ``agent.*`` paths of the neutral cfg, ``env.*`` the env's kwargs (already
    checked and typed by training.envs.make_env)."""
    from training.envs import EnvHandle, TaskError, one_line, read_agent_cfg
    from training.envs.gym_vec import GymVecEnv
    from training.overrides import select

    neutral = read_agent_cfg(task, seed, overrides=overrides)
    try:
        env = GymVecEnv(task, num_envs=num_envs, seed=neutral["seed"], device=device,
                        env_kwargs=select(overrides or {}, "env"))
    except Exception as error:  # a registered id whose env cannot be built (missing extra, ...)
        raise TaskError(f"cannot build gymnasium task {task}: {one_line(error)}") from error
    agent_cfg = compat.agent_cfg_from_neutral(neutral, experiment_name=task)
    return EnvHandle(env=env, agent_cfg=agent_cfg, kind="gymnasium",
                     max_iterations=int(neutral["max_iterations"]),
                     save_interval=int(neutral["save_interval"]), seed=int(neutral["seed"]),
                     _close=env.close)


def wrap_isaaclab_env(env: Any, agent_cfg: Any, *, device: str) -> EnvHandle:
    """An Isaac Lab env in Isaac Lab's own RslRlVecEnvWrapper, as its rsl-rl train script
    wraps it (``agent_cfg`` is the resolved RslRlOnPolicyRunnerCfg)."""
    from isaaclab_rl.rsl_rl import RslRlVecEnvWrapper

    from training.envs import EnvHandle

    wrapped = RslRlVecEnvWrapper(env, clip_actions=getattr(agent_cfg, "clip_actions", None))
    cfg = agent_cfg.to_dict()
    return EnvHandle(env=wrapped, agent_cfg=cfg, kind="isaaclab",
                     max_iterations=int(cfg["max_iterations"]),
                     save_interval=int(cfg["save_interval"]), seed=int(cfg["seed"]),
                     _close=wrapped.close)


def checkpoint_format() -> str:
    """The checkpoint format the installed rsl-rl reads and writes."""
    return compat.CHECKPOINT_FORMAT


def inspect_checkpoint(path: Path) -> Checkpoint:
    """Check that ``path`` is a complete checkpoint the installed rsl-rl can load."""
    expected = describe_checkpoint_format(compat.CHECKPOINT_FORMAT)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # truncated zip, not a torch file, unreadable ...
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt: {first_line(error)}); "
            f"expected an {expected} checkpoint"
        ) from error
    found = checkpoint_format_of(saved) if isinstance(saved, dict) else None
    if found is None:
        keys = ", ".join(sorted(map(str, saved))[:6]) if isinstance(saved, dict) else "no dict"
        raise CheckpointError(
            f"{path} is not an rsl-rl checkpoint (found {keys}); expected an {expected} checkpoint"
        )
    if backend_of_format(found) != NAME:
        raise CheckpointError(
            f"{path} was written by {describe_checkpoint_format(found)}, but the {NAME} backend "
            f"loads only {expected}: train with -b {backend_of_format(found)}, or from scratch"
        )
    if found != compat.CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} was written by {describe_checkpoint_format(found)}, but the installed "
            f"rsl-rl {RSL_RL_VERSION} loads only {expected}; the formats do not convert: "
            "use an image with a matching rsl-rl, or train from scratch"
        )
    return Checkpoint(path=Path(path), iteration=int(saved["iter"]), format=found)


# --- policy: export and evaluation -----------------------------------------------------------


def policy_from_checkpoint(checkpoint: Checkpoint, env_handle: EnvHandle, *,
                           device: str) -> Policy:
    """The checkpoint's deterministic actor and normaliser, loaded into a runner built for
    ``env_handle`` as a warm start would load it (CheckpointError when the shapes differ)."""
    from training.backends.actor_module import make_policy

    with tempfile.TemporaryDirectory() as log_dir:
        runner = build_runner(env_handle, log_dir=Path(log_dir), device=device,
                              init=checkpoint, mode="warm-start")
    module, onnx_module, scriptable, exporter = compat.export_modules(runner)
    return make_policy(module, onnx_module, scriptable=scriptable, exporter=exporter)


class RslRlEpisodes:
    """An rsl-rl VecEnv as an EpisodeEnv (it resets finished sub-envs itself)."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.num_envs = int(env.num_envs)

    def reset(self) -> torch.Tensor:
        return compat.policy_observations(self.env.get_observations())

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        observations, rewards, dones, _ = self.env.step(actions)
        return compat.policy_observations(observations), rewards.view(-1), dones.view(-1) > 0


def episode_env(env_handle: EnvHandle) -> RslRlEpisodes:
    return RslRlEpisodes(env_handle.env)


class _StopRequested(Exception):
    """Raised at an iteration boundary, after saving, to leave rsl-rl's ``learn`` loop."""


class HookedRunner(OnPolicyRunner):
    """An OnPolicyRunner whose ``save`` calls mark iteration boundaries (see module doc).
    With several ranks every rank reaches the boundary; only global rank 0 writes files."""

    def _configure_multi_gpu(self) -> None:
        compat.configure_multi_gpu(self)  # the process group is training.distributed's

    def attach(self, *, log_dir: Path, hooks: TrainHooks, save_every: int, last: int) -> None:
        self._log_dir = log_dir
        self._hooks = hooks
        self._save_every = save_every
        self._last = last
        self._last_boundary = -1
        self.metrics = compat.IterationMetrics()
        compat.route_logging(self, self.metrics)
        self.done = self.current_learning_iteration
        self.last_checkpoint: Path | None = None

    def save(self, path: str, infos: Any = None) -> None:
        # learn() sets current_learning_iteration to the finished iteration's index before
        # calling save, after each iteration and once more after the loop (same index).
        index = self.current_learning_iteration
        if index == self._last_boundary:
            return
        self._last_boundary = index
        self.done = index + 1
        self._hooks.on_iteration(index, self.metrics.take())
        stop = self._hooks.should_stop()
        due = stop or self.done % self._save_every == 0 or self.done == self._last
        if due and self.gpu_global_rank == 0:
            self.write_checkpoint()
        if stop:
            raise _StopRequested

    def write_checkpoint(self) -> Path:
        """Save the state after ``self.done`` iterations as ``model_<done>.pt``, then report it."""
        path = self._log_dir / f"model_{self.done}.pt"
        partial = path.with_name(path.name + ".partial")
        index, self.current_learning_iteration = self.current_learning_iteration, self.done
        try:
            super().save(str(partial))  # stores current_learning_iteration as "iter"
        finally:
            self.current_learning_iteration = index
        os.replace(partial, path)
        self.last_checkpoint = path
        self._hooks.on_checkpoint(self.done, path)
        return path


def build_runner(
    env_handle: EnvHandle,
    *,
    log_dir: Path,
    device: str,
    init: Checkpoint | None,
    mode: LoadMode | None,
) -> HookedRunner:
    """The runner with ``init`` loaded as ``mode`` says (from scratch when either is None)."""
    torch.manual_seed(env_handle.seed)
    cfg = compat.runner_cfg(env_handle.agent_cfg)
    cfg["seed"] = env_handle.seed
    cfg["save_interval"] = 1  # every iteration ends in save(): our boundary (see module doc)
    log_dir.mkdir(parents=True, exist_ok=True)
    with quiet_stdout():  # rsl-rl prints the models it builds
        runner = HookedRunner(env_handle.env, cfg, log_dir=str(log_dir), device=device)
    if init is not None and mode is not None:
        try:
            compat.load_checkpoint(runner, init.path, resume=mode == "resume", device=device)
        except (RuntimeError, KeyError, ValueError) as error:  # shapes or keys do not match
            raise CheckpointError(
                f"{init.path} does not fit this task's networks ({first_line(error)}); expected a "
                f"checkpoint trained on the same task and agent cfg"
            ) from error
    return runner


def random_episode_starts(agent_cfg: dict[str, Any]) -> bool:
    """Isaac Lab 3.0 agent cfgs carry ``init_at_random_ep_len`` (False for some tasks); 2.x
    cfgs and ours do not, and their train scripts pass True."""
    return bool(agent_cfg.get("init_at_random_ep_len", True))


def train(
    env_handle: EnvHandle,
    *,
    log_dir: Path,
    device: str,
    max_iterations: int,
    save_interval: int,
    init: Checkpoint | None,
    mode: LoadMode | None,
    hooks: TrainHooks,
) -> TrainResult:
    log_dir = Path(log_dir)
    runner = build_runner(env_handle, log_dir=log_dir, device=device, init=init, mode=mode)
    start = runner.current_learning_iteration
    if start >= max_iterations:  # a resume that is already there
        return TrainResult(start, start, init.path if init is not None else None)
    save_every = max(1, save_interval)
    runner.attach(log_dir=log_dir, hooks=hooks, save_every=save_every, last=max_iterations)
    hooks.policy_ready(lambda: compat.inference_module(runner))
    stopped = hooks.should_stop()
    if stopped:  # asked to stop before the first iteration: nothing new to save
        return TrainResult(start, start, init.path if init is not None else None, True)
    try:
        runner.learn(max_iterations - start,
                     init_at_random_ep_len=random_episode_starts(env_handle.agent_cfg))
    except _StopRequested:
        stopped = True
    from training.distributed import report_parameters

    report_parameters(runner.done, compat.trained_parameters(runner))  # with several ranks
    return TrainResult(start, runner.done, runner.last_checkpoint, stopped)
