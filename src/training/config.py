"""One immutable RunConfig from the launcher's flags and the task's environment.

The workflow template passes every value as an environment variable and may pass empty strings
for "not set", so an empty flag or variable means unset. A flag beats the environment. Only the
standard library is used here: this runs before the dependency check.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training import overrides as cfg_overrides
from training.backends import BACKENDS

CHECKPOINT_MODES = ("from-scratch", "warm-start", "resume")
# What a launch does (RUN_MODE): train (the default); evaluate or export a checkpoint
# (training.evaluate).
RUN_MODES = ("train", "evaluate", "export")
DEFAULT_EVAL_EPISODES = 10
MODE_ALIASES = {"fresh": "from-scratch"}
SUPPORTED_BACKENDS = tuple(BACKENDS)  # training.backends: one line per backend
AZURE_WORKSPACE_VARIABLES = (
    "AZURE_SUBSCRIPTION_ID",
    "AZURE_RESOURCE_GROUP",
    "AZUREML_WORKSPACE_NAME",
)
# Where a run writes its logs and checkpoints when TRAINING_OUTPUT_DIR is not set.
DEFAULT_OUTPUT_DIR = "training_output"
# Parallel environments when NUM_ENVS is not set (the workflow template always sets it).
DEFAULT_NUM_ENVS = 16
# Seconds the runtime may spend after the first SIGTERM/SIGINT (saving, uploading) before it
# exits: inside Kubernetes' default terminationGracePeriodSeconds of 30 s.
DEFAULT_STOP_GRACE_S = 25.0
# How long the end of a run waits for checkpoint uploads (CHECKPOINT_UPLOAD_TIMEOUT_S).
DEFAULT_UPLOAD_TIMEOUT_S = 300.0
# How long auto-resume keeps trying an unreachable tracking store before it exits 75 (retryable)
# rather than start a second run of the same workflow.
DEFAULT_RESUME_LOOKUP_TIMEOUT_S = 60.0
# torchrun's rendezvous on the lead node when MASTER_PORT is empty (the contract's default).
DEFAULT_MASTER_PORT = 29500
# --video: frames per video (Isaac Lab's --video_length default) and iterations between videos
# (training.video keeps its own copy: this module imports nothing heavy, that one may).
DEFAULT_VIDEO_LENGTH = 200
DEFAULT_VIDEO_INTERVAL = 100


# --task-module / TASK_MODULES entries: dotted Python module names.
_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class ConfigError(ValueError):
    """A flag or environment value the launcher cannot use (exit code 2)."""


@dataclass(frozen=True)
class RunConfig:
    task: str
    num_envs: int
    max_iterations: int | None  # None: the task's default
    backend: str
    checkpoint_uri: str | None
    checkpoint_mode: str  # one of CHECKPOINT_MODES
    register_checkpoint: str | None  # model name, None: do not register
    run_smoke_test: bool
    seed: int | None
    save_interval: int | None  # None: the agent cfg's
    experiment_name: str
    workflow_id: str | None
    payload_sha256: str | None
    image: str | None
    output_dir: Path
    device: str | None  # None: cuda when torch sees a GPU, else cpu
    headless: bool
    # Azure ML workspace (subscription, resource group, workspace) when all three are set.
    azure_workspace: tuple[str, str, str] | None
    mlflow_tracking_uri: str | None
    # Where experiments this run creates keep their artifacts (MLFLOW_ARTIFACT_LOCATION), for a
    # store whose own default is not wanted (a sqlite store's is ./mlruns of the current dir).
    mlflow_artifact_location: str | None = None
    # Continue the run of an earlier attempt of the same workflow (WORKFLOW_ID) if there is one.
    auto_resume: bool = True
    stop_grace_s: float = DEFAULT_STOP_GRACE_S
    upload_timeout_s: float = DEFAULT_UPLOAD_TIMEOUT_S
    resume_lookup_timeout_s: float = DEFAULT_RESUME_LOOKUP_TIMEOUT_S
    # Isaac Lab: render cameras (needed for camera observations and videos).
    enable_cameras: bool = False
    # agent.<path> / env.<path> -> value (text as written, or a JSON value): training.overrides
    overrides: dict[str, Any] = field(default_factory=dict)
    # Modules imported (after training/tasks/'s packages) to register the payload's own tasks.
    task_modules: tuple[str, ...] = ()
    # Several ranks (training.distributed): processes on this node, nodes, this node's index,
    # the lead node's host and port for torchrun's rendezvous.
    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = DEFAULT_MASTER_PORT

    run_mode: str = "train"  # one of RUN_MODES
    eval_episodes: int = DEFAULT_EVAL_EPISODES  # episodes an evaluation runs
    # Videos of the policy during training (training.video): on/off, frames, iterations apart.
    video: bool = False
    video_length: int = DEFAULT_VIDEO_LENGTH
    video_interval: int = DEFAULT_VIDEO_INTERVAL

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    @property
    def uses_checkpoint(self) -> bool:
        return self.checkpoint_mode != "from-scratch"

    def training_device(self) -> str:
        """The device to train or evaluate on: ``device``, else cuda:0 when torch sees a GPU
        (torch imported only here: the config is read before the dependency check)."""
        if self.device:
            return self.device
        import torch

        return "cuda:0" if torch.cuda.is_available() else "cpu"

    @property
    def uses_azure_ml(self) -> bool:
        """Tracking in an Azure ML workspace: its three variables, or an azureml:// URI."""
        return self.azure_workspace is not None or (
            self.mlflow_tracking_uri or "").startswith("azureml://")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.launch",
        description="Train an Isaac Lab or gymnasium task with RSL-RL and track it in MLflow. "
        "Every flag falls back to the task environment variable in brackets; "
        "an empty value means unset.",
    )
    add = parser.add_argument
    add("--task", help="Isaac Lab task id or gymnasium id [TASK]")
    add("--num_envs", "--num-envs", dest="num_envs", help="parallel environments [NUM_ENVS]")
    add(
        "--max_iterations",
        "--max-iterations",
        dest="max_iterations",
        help="learning iterations in total; empty: the task's default [MAX_ITERATIONS]",
    )
    add("--backend", help="rsl_rl (default) or skrl [TRAINING_BACKEND]")
    add("--checkpoint-uri", help="runs:/, models:/, mlflow-artifacts:/ or a path [CHECKPOINT_URI]")
    add(
        "--checkpoint-mode",
        help="from-scratch (or fresh), warm-start or resume [CHECKPOINT_MODE]",
    )
    add("--register-checkpoint", help="model name to register the final checkpoint under "
        "[REGISTER_CHECKPOINT]")
    add(
        "--run-smoke-test",
        nargs="?",
        const="1",
        help="check credentials, workspace and MLflow before training [RUN_AZURE_SMOKE_TEST]",
    )
    add("--seed", help="RL seed; empty: the task's default [SEED]")
    add("--experiment-name", help="MLflow experiment; empty: isaaclab-<task> [EXPERIMENT_NAME]")
    add("--save-interval", help="save a checkpoint every N iterations; default: the agent "
        "cfg's (launcher flag only, not part of the workflow contract)")
    add("--auto-resume", action=argparse.BooleanOptionalAction, default=None,
        help="continue the run of an earlier attempt of the same workflow id (default: on) "
        "[AUTO_RESUME]")
    add("--device", help="torch device; default cuda when available, else cpu")
    add("--enable_cameras", "--enable-cameras", dest="enable_cameras", nargs="?", const="1",
        help="Isaac Lab: enable camera rendering [ENABLE_CAMERAS]")
    add("--video", nargs="?", const="1", help="record videos of the policy during training "
        "(gymnasium: rendered headless; Isaac Lab: turns cameras on) [VIDEO]")
    add("--video_length", "--video-length", dest="video_length",
        help=f"frames (env steps) per video; default {DEFAULT_VIDEO_LENGTH} [VIDEO_LENGTH]")
    add("--video_interval", "--video-interval", dest="video_interval",
        help=f"learning iterations between videos; default {DEFAULT_VIDEO_INTERVAL} "
        "[VIDEO_INTERVAL]")
    add("--override", action="append", default=[], metavar="KEY=VALUE",
        help="agent.<path>=<value> or env.<path>=<value>, repeatable; beats CFG_OVERRIDES "
        "(a JSON object of the same) [CFG_OVERRIDES]")
    add("--task-module", dest="task_modules", action="append", metavar="MODULE",
        help="a module that registers tasks, imported before the task is looked up "
        "(repeatable; after every package under training/tasks/) [TASK_MODULES, comma- or "
        "space-separated]")
    add("--nproc-per-node", "--nproc_per_node", dest="nproc_per_node",
        help="training processes (ranks) on this node, one per GPU; empty: 1 [NPROC_PER_NODE]")
    add("--nnodes", help="nodes of the job; empty: 1 [NNODES]")
    add("--node-rank", "--node_rank", dest="node_rank",
        help="this node's index, 0 .. nnodes-1 [NODE_RANK]")
    add("--master-addr", "--master_addr", dest="master_addr",
        help="host of node 0 for the rendezvous; empty: 127.0.0.1 [MASTER_ADDR]")
    add("--master-port", "--master_port", dest="master_port",
        help=f"port of the rendezvous on node 0; empty: {DEFAULT_MASTER_PORT} [MASTER_PORT]")
    add("--mode", help="train (default), evaluate (run --episodes episodes of the checkpoint's "
        "policy) or export (the checkpoint's policy as TorchScript/ONNX/MLflow model) "
        "[RUN_MODE]")
    add("--episodes", help=f"episodes an evaluation runs (default {DEFAULT_EVAL_EPISODES}) "
        "[EVAL_EPISODES]")
    add("--headless", action="store_true", help="accepted for the seed's command line; "
        "training always runs headless")
    return parser


