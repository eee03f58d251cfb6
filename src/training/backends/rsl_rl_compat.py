"""Every difference between the rsl-rl versions that Isaac Lab images ship, in one place.

| rsl-rl | image    | observations    | agent cfg          | checkpoint keys  | load option    |
|--------|----------|-----------------|--------------------|------------------|----------------|
| 2.3.3  | IL 2.2   | (Tensor, extras)| policy             | model_state_dict | load_optimizer |
| 3.0.1  | IL 2.3   | TensorDict      | policy, obs_groups | model_state_dict | load_optimizer |
| 5.x    | IL 3.0   | TensorDict      | actor / critic     | actor_state_dict | load_cfg       |

The rest of the runtime asks this module instead of testing version numbers itself: the
environment adapter packs observations with :func:`pack_observations`, the backend builds the
agent cfg with :func:`agent_cfg_from_neutral`, routes the runner's logging with
:func:`route_logging` and loads with :func:`load_checkpoint` (formats are named by
``training.backends.base.checkpoint_format_of``). Importing this module imports ``rsl_rl``
(light) but not its runners. rsl-rl 4.x is treated like 5.x (same model/checkpoint layout);
it is not tested.
"""

from __future__ import annotations

import copy
import importlib.metadata
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rsl_rl
import torch

from training.console import quiet_stdout


def _installed_version() -> str:
    # Read the version of the rsl_rl that is actually imported: tests put another version first
    # on sys.path, and the site-packages one must not answer for it.
    package_parent = Path(rsl_rl.__file__).resolve().parent.parent
    for dist in importlib.metadata.distributions(path=[str(package_parent)]):
        if dist.metadata["Name"].lower().replace("_", "-") == "rsl-rl-lib":
            return dist.version
    return importlib.metadata.version("rsl-rl-lib")


RSL_RL_VERSION: str = _installed_version()
MAJOR: int = int(RSL_RL_VERSION.split(".")[0])

# Checkpoint formats, named after the first rsl-rl major that wrote them. 2.x and 3.x share one.
# Their keys are in training.backends.base.CHECKPOINT_FORMATS (shared with the other backends).
FORMAT_V2 = "rsl_rl-2"
FORMAT_V5 = "rsl_rl-5"
CHECKPOINT_FORMAT: str = FORMAT_V5 if MAJOR >= 4 else FORMAT_V2


# --- environment API ---------------------------------------------------------------------------


def pack_observations(obs: torch.Tensor, *, for_step: bool) -> Any:
    """Observations as the installed runner reads them.

    rsl-rl >= 3 reads a TensorDict with the group "policy" (the obs_groups below map actor and
    critic to it). rsl-rl 2.3.3 reads a plain tensor; its ``get_observations`` returns
    ``(obs, extras)`` where ``extras["observations"]`` would hold privileged groups (none here).
    """
    if MAJOR >= 3:
        from tensordict import TensorDict

        return TensorDict({"policy": obs}, batch_size=[obs.shape[0]], device=obs.device)
    return obs if for_step else (obs, {"observations": {}})


