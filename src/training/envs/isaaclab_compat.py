"""Every difference between the Isaac Lab releases (2.2, 2.3, 3.0) in how a task is resolved.

- env and agent cfg: 2.x ``parse_env_cfg`` + ``load_cfg_from_registry``; 3.0
  ``resolve_task_config`` (which resolves ``PresetCfg`` presets; ``load_cfg_from_registry``
  returns them unresolved, without a ``seed``);
- older rsl-rl cfg fields: 3.0 ``handle_deprecated_rsl_rl_cfg``; 2.x has no such step;
- ``init_at_random_ep_len``: 3.0 the agent cfg's field; 2.x not in the cfg, True (their
  train scripts pass True).

The same on all three: a ``DirectMARLEnv`` is made single-agent with
``isaaclab.envs.multi_agent_to_single_agent`` before the library wrapper (upstream's train
scripts do so; ``RslRlVecEnvWrapper`` raises otherwise); a distillation agent cfg
(``class_name`` "DistillationRunner" / algorithm "Distillation") needs a teacher checkpoint,
which this launcher does not take: refused before anything is built (TaskError, exit 2); the
resolved cfgs are written as upstream writes ``params/env.yaml`` and ``params/agent.yaml``
(``isaaclab.utils.io.dump_yaml``). Upstream places: 3.0
``isaaclab_rl/entrypoints/backends/train_rsl_rl.py``; 2.x
``scripts/reinforcement_learning/rsl_rl/train.py``.

Runs only where ``isaaclab`` is importable (an Isaac Lab image, or tests with the wheels).
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

from training.envs import TaskError

PARAMS_FILES = ("params/env.yaml", "params/agent.yaml")


@functools.cache
def release() -> str:
    from training.app import isaaclab_release

    return isaaclab_release()


def task_cfgs(task: str, entry_point: str, *, device: str, num_envs: int) -> tuple[Any, Any]:
    """The task's env cfg (device and num_envs applied) and agent cfg, resolved."""
    if release() == "3.0":
        from isaaclab_tasks.utils import resolve_task_config

        # overrides=[]: without it Hydra reads sys.argv, i.e. the launcher's own flags.
        env_cfg, agent_cfg = resolve_task_config(task, entry_point, overrides=[])
        env_cfg.sim.device = device  # what parse_env_cfg(device=, num_envs=) sets
        env_cfg.scene.num_envs = num_envs
        return env_cfg, agent_cfg
    from isaaclab_tasks.utils import parse_env_cfg
    from isaaclab_tasks.utils.parse_cfg import load_cfg_from_registry

    env_cfg = parse_env_cfg(task, device=device, num_envs=num_envs)
    return env_cfg, load_cfg_from_registry(task, entry_point)


def adapt_rsl_rl_cfg(agent_cfg: Any, rsl_rl_version: str) -> Any:
    """3.0 adapts cfg fields of older rsl-rl schemas to the installed rsl-rl (its train entry
    point does so); 2.x has no such step (``handle_deprecated_rsl_rl_cfg`` does not exist)."""
    if release() != "3.0":
        return agent_cfg
    from isaaclab_rl.rsl_rl import handle_deprecated_rsl_rl_cfg

    return handle_deprecated_rsl_rl_cfg(agent_cfg, rsl_rl_version)


def init_at_random_ep_len(agent_cfg: Any) -> bool:
    """3.0: the agent cfg's field (False for some tasks); 2.x train scripts pass True."""
    return bool(getattr(agent_cfg, "init_at_random_ep_len", True))


def refuse_distillation(task: str, agent_cfg: Any) -> None:
    """A distillation cfg trains a student from a teacher checkpoint (upstream: "Distillation
    training requires --checkpoint"); this launcher's CHECKPOINT_URI means warm-start/resume
    of the same policy, so such a task is refused before anything is built."""
    runner = getattr(agent_cfg, "class_name", "OnPolicyRunner")
    algorithm = getattr(getattr(agent_cfg, "algorithm", None), "class_name", "")
    if runner == "DistillationRunner" or algorithm == "Distillation":
        raise TaskError(f"{task} is a distillation task (a student trained from a teacher "
                        "checkpoint), which this launcher does not run: train its PPO task")


def single_agent(env: Any) -> Any:
    """A multi-agent (DirectMARLEnv) task as one agent, as upstream converts it."""
    from isaaclab.envs import DirectMARLEnv, multi_agent_to_single_agent

    if isinstance(env.unwrapped, DirectMARLEnv):
        return multi_agent_to_single_agent(env)
    return env


def params_texts(env_cfg: Any, agent_cfg: Any) -> dict[str, str]:
    """{"params/env.yaml": text, "params/agent.yaml": text}, written by Isaac Lab's own
    ``dump_yaml`` as its train scripts write them into the log dir."""
    from isaaclab.utils.io import dump_yaml

    with tempfile.TemporaryDirectory() as scratch:
        texts = {}
        for name, cfg in zip(PARAMS_FILES, (env_cfg, agent_cfg), strict=True):
            path = Path(scratch) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            dump_yaml(str(path), cfg)
            texts[name] = path.read_text()
    return texts
