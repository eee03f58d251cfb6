"""The one small interface between the launcher and a training backend.

The launcher (training.launch) owns configuration, tracking, uploads and exit codes; a backend
owns the RL library: building its runner, loading a checkpoint in a given mode, and calling
the hooks below while it trains. Nothing here imports torch or an RL library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

LoadMode = Literal["warm-start", "resume"]


class CheckpointError(Exception):
    """A checkpoint that cannot be used: unreadable, truncated, or of another format.

    The message is one line a user can act on: what was found and what was expected.
    """


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file on local disk that a backend has inspected and can load."""

    path: Path
    iteration: int
    format: str  # e.g. "rsl_rl-2" (rsl-rl <= 3.x keys) or "rsl_rl-5" (rsl-rl >= 5 keys)


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


@dataclass(frozen=True)
class TrainResult:
    start_iteration: int  # where training started (0, or the resumed checkpoint's iteration)
    final_iteration: int  # the iteration counter at the end (what a resume would start from)
    final_checkpoint: Path | None  # the checkpoint holding final_iteration; None if none written
    stopped_early: bool = False  # should_stop() returned True before max_iterations