def step_extras(time_outs: torch.Tensor, log: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The ``extras`` dict of ``step()``: truncations (for value bootstrapping) and episode info."""
    extras: dict[str, Any] = {"time_outs": time_outs, "log": log}
    if MAJOR < 3:
        extras["observations"] = {}
    return extras


# --- agent configuration -----------------------------------------------------------------------


def agent_cfg_from_neutral(neutral: dict[str, Any], experiment_name: str) -> dict[str, Any]:
    """Turn the version-neutral agent cfg (``training/agents/*.yaml``) into the installed schema."""
    actor, critic, algorithm = neutral["actor"], neutral["critic"], neutral["algorithm"]
    cfg: dict[str, Any] = {
        "seed": neutral["seed"],
        "max_iterations": neutral["max_iterations"],
        "save_interval": neutral["save_interval"],
        "num_steps_per_env": neutral["num_steps_per_env"],
        "experiment_name": experiment_name,
        "run_name": "",
        "algorithm": {"class_name": "PPO", **algorithm},
    }
    if MAJOR >= 4:
        cfg["obs_groups"] = {"actor": ["policy"], "critic": ["policy"]}
        cfg["actor"] = {
            "class_name": "MLPModel",
            "hidden_dims": list(actor["hidden_dims"]),
            "activation": actor["activation"],
            "obs_normalization": neutral["obs_normalization"],
            "distribution_cfg": {
                "class_name": "GaussianDistribution",
                "init_std": actor["init_std"],
                "std_type": "scalar",
            },
        }
        cfg["critic"] = {
            "class_name": "MLPModel",
            "hidden_dims": list(critic["hidden_dims"]),
            "activation": critic["activation"],
            "obs_normalization": neutral["obs_normalization"],
        }
        return cfg
    policy = {
        "class_name": "ActorCritic",
        "actor_hidden_dims": list(actor["hidden_dims"]),
        "critic_hidden_dims": list(critic["hidden_dims"]),
        "activation": actor["activation"],
        "init_noise_std": actor["init_std"],
        "noise_std_type": "scalar",
    }
    if MAJOR == 3:
        cfg["obs_groups"] = {"policy": ["policy"], "critic": ["policy"]}
        policy["actor_obs_normalization"] = neutral["obs_normalization"]
        policy["critic_obs_normalization"] = neutral["obs_normalization"]
    else:
        cfg["empirical_normalization"] = neutral["obs_normalization"]
    cfg["policy"] = policy
    return cfg


# --- logging -----------------------------------------------------------------------------------


class IterationMetrics:
    """A stand-in for the runner's TensorBoard writer that keeps the last iteration's scalars.

    Every version's runner computes its metrics in its own logging code and hands them to a
    writer through ``add_scalar``; receiving them here means we report exactly what rsl-rl
    computed, without copying its bookkeeping. The other writer methods are accepted and ignored.
    """

    def __init__(self) -> None:
        self._scalars: dict[str, float] = {}

    def add_scalar(self, tag: str, scalar_value: Any, global_step: Any = None, *_: Any) -> None:
        # "<name>/time" series are indexed by elapsed seconds, not iterations: not ours to report.
        if not tag.endswith("/time"):
            self._scalars[tag] = float(scalar_value)

    def take(self) -> dict[str, float]:
        """This iteration's metrics under the names every version reports (see module doc)."""
        raw, self._scalars = self._scalars, {}
        metrics = {_METRIC_RENAMES.get(name, name): value for name, value in raw.items()}
        if "Perf/collection_time" in metrics and "Perf/learning_time" in metrics:
            metrics["Perf/iteration_time"] = (
                metrics["Perf/collection_time"] + metrics["Perf/learning_time"]
            )
        return metrics

    def _ignore(self, *_: Any, **__: Any) -> None:
        return None

    flush = close = stop = save_model = save_file = save_video = _ignore
    log_config = store_config = _ignore


# The same quantity under different names across versions: report the 2.x/3.x spelling.
_METRIC_RENAMES = {
    "Policy/mean_std": "Policy/mean_noise_std",  # 5.x
    "Perf/collection time": "Perf/collection_time",  # 2.x/3.x (sic)
}

def _quiet(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` without rsl-rl's ~25-line block per iteration (the launcher prints one)."""
    def quiet(*args: Any, **kwargs: Any) -> Any:
        with quiet_stdout():
            return method(*args, **kwargs)

    return quiet


def route_logging(runner: Any, writer: IterationMetrics) -> None:
    """Make the runner log into ``writer``, print no per-iteration block and store no git diff.

    Done on the runner instance, not by editing library files: 2.x/3.x create their writer in
    ``learn()`` only when none is set and log through ``runner.log``; 5.x delegates both to
    ``runner.logger``, whose ``init_logging_writer`` would build a TensorBoard writer (and, on
    ranks other than 0, none: then ``learn()`` would not call ``save``).
    """
    if MAJOR >= 4:
        logger = runner.logger
        logger.git_status_repos = []

        def use_our_writer() -> None:
            logger.writer = writer

        logger.init_logging_writer = use_our_writer
        logger.log = _quiet(logger.log)
    else:
        runner.writer = writer
        runner.logger_type = "tensorboard"  # read by 2.x/3.x log()/save() when picking uploads
        runner.git_status_repos = []
        runner.log = _quiet(runner.log)
        # 2.x/3.x call log() and save() only where disable_logs is False (rank 0): every rank
        # needs save(), our iteration boundary; HookedRunner writes files on rank 0 only.
        runner.disable_logs = False


def policy_state(runner: Any) -> dict[str, dict[str, torch.Tensor]]:
    """The runner's network weights as {part: state_dict}, keyed like the checkpoint file."""
    if MAJOR >= 4:
        return {
            "actor_state_dict": runner.alg.actor.state_dict(),
            "critic_state_dict": runner.alg.critic.state_dict(),
        }
    return {"model_state_dict": runner.alg.policy.state_dict()}


# --- several ranks ------------------------------------------------------------------------------


def configure_multi_gpu(runner: Any) -> None:
    """What ``OnPolicyRunner._configure_multi_gpu`` sets (2.3.3, 3.0.1 and 5.5.1 alike:
    ``gpu_world_size``, ``is_distributed``, ``gpu_local_rank``, ``gpu_global_rank`` and the
    ``multi_gpu`` cfg its PPO reads), for a process group that training.distributed already
    opened. Upstream instead requires ``device == cuda:<LOCAL_RANK>`` and calls
    ``init_process_group(backend="nccl")`` itself: no CPU ranks (gloo), no timeout of ours.
    The cfg is ``runner.multi_gpu_cfg`` in 2.x/3.x and ``runner.cfg["multi_gpu"]`` in 5.x."""
    import torch.distributed as dist

    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    runner.gpu_world_size = dist.get_world_size() if distributed else 1
    runner.is_distributed = distributed
    runner.gpu_local_rank = int(os.environ.get("LOCAL_RANK", "0")) if distributed else 0
    runner.gpu_global_rank = dist.get_rank() if distributed else 0
    multi_gpu = {"global_rank": runner.gpu_global_rank, "local_rank": runner.gpu_local_rank,
                 "world_size": runner.gpu_world_size} if distributed else None
    if MAJOR >= 4:
        runner.cfg["multi_gpu"] = multi_gpu
    else:
        runner.multi_gpu_cfg = multi_gpu


def trained_parameters(runner: Any) -> dict[str, torch.Tensor]:
    """The networks' learnt parameters by name (no buffers: 2.x/3.x observation normalisers
    are per rank upstream, only 5.x all-reduces their statistics)."""
    if MAJOR >= 4:
        modules = {"actor": runner.alg.actor, "critic": runner.alg.critic}
    else:
        modules = {"policy": runner.alg.policy}
    return {f"{part}.{name}": value for part, module in modules.items()
            for name, value in module.named_parameters()}


# --- checkpoints -------------------------------------------------------------------------------


def load_checkpoint(runner: Any, path: Path, *, resume: bool, device: str) -> None:
    """Load weights and observation normalisers; with ``resume`` also optimizer and iteration.

    The normalisers live inside the policy state in 3.x/5.x and beside it in 2.3.3; each
    version's own ``load`` restores them with the weights.
    """
    if MAJOR >= 4:
        what = {
            "actor": True,
            "critic": True,
            "optimizer": resume,
            "iteration": resume,
            "rnd": resume,
        }
        runner.load(str(path), load_cfg=what, map_location=device)
    elif MAJOR == 3:
        runner.load(str(path), load_optimizer=resume, map_location=device)
    else:
        runner.load(str(path), load_optimizer=resume)  # 2.3.3 has no map_location
    if not resume:
        # 2.x/3.x always restore the counter; a warm start begins at iteration 0.
        runner.current_learning_iteration = 0


def runner_cfg(agent_cfg: dict[str, Any]) -> dict[str, Any]:
    """A private copy of the agent cfg for the runner: 2.x/3.x pop keys out of it."""
    return copy.deepcopy(agent_cfg)


# --- inference and export ----------------------------------------------------------------------


def export_modules(runner: Any) -> tuple[torch.nn.Module, torch.nn.Module, bool, str]:
    """(TorchScript module, ONNX module, scriptable, who built them) for the runner's
    deterministic actor with its observation normaliser.

    5.x has its own export modules (``MLPModel.as_jit``/``as_onnx``, what its runner's
    ``export_policy_to_jit/onnx`` export). 2.x/3.x have none (Isaac Lab's
    ``isaaclab_rl.rsl_rl.exporter`` wraps ``policy.actor`` and the normaliser, as done here):
    the normaliser is ``policy.actor_obs_normalizer`` in 3.x and the runner's
    ``obs_normalizer`` (Identity when off) in 2.3.3, as their ``get_inference_policy`` uses.
    """
    if MAJOR >= 4:
        actor = runner.alg.get_policy()
        return (actor.as_jit(), actor.as_onnx(verbose=False), True,
                f"rsl_rl {RSL_RL_VERSION} MLPModel.as_jit/as_onnx")
    module = inference_module(runner)
    return module, module, True, f"rsl_rl {RSL_RL_VERSION} actor + observation normaliser"


def inference_module(runner: Any) -> torch.nn.Module:
    """A CPU copy of the runner's deterministic actor with its observation normaliser, in eval
    mode (what :func:`export_modules` exports): taking it changes nothing in the runner, and
    training on afterwards does not change it (TrainHooks.policy_ready)."""
    from training.backends.actor_module import NormalizedActor, cpu_copy

    if MAJOR >= 4:  # as_jit: copies of the normaliser, the MLP and the distribution's mean
        return cpu_copy(runner.alg.get_policy().as_jit()).eval()
    policy = runner.alg.policy
    normalizer = policy.actor_obs_normalizer if MAJOR == 3 else runner.obs_normalizer
    return NormalizedActor(normalizer, policy.actor)


def policy_observations(observations: Any) -> torch.Tensor:
    """The actor's observations out of what the env returns: the "policy" group of a
    TensorDict (3.x/5.x), the tensor of 2.x's ``(obs, extras)`` or its plain step tensor."""
    if MAJOR >= 3:
        return observations["policy"]
    return observations[0] if isinstance(observations, tuple) else observations