def parse_config(argv: Sequence[str], environ: Mapping[str, str]) -> RunConfig:
    """Flags beat environment variables; empty strings are unset. Raises ConfigError."""
    args = build_parser().parse_args(list(argv))

    def value(flag_value: str | None, variable: str) -> str | None:
        for candidate in (flag_value, environ.get(variable)):
            if candidate is not None and candidate.strip() != "":
                return candidate.strip()
        return None

    run_mode = (value(args.mode, "RUN_MODE") or "train").lower()
    if run_mode not in RUN_MODES:
        raise ConfigError(f"unknown run mode {run_mode!r}: expected one of {', '.join(RUN_MODES)}")
    task = value(args.task, "TASK")
    if task is None and run_mode == "train":  # evaluate/export: the checkpoint's by default
        raise ConfigError("no task given: pass --task or set TASK (e.g. HalfCheetah-v5)")

    backend = (value(args.backend, "TRAINING_BACKEND") or "rsl_rl").lower().replace("-", "_")
    if backend not in SUPPORTED_BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}: expected one of "
                          + ", ".join(SUPPORTED_BACKENDS))

    raw_mode = (value(args.checkpoint_mode, "CHECKPOINT_MODE") or "from-scratch").lower()
    mode = MODE_ALIASES.get(raw_mode, raw_mode)
    if mode not in CHECKPOINT_MODES:
        raise ConfigError(
            f"unknown checkpoint mode {raw_mode!r}: expected from-scratch, fresh, warm-start "
            "or resume"
        )
    checkpoint_uri = value(args.checkpoint_uri, "CHECKPOINT_URI")
    if run_mode != "train" and checkpoint_uri is None:
        raise ConfigError(f"{run_mode} needs a checkpoint: pass --checkpoint-uri or set "
                          "CHECKPOINT_URI (e.g. runs:/<run_id>/checkpoints/final)")
    if mode != "from-scratch" and checkpoint_uri is None:
        raise ConfigError(
            f"checkpoint mode {mode} needs a checkpoint: pass --checkpoint-uri or set "
            "CHECKPOINT_URI (e.g. runs:/<run_id>/checkpoints/final)"
        )

    auto_resume = args.auto_resume  # --auto-resume / --no-auto-resume, None when not given
    if auto_resume is None:
        auto_resume = _true_or_false(value(None, "AUTO_RESUME"), "AUTO_RESUME", default=True)
    azure_values = tuple(environ.get(name, "").strip() for name in AZURE_WORKSPACE_VARIABLES)
    nnodes = _positive_int(value(args.nnodes, "NNODES"), "nnodes") or 1
    node_rank = _int(value(args.node_rank, "NODE_RANK"), "node_rank") or 0
    if not 0 <= node_rank < nnodes:
        raise ConfigError(f"node_rank must be 0 .. {nnodes - 1} for {nnodes} node(s), "
                          f"got {node_rank}")
    master_port = _int(value(args.master_port, "MASTER_PORT"), "master_port")
    if master_port is not None and not 0 < master_port < 65536:
        raise ConfigError(f"master_port must be 1 .. 65535, got {master_port}")
    video = _true_or_false(value(args.video, "VIDEO"), "VIDEO", default=False)
    return RunConfig(
        task=task or "",
        num_envs=_positive_int(value(args.num_envs, "NUM_ENVS"), "num_envs") or DEFAULT_NUM_ENVS,
        max_iterations=_positive_int(value(args.max_iterations, "MAX_ITERATIONS"),
                                     "max_iterations"),
        backend=backend,
        checkpoint_uri=checkpoint_uri,
        checkpoint_mode=mode,
        register_checkpoint=value(args.register_checkpoint, "REGISTER_CHECKPOINT"),
        run_smoke_test=_flag(value(args.run_smoke_test, "RUN_AZURE_SMOKE_TEST")),
        seed=_int(value(args.seed, "SEED"), "seed"),
        save_interval=_positive_int(value(args.save_interval, "SAVE_INTERVAL"), "save_interval"),
        experiment_name=value(args.experiment_name, "EXPERIMENT_NAME")
        or default_experiment_name(task or ""),
        workflow_id=value(None, "WORKFLOW_ID"),
        payload_sha256=value(None, "PAYLOAD_SHA256"),
        image=value(None, "IMAGE"),
        output_dir=Path(value(None, "TRAINING_OUTPUT_DIR") or DEFAULT_OUTPUT_DIR),
        device=value(args.device, "TRAINING_DEVICE"),
        headless=True,
        azure_workspace=azure_values if all(azure_values) else None,  # type: ignore[arg-type]
        mlflow_tracking_uri=value(None, "MLFLOW_TRACKING_URI"),
        mlflow_artifact_location=value(None, "MLFLOW_ARTIFACT_LOCATION"),
        auto_resume=auto_resume,
        stop_grace_s=_positive_seconds(value(None, "STOP_GRACE_S"), "STOP_GRACE_S")
        or DEFAULT_STOP_GRACE_S,
        upload_timeout_s=_positive_seconds(value(None, "CHECKPOINT_UPLOAD_TIMEOUT_S"),
                                           "CHECKPOINT_UPLOAD_TIMEOUT_S")
        or DEFAULT_UPLOAD_TIMEOUT_S,
        resume_lookup_timeout_s=_positive_seconds(value(None, "AUTO_RESUME_LOOKUP_TIMEOUT_S"),
                                                  "AUTO_RESUME_LOOKUP_TIMEOUT_S")
        or DEFAULT_RESUME_LOOKUP_TIMEOUT_S,
        task_modules=_module_names(args.task_modules, environ.get("TASK_MODULES", "")),
        # Isaac Lab's train scripts: "always enable cameras to record video"
        enable_cameras=video or _true_or_false(value(args.enable_cameras, "ENABLE_CAMERAS"),
                                               "ENABLE_CAMERAS", default=False),
        video=video,
        video_length=_positive_int(value(args.video_length, "VIDEO_LENGTH"), "video_length")
        or DEFAULT_VIDEO_LENGTH,
        video_interval=_positive_int(value(args.video_interval, "VIDEO_INTERVAL"),
                                     "video_interval") or DEFAULT_VIDEO_INTERVAL,
        overrides=_overrides(args.override, environ.get(cfg_overrides.ENV_VARIABLE, "")),
        nproc_per_node=_positive_int(value(args.nproc_per_node, "NPROC_PER_NODE"),
                                     "nproc_per_node") or 1,
        nnodes=nnodes,
        node_rank=node_rank,
        master_addr=value(args.master_addr, "MASTER_ADDR") or "127.0.0.1",
        master_port=master_port or DEFAULT_MASTER_PORT,
        run_mode=run_mode,
        eval_episodes=_positive_int(value(args.episodes, "EVAL_EPISODES"), "episodes")
        or DEFAULT_EVAL_EPISODES,
    )


