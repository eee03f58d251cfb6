"""The skrl backend: train skrl's own ``Runner`` (skrl.utils.runner.torch) with our hooks.

The backend interface of ``training.backends.base.Backend``::

    SKRL_VERSION                      # installed skrl, e.g. "2.1.1" or "1.4.3"
    versions()                        # {"skrl_version": "2.1.1"}
    checkpoint_format()               # "skrl" (both versions; see skrl_compat)
    inspect_checkpoint(path)          # -> Checkpoint, or CheckpointError (one line)
    make_gym_env(task, ...)           # gymnasium.make_vec + skrl's wrap_env, agents/skrl cfg
    wrap_isaaclab_env(env, agent_cfg) # Isaac Lab's SkrlVecEnvWrapper
    train(env_handle, log_dir=..., device=..., max_iterations=..., save_interval=...,
          init=Checkpoint | None, mode="warm-start" | "resume" | None, hooks=TrainHooks())
        -> TrainResult

**One iteration is one rollout**: ``agent.rollouts`` timesteps of every env followed by one
PPO update, as Isaac Lab's skrl train script counts (``trainer.timesteps = max_iterations *
rollouts``). The metric step is the iteration index (0, 1, ...), the same in metrics, in
checkpoint names and in the progress line; ``model_6.pt`` holds the state after 6 iterations
(= 6 x rollouts timesteps), and resuming it reports steps 6, 7, ...

- from scratch (``init`` None): trains ``max_iterations`` iterations;
- ``warm-start``: policy, value and preprocessors from ``init``; fresh optimizer (so the
  initial learning rate), counter 0; trains ``max_iterations``;
- ``resume``: every module (the optimizer, whose param groups hold KLAdaptiveLR's current rate,
  included) and the counter; trains up to ``max_iterations`` in total (nothing when there).

How: skrl's trainer runs unchanged. The agent's ``post_interaction`` is wrapped: after skrl's
own (the PPO update on the last timestep of a rollout, then skrl's write of its tracked data),
the end of each rollout is our iteration boundary: metrics to ``hooks.on_iteration``, our save
schedule, stop requests. skrl's write interval is one iteration and its writer is
:class:`skrl_compat.TrackedValues`, so every value skrl tracks arrives, reduced by skrl itself,
under skrl's names ("Reward / Total reward (mean)", "Loss / Value loss", ...). skrl writes no
TensorBoard files and no checkpoints of its own; ours are ``model_<n>.pt`` in ``log_dir``:
skrl's module dict (what ``agent.save`` writes, so skrl's ``agent.load`` reads it too) plus
:data:`PROGRESS_KEY` (format, iterations, timesteps, skrl version). skrl 2.x's trainer always
starts at timestep 0, so the backend runs the remaining timesteps and carries the count.
Importing this module imports torch and skrl's runner.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.envs import EnvHandle

import torch
from skrl import config as skrl_config
from skrl.utils.runner.torch import Runner

from training.backends import skrl_compat as compat
from training.backends.base import (
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
from training.console import quiet_stdout

NAME = "skrl"
SKRL_VERSION: str = compat.SKRL_VERSION
REWARD_METRIC = "Reward / Total reward (mean)"  # present in iterations where episodes ended
FPS_METRIC = None  # skrl tracks no throughput
ISAACLAB_CFG_ENTRY_POINT = "skrl_cfg_entry_point"
CHECKPOINT_FORMAT = "skrl"
# What our checkpoints add to skrl's module dict: {"format", "iteration", "timesteps",
# "skrl_version"}. skrl's own agent.load skips it with a warning.
PROGRESS_KEY = "progress"
# Modules a warm start takes from a checkpoint: the networks and the running statistics.
WARM_START_MODULES = ("policy", "value")


def versions() -> dict[str, str]:
    return {"skrl_version": SKRL_VERSION}


def checkpoint_format() -> str:
    return CHECKPOINT_FORMAT


# --- environments ------------------------------------------------------------------------------


def make_gym_env(task: str, *, num_envs: int, seed: int | None, device: str,
                 overrides: Mapping[str, Any] | None = None) -> EnvHandle:
    """A gymnasium task as a vector env in skrl's gymnasium wrapper, with agents/skrl's cfg.

    ``make_vec`` with SAME_STEP autoreset (skrl's wrapper relies on the vector env resetting
    finished sub-envs, and SAME_STEP records no reset step as a transition); observations
    cast to float32 per sub-env (MuJoCo's are float64; the vector-level cast refuses SAME_STEP).
    """
    import gymnasium
    import numpy as np
    from gymnasium.vector import AutoresetMode
    from skrl.envs.wrappers.torch import wrap_env

    from training.envs import EnvHandle, TaskError, one_line, read_agent_cfg
    from training.overrides import select

    cfg = read_agent_cfg(task, seed, library="skrl", overrides=overrides)
    try:
        with warnings.catch_warnings():  # "Box low's precision lowered": float32 is the point
            warnings.simplefilter("ignore", UserWarning)
            envs = gymnasium.make_vec(
                task,
                num_envs=num_envs,
                vectorization_mode="sync",
                vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
                wrappers=[lambda env: gymnasium.wrappers.DtypeObservation(env, np.float32)],
                **select(overrides or {}, "env"),
            )
    except Exception as error:  # a registered id whose env cannot be built (missing extra, ...)
        raise TaskError(f"cannot build gymnasium task {task}: {one_line(error)}") from error
    if not isinstance(envs.single_action_space, gymnasium.spaces.Box):
        kind = type(envs.single_action_space).__name__
        envs.close()
        raise TaskError(
            f"cannot build gymnasium task {task}: it has a {kind} action space; the default "
            "skrl PPO cfg (agents/skrl/default.yaml) needs continuous (Box) actions"
        )
    envs.reset(seed=int(cfg["seed"]))
    envs.device = device  # skrl's wrapper takes its device from the env it wraps
    env = wrap_env(envs, wrapper="gymnasium", verbose=False)
    return EnvHandle(env=env, agent_cfg=cfg, kind="gymnasium",
                     max_iterations=int(cfg["max_iterations"]),
                     save_interval=int(cfg["save_interval"]), seed=int(cfg["seed"]),
                     _close=env.close)


def wrap_isaaclab_env(env: Any, agent_cfg: Any, *, device: str) -> EnvHandle:
    """An Isaac Lab env in Isaac Lab's own SkrlVecEnvWrapper, as its skrl train script wraps it
    (``agent_cfg``: the dict its ``skrl_cfg_entry_point`` YAML holds)."""
    from isaaclab_rl.skrl import SkrlVecEnvWrapper

    from training.envs import EnvHandle

    wrapped = SkrlVecEnvWrapper(env, ml_framework="torch")
    max_iterations, save_interval = isaaclab_iterations(agent_cfg)
    return EnvHandle(env=wrapped, agent_cfg=agent_cfg, kind="isaaclab",
                     max_iterations=max_iterations, save_interval=save_interval,
                     seed=int(agent_cfg.get("seed") or 42), _close=wrapped.close)


def isaaclab_iterations(agent_cfg: dict[str, Any]) -> tuple[int, int]:
    """(max_iterations, save_interval) of an Isaac Lab skrl cfg, in iterations: its
    ``trainer.timesteps`` / ``agent.rollouts``, and its checkpoint interval likewise (skrl's
    "auto" is a tenth of the run)."""
    rollouts = int(agent_cfg["agent"]["rollouts"])
    max_iterations = max(1, int(agent_cfg["trainer"]["timesteps"]) // rollouts)
    interval = (agent_cfg["agent"].get("experiment") or {}).get("checkpoint_interval", "auto")
    if isinstance(interval, int) and interval > 0:
        save_interval = max(1, interval // rollouts)
    else:
        save_interval = max(1, max_iterations // 10)
    return max_iterations, save_interval


# --- checkpoints -------------------------------------------------------------------------------


def inspect_checkpoint(path: Path) -> Checkpoint:
    """Check that ``path`` is a complete skrl checkpoint (ours, or skrl's own agent file)."""
    saved = _load(path)
    return Checkpoint(path=Path(path), iteration=_progress(saved)["iteration"],
                      format=CHECKPOINT_FORMAT)


def _load(path: Path) -> dict[str, Any]:
    expected = f"an {describe_checkpoint_format(CHECKPOINT_FORMAT)} checkpoint"
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # truncated zip, not a torch file, unreadable ...
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt: {_first_line(error)}); "
            f"expected {expected}"
        ) from error
    found = checkpoint_format_of(saved) if isinstance(saved, dict) else None
    if found is None:
        keys = ", ".join(sorted(map(str, saved))[:6]) if isinstance(saved, dict) else "no dict"
        raise CheckpointError(
            f"{path} is not an skrl checkpoint (found {keys}); expected {expected}"
        )
    if found != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} was written by {describe_checkpoint_format(found)}, but the {NAME} backend "
            f"loads only {expected}: train with -b {backend_of_format(found)}, or from scratch"
        )
    return saved


