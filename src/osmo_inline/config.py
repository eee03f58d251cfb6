"""The one immutable description of a submission, built by `cli.py` from flags and env."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from osmo_inline.storage import StorageURL
    from osmo_inline.sweep import Axis

# Template variables the client computes itself; a user may not set them with key=value.
CLIENT_FILLED = ("payload_b64", "payload_sha256", "payload_url", "bootstrap_b64",
                 "cfg_overrides")

DEFAULT_PAYLOAD_BUDGET = 1024 * 1024  # bytes of base64 text: a `files:` entry is a 1 MiB Secret


# A NamedTuple, not a frozen dataclass: that costs a dry run 3 ms of start-up.
class SubmitConfig(NamedTuple):
    """Everything one `submit-training` call needs, already checked.

    Flag values are kept typed here; `flag_values()` turns them into the template variables
    they set.
    """

    task: str
    num_envs: int
    max_iterations: int | None
    image: str
    checkpoint_uri: str
    checkpoint_mode: str  # from-scratch | warm-start | resume ("fresh" already mapped)
    auto_resume: bool  # a retried task continues its workflow's MLflow run
    register_checkpoint: str
    run_smoke_test: bool
    workflow: Path
    payload_root: str
    sleep_after_unpack: str  # "" or a non-negative number of seconds, as the user wrote it
    backend: str
    gpu: int  # per node: also the number of ranks on each node
    cpu: int
    memory: str
    storage: str
    source: Path
    project_dir: Path  # where `.tmp/` lives
    payload_budget: int = DEFAULT_PAYLOAD_BUDGET
    template_values: Mapping[str, str] = {}  # key=value after `--`
    overrides: Mapping[str, str] = {}  # agent.<path>=<value> / env.<path>=<value> after `--`
    sweep: tuple[Axis, ...] = ()  # --sweep axes (osmo_inline.sweep)
    yes: bool = False  # --yes: a sweep may exceed sweep.MAX_TASKS
    jobs: int = 1  # -j/--jobs: tasks of a local sweep at a time
    sweep_report: str | None = None  # --sweep-report SWEEP_ID
    osmo_args: tuple[str, ...] = ()  # forwarded to `osmo workflow submit`
    dry_run: bool = False
    local: bool = False
    quiet: bool = False
    workflow_id: str | None = None  # a local run's workflow id (to simulate a retry)
    output: str = "text"  # text | json
    delivery: str = "auto"  # auto | inline | storage (storage.py)
    storage_url: StorageURL | None = None  # where storage delivery puts the payload object
    task_modules: tuple[str, ...] = ()  # imported in the container to register tasks
    # template variable -> the flag or environment variable that set it, for those not left
    # at their default (a template that ignores one of them earns the user a note)
    explicit: Mapping[str, str] = {}
    enable_cameras: bool = False  # Isaac Sim with camera rendering
    nodes: int = 1  # > 1: one OSMO group of this many tasks, node 0 the lead
    run_mode: str = "train"  # train | evaluate | export (RUN_MODE)
    eval_episodes: int = 10  # episodes an evaluation runs (EVAL_EPISODES)
    video: bool = False  # videos of the policy during training (training.video)
    video_length: int = 200  # env steps per video
    video_interval: int = 100  # learning iterations between videos

    @property
    def tmp_dir(self) -> Path:
        return self.project_dir / ".tmp"

    def flag_values(self) -> dict[str, object]:
        """Template variables set by flags (or their environment overrides)."""
        return {
            "task": self.task,
            "num_envs": self.num_envs,
            "max_iterations": "" if self.max_iterations is None else self.max_iterations,
            "image": self.image,
            "checkpoint_uri": self.checkpoint_uri,
            "checkpoint_mode": self.checkpoint_mode,
            "auto_resume": "true" if self.auto_resume else "false",
            "register_checkpoint": self.register_checkpoint,
            "run_azure_smoke_test": 1 if self.run_smoke_test else 0,
            "payload_root": self.payload_root,
            "sleep_after_unpack": self.sleep_after_unpack,
            "backend": self.backend,
            "enable_cameras": 1 if self.enable_cameras else 0,
            "video": 1 if self.video else 0,
            "video_length": self.video_length,
            "video_interval": self.video_interval,
            "task_modules": ",".join(self.task_modules),
            "run_mode": self.run_mode,
            "eval_episodes": self.eval_episodes,
            "gpu": self.gpu,
            "nodes": self.nodes,
            "cpu": self.cpu,
            "memory": self.memory,
            "storage": self.storage,
        }