def _overrides(tokens: Sequence[str], environment_json: str) -> dict[str, Any]:
    """CFG_OVERRIDES, then each --override over it (a flag beats the environment)."""
    try:
        merged = cfg_overrides.from_json(environment_json)
        merged.update(cfg_overrides.parse_assignment(token) for token in tokens)
    except cfg_overrides.OverrideError as error:
        raise ConfigError(str(error)) from None
    return merged


def _module_names(flags: list[str] | None, variable: str) -> tuple[str, ...]:
    """--task-module values (they beat TASK_MODULES), or TASK_MODULES split at commas and
    spaces; each must be a dotted Python module name."""
    names = [name for text in flags or [variable] for name in re.split(r"[,\s]+", text)
             if name]
    for name in names:
        if not _MODULE_NAME.fullmatch(name):
            raise ConfigError(f"task module {name!r} is not a dotted Python module name "
                              "(e.g. my_robot.tasks)")
    return tuple(names)


def default_experiment_name(task: str) -> str:
    # Experiment names are free text in MLflow, but Azure ML is stricter: keep it to a safe set.
    return "isaaclab-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", task)


def _int(text: str | None, name: str) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {text!r}") from None


def _positive_int(text: str | None, name: str) -> int | None:
    number = _int(text, name)
    if number is not None and number < 1:
        raise ConfigError(f"{name} must be at least 1, got {number}")
    return number


def _positive_seconds(text: str | None, name: str) -> float | None:
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {text!r}") from None
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"{name} must be more than 0 seconds, got {text!r}")
    return seconds


def _true_or_false(text: str | None, name: str, *, default: bool) -> bool:
    """The contract's booleans: true/false, 1/0, yes/no in any case; empty is the default."""
    if text is None:
        return default
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ConfigError(f"{name} must be true or false (or 1/0, yes/no), got {text!r}")


def _flag(text: str | None) -> bool:
    if text is None:
        return False
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"RUN_AZURE_SMOKE_TEST must be 0 or 1, got {text!r}")

