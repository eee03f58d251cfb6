"""The one small interface between the launcher and a training backend.

The launcher (training.launch) owns configuration, tracking, uploads and exit codes; a backend
owns the RL library: building its runner, loading a checkpoint in a given mode, and calling
the hooks below while it trains. Nothing here imports torch or an RL library.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from training.envs import EnvHandle

LoadMode = Literal["warm-start", "resume"]


class CheckpointError(Exception):
    """A checkpoint that cannot be used: unreadable, truncated, or of another format.

    The message is one line a user can act on: what was found and what was expected.
    """


# Every checkpoint format a backend here reads or writes, by the keys of the saved dict:
# name -> (who writes it, keys that identify it). The name's prefix is the backend (NAME)
# that loads it, so a user handed the wrong one can be told which backend to use.
CHECKPOINT_FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "rsl_rl-2": ("rsl-rl 2.x/3.x", ("model_state_dict", "optimizer_state_dict", "iter")),
    "rsl_rl-5": (
        "rsl-rl 4.x/5.x",
        ("actor_state_dict", "critic_state_dict", "optimizer_state_dict", "iter"),
    ),
    "skrl": ("skrl", ("policy", "value")),
}


def checkpoint_format_of(saved: Mapping[str, Any]) -> str | None:
    """The format (a key of CHECKPOINT_FORMATS) a loaded checkpoint dict was written in, or
    None when it is none of them."""
    for name, (_, keys) in CHECKPOINT_FORMATS.items():
        if all(key in saved for key in keys):
            return name
    return None


def describe_checkpoint_format(name: str) -> str:
    """E.g. "rsl-rl 4.x/5.x (actor_state_dict, critic_state_dict, ...)"."""
    writer, keys = CHECKPOINT_FORMATS[name]
    return f"{writer} ({', '.join(keys)})"


def backend_of_format(name: str) -> str:
    """The backend (TRAINING_BACKEND value) whose library reads checkpoint format ``name``."""
    return name.split("-")[0]


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file on local disk that a backend has inspected and can load."""

    path: Path
    iteration: int
    format: str  # a key of CHECKPOINT_FORMATS: "rsl_rl-2", "rsl_rl-5", "skrl"


@dataclass(frozen=True)
class Policy:
    """A checkpoint's actor as one deterministic torch module, ready to export and to act.

    ``module`` maps observations ``(N, obs_dim)`` float32 to actions ``(N, action_dim)``: the
    observation normaliser of the checkpoint first, then the actor network, then the
    distribution's mean (what the library's own inference uses). ``onnx_module`` is the module
    to hand to the ONNX exporter (the library's own when it has one, else ``module``).
    """

    module: Any
    onnx_module: Any
    obs_dim: int
    action_dim: int
    # True: TorchScript by torch.jit.script (the library's export module is scriptable);
    # False: by torch.jit.trace (modules the library builds from generated code).
    scriptable: bool
    exporter: str  # what built the export modules, e.g. "rsl_rl MLPModel.as_jit/as_onnx"


class EpisodeEnv(Protocol):
    """A backend's wrapped vector env seen as episodes: plain tensors in and out (the
    evaluation mode, training.evaluate). Finished sub-envs reset themselves."""

    num_envs: int

    def reset(self) -> Any:
        """Observations ``(num_envs, obs_dim)``."""
        ...

    def step(self, actions: Any) -> tuple[Any, Any, Any]:
        """(observations, rewards ``(num_envs,)``, done ``(num_envs,)`` bool)."""
        ...