def _progress(saved: dict[str, Any]) -> dict[str, Any]:
    """Our progress record; skrl's own ``agent_<timestep>.pt`` files have none: they count as
    iteration 0 (the timestep in their name does not say how many rollouts that was)."""
    progress = saved.get(PROGRESS_KEY)
    if isinstance(progress, dict) and progress.get("format") == CHECKPOINT_FORMAT:
        return progress
    return {"format": CHECKPOINT_FORMAT, "iteration": 0, "timesteps": 0,
            "skrl_version": "unknown"}


def _written_by_major(progress: dict[str, Any]) -> int:
    version = str(progress.get("skrl_version", "unknown"))
    return int(version.split(".")[0]) if version[:1].isdigit() else compat.MAJOR


def _first_line(error: BaseException) -> str:
    """One line of a library error that can span many (a tensor-size table). torch's
    "Error(s) in loading state_dict for GaussianModel:" says what only with its next line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return " ".join(lines[:2]) if lines[0].endswith(":") and len(lines) > 1 else lines[0]


def load_checkpoint(agent: Any, checkpoint: Checkpoint, *, resume: bool) -> int:
    """Load ``checkpoint`` into the agent as the mode says; the iteration training continues
    from (the checkpoint's for resume, 0 for warm-start)."""
    saved = _load(checkpoint.path)
    progress = _progress(saved)
    modules = compat.modules_as_installed(
        {name: state for name, state in saved.items() if name != PROGRESS_KEY},
        written_by=_written_by_major(progress),
    )
    wanted = [name for name in agent.checkpoint_modules
              if resume or name in WARM_START_MODULES or compat.is_preprocessor(name)]
    missing = [name for name in wanted if name not in modules]
    if missing:
        raise CheckpointError(
            f"{checkpoint.path} lacks {', '.join(missing)} (it has {', '.join(sorted(modules))}); "
            "expected a checkpoint trained with the same agent cfg"
        )
    try:
        for name in wanted:
            agent.checkpoint_modules[name].load_state_dict(modules[name])
    except (RuntimeError, KeyError, ValueError) as error:  # shapes or keys do not match
        raise CheckpointError(
            f"{checkpoint.path} does not fit this task's networks ({_first_line(error)}); "
            "expected a checkpoint trained on the same task and agent cfg"
        ) from error
    return int(progress["iteration"]) if resume else 0


# --- policy: export and evaluation -----------------------------------------------------------


class MeanAction(torch.nn.Module):
    """An skrl Gaussian policy's mean action: ``outputs["mean_actions"]`` of its ``act`` (the
    last item in 1.4.3's (actions, log_prob, outputs) and 2.x's (actions, outputs)), which
    skrl's own evaluation uses when it is not stochastic. Inputs under both versions' key
    (1.4.3 "states", 2.x "observations")."""

    def __init__(self, policy: torch.nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        outputs = self.policy.act({"states": obs, "observations": obs}, role="policy")[-1]
        return outputs["mean_actions"]


def mean_action_module(agent: Any) -> torch.nn.Module:
    """A CPU copy of the agent's deterministic policy (observation preprocessor, then the
    policy's mean action), in eval mode; the agent itself is left as it is, so it may be taken
    while it trains (TrainHooks.policy_ready)."""
    from training.backends.actor_module import NormalizedActor

    return NormalizedActor(compat.observation_preprocessor(agent), MeanAction(agent.policy))


def policy_from_checkpoint(checkpoint: Checkpoint, env_handle: EnvHandle, *,
                           device: str) -> Policy:
    """The checkpoint's policy and observation preprocessor, loaded into an agent built for
    ``env_handle`` as a warm start loads them (CheckpointError when the shapes differ).
    skrl builds its models from generated code: they are traced, not scripted."""
    from training.backends.actor_module import make_policy

    with tempfile.TemporaryDirectory() as log_dir:
        training = build_training(env_handle, log_dir=Path(log_dir), init=checkpoint,
                                  mode="warm-start")
    module = mean_action_module(training.agent)
    return make_policy(module, module, scriptable=False,
                       exporter=f"skrl {SKRL_VERSION} policy mean + observation preprocessor")


class SkrlEpisodes:
    """skrl's wrapped vector env as an EpisodeEnv (the vector env resets finished sub-envs)."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.num_envs = int(env.num_envs)

    def reset(self) -> torch.Tensor:
        observations, _ = self.env.reset()
        return observations

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        observations, rewards, terminated, truncated, _ = self.env.step(actions)
        return observations, rewards.view(-1), (terminated | truncated).view(-1)


def episode_env(env_handle: EnvHandle) -> SkrlEpisodes:
    return SkrlEpisodes(env_handle.env)


# --- training ----------------------------------------------------------------------------------


class _StopRequested(Exception):
    """Raised at an iteration boundary, after saving, to leave skrl's training loop."""


class HookedTraining:
    """One ``Runner`` and the bookkeeping around skrl's loop (see the module doc)."""

    def __init__(self, env_handle: EnvHandle, *, log_dir: Path) -> None:
        self.log_dir = log_dir
        cfg = compat.runner_cfg(env_handle.agent_cfg, directory=str(log_dir))
        # With several ranks skrl's set_seed adds its rank to this seed once more: the agent's
        # torch seed is the task's seed + 2 x rank, the env's + rank (distinct on every rank)
        cfg["seed"] = env_handle.seed
        with quiet_stdout():  # 1.4.3's Runner prints each model's generated source
            self.runner = Runner(env_handle.env, cfg)
        self.agent = self.runner.agent
        self.rollouts = compat.rollouts(self.agent)
        self.values = compat.TrackedValues()
        compat.attach_writer(self.agent, self.values, write_interval=self.rollouts)
        self.start = 0
        self.done = 0
        self.last_checkpoint: Path | None = None

    def load(self, init: Checkpoint, mode: LoadMode) -> None:
        self.start = self.done = load_checkpoint(self.agent, init, resume=mode == "resume")

    def run(self, *, max_iterations: int, save_every: int, hooks: TrainHooks) -> None:
        """Train from ``self.done`` to ``max_iterations`` (raises _StopRequested on request)."""
        timesteps = (max_iterations - self.done) * self.rollouts
        compat.set_timesteps(self.runner.trainer, timesteps)
        skrl_post_interaction = self.agent.post_interaction

        def post_interaction(*, timestep: int, timesteps: int) -> None:
            skrl_post_interaction(timestep=timestep, timesteps=timesteps)
            if (timestep + 1) % self.rollouts == 0:
                self._boundary(timestep, timesteps, max_iterations, save_every, hooks)

        self.agent.post_interaction = post_interaction
        try:
            self.runner.run("train")
        finally:
            del self.agent.post_interaction  # back to the class's method

    def _boundary(self, timestep: int, timesteps: int, last: int, save_every: int,
                  hooks: TrainHooks) -> None:
        index = self.done
        self.done += 1
        # skrl wrote at this timestep already (write interval = rollouts) unless its own
        # condition skipped it (timestep > 1): write what is left, then report it all.
        compat.write_tracking_data(self.agent, timestep=timestep + 1, timesteps=timesteps)
        hooks.on_iteration(index, self.values.take())
        stop = hooks.should_stop()
        due = stop or self.done % save_every == 0 or self.done == last
        if due and skrl_config.torch.rank == 0:  # several ranks: the job's writer saves
            self.write_checkpoint(hooks)
        if stop:
            raise _StopRequested

    def write_checkpoint(self, hooks: TrainHooks) -> Path:
        """Save the state after ``self.done`` iterations as ``model_<done>.pt``, then report it."""
        path = self.log_dir / f"model_{self.done}.pt"
        partial = path.with_name(path.name + ".partial")
        modules = {name: module.state_dict()
                   for name, module in self.agent.checkpoint_modules.items()}
        modules[PROGRESS_KEY] = {
            "format": CHECKPOINT_FORMAT,
            "iteration": self.done,
            "timesteps": self.done * self.rollouts,
            "skrl_version": SKRL_VERSION,
        }
        torch.save(modules, partial)
        os.replace(partial, path)
        self.last_checkpoint = path
        hooks.on_checkpoint(self.done, path)
        return path


def build_training(
    env_handle: EnvHandle, *, log_dir: Path, init: Checkpoint | None, mode: LoadMode | None
) -> HookedTraining:
    """The runner with ``init`` loaded as ``mode`` says (from scratch when either is None)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    training = HookedTraining(env_handle, log_dir=log_dir)
    if init is not None and mode is not None:
        training.load(init, mode)
    return training


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
    # device: the env's (skrl builds the models where the wrapped env lives; make_gym_env and
    # Isaac Lab's wrapper put it on the launcher's device).
    log_dir = Path(log_dir)
    training = build_training(env_handle, log_dir=log_dir, init=init, mode=mode)
    start = training.start
    if start >= max_iterations:  # a resume that is already there
        return TrainResult(start, start, init.path if init is not None else None)
    if hooks.should_stop():  # asked to stop before the first iteration: nothing new to save
        return TrainResult(start, start, init.path if init is not None else None, True)
    stopped = False
    hooks.policy_ready(lambda: mean_action_module(training.agent))
    try:
        training.run(max_iterations=max_iterations, save_every=max(1, save_interval),
                     hooks=hooks)
    except _StopRequested:
        stopped = True
    return TrainResult(start, training.done, training.last_checkpoint, stopped)