@dataclass
class TrainHooks:
    """Callbacks a backend calls while it trains. They must be cheap: they run on the
    training thread, so anything slow (network) is queued by the launcher, not done here."""

    # After each learning iteration: (iteration index, {metric name: value}). Names are the
    # library's own ("Loss/value_function", "Train/mean_reward", "Episode/rew_x" ...); the
    # tracking layer makes them valid for MLflow.
    on_iteration: Callable[[int, dict[str, float]], None] = lambda it, metrics: None
    # After each checkpoint file is written: (iteration the file holds, path).
    on_checkpoint: Callable[[int, Path], None] = lambda it, path: None
    # Polled at iteration boundaries; True asks the backend to save and return early.
    should_stop: Callable[[], bool] = field(default=lambda: False)
    # Once, before the first iteration: a function returning a CPU copy of the current
    # deterministic policy (a torch module: float32 observation tensor (N, obs_dim) -> action
    # (N, action_dim)), its observation normaliser included. Taking it leaves the library's
    # modules as they are (mode, device), so it may be called at any iteration boundary, and
    # training on does not change the copy (training.video hands it to a forked renderer).
    policy_ready: Callable[[Callable[[], Callable[[Any], Any]]], None] = \
        lambda current_policy: None


@dataclass(frozen=True)
class TrainResult:
    start_iteration: int  # where training started (0, or the resumed checkpoint's iteration)
    final_iteration: int  # the iteration counter at the end (what a resume would start from)
    final_checkpoint: Path | None  # the checkpoint holding final_iteration; None if none written
    stopped_early: bool = False  # should_stop() returned True before max_iterations


class Backend(Protocol):
    """What every backend module provides at module level (``training.backends.<name>``).

    The launcher only talks to a backend through these names, so a new RL library is one new
    module plus one line in ``training.backends.BACKENDS``.
    """

    NAME: str  # "rsl_rl", "skrl": the TRAINING_BACKEND value
    # Metric names (as reported through TrainHooks.on_iteration) the progress line shows.
    REWARD_METRIC: str
    FPS_METRIC: str | None
    # The gym registry key of an Isaac Lab task's agent cfg for this library.
    ISAACLAB_CFG_ENTRY_POINT: str

    def versions(self) -> Mapping[str, str]:
        """Library versions, logged as params/tags and in checkpoint.json
        (e.g. {"rsl_rl_version": "5.5.1"})."""
        ...

    def checkpoint_format(self) -> str:
        """The checkpoint format the installed library reads and writes (e.g. "rsl_rl-5")."""
        ...

    def inspect_checkpoint(self, path: Path) -> Checkpoint:
        """A complete checkpoint this library can load, or CheckpointError (one line naming
        what was found, the other library's format included, and what was expected)."""
        ...

    def make_gym_env(self, task: str, *, num_envs: int, seed: int | None,
                     device: str, overrides: Mapping[str, Any] | None = None) -> EnvHandle:
        """A gymnasium task wrapped for this library, with its agent cfg (training/agents).
        ``overrides``: ``agent.*`` applied to the neutral cfg
        (``read_agent_cfg(..., overrides=)``), ``env.*`` the env's kwargs, checked and typed
        by make_env, for ``gymnasium.make_vec``."""
        ...

    def wrap_isaaclab_env(self, env: Any, agent_cfg: Any, *, device: str) -> EnvHandle:
        """An Isaac Lab env (gymnasium.make result) wrapped as the library's own train script
        wraps it, with the resolved agent cfg."""
        ...

    def train(self, env_handle: EnvHandle, *, log_dir: Path, device: str,
              max_iterations: int, save_interval: int, init: Checkpoint | None,
              mode: LoadMode | None, hooks: TrainHooks) -> TrainResult:
        """Train until ``max_iterations`` iterations are done in total (resume) or from 0
        (scratch, warm-start); save ``model_<done>.pt`` in log_dir every save_interval, at the
        end and when hooks.should_stop(); call the hooks (see TrainHooks)."""
        ...

    def policy_from_checkpoint(self, checkpoint: Checkpoint, env_handle: EnvHandle, *,
                               device: str) -> Policy:
        """The checkpoint's deterministic actor with its observation normaliser (see
        Policy), built as training builds it for ``env_handle``'s task; CheckpointError (one
        line) when the checkpoint does not fit the task's observation/action shapes."""
        ...

    def episode_env(self, env_handle: EnvHandle) -> EpisodeEnv:
        """``env_handle``'s env seen as episodes (see EpisodeEnv)."""
        ...
