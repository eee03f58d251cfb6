"""Every difference between the skrl versions that Isaac Lab images ship, in one place.

| skrl  | image       | agent cfg  | GAE, value clipping            | observation preprocessor |
|-------|-------------|------------|--------------------------------|--------------------------|
| 1.4.3 | IL 2.2, 2.3 | dict       | lambda, clip_predicted_values  | state_preprocessor       |
| 2.1.x | IL 3.0      | dataclass  | gae_lambda, value_clip > 0     | observation_preprocessor |

Trainer length: 1.4.3 ``trainer.timesteps`` (and a start offset ``initial_timestep``), 2.x
``trainer.cfg.timesteps`` (no offset). ``agent.init(trainer_cfg)`` is keyword-only in 2.x;
``act(states, timestep, timesteps)`` became ``act(observations, states, timestep=,
timesteps=)`` (skrl's own trainer calls them; our deterministic policy calls the policy
model's ``act``, the same in both).

Also: 1.4.3's Runner prints every model's source code; ``write_tracking_data`` and the
writer's ``add_scalar`` take positional arguments in 1.4.3 and keywords in 2.x; model inputs
``STATES`` mean observations in 1.4.3 but the env state in 2.x (our cfg says
``OBSERVATIONS``, the same in both). Network parameter names are the same in both versions,
so one checkpoint format serves both; only the observation preprocessor's key is renamed on
load (:func:`modules_as_installed`).

The trainer's start offset (1.4.3's ``initial_timestep``) is deliberately not used: 2.x has
none, so in both versions the backend runs the remaining timesteps from 0 and carries the
iteration count itself (training.backends.skrl). PPO uses the timestep only for
``random_timesteps``/``learning_starts`` (1.4.3; 0 in every cfg here), so counting from 0 changes
nothing else.

Importing this module imports ``skrl`` (light), not its agents or torch-heavy parts.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import skrl

SKRL_VERSION: str = skrl.__version__  # from the dist-info next to the imported package
MAJOR: int = int(SKRL_VERSION.split(".")[0])

# skrl logs INFO lines (seed, wrapper) on its own handler; the launcher prints its own lines.
logging.getLogger("skrl").setLevel(logging.WARNING)



# --- agent configuration -----------------------------------------------------------------------


def runner_cfg(agent_cfg: dict[str, Any], *, directory: str) -> dict[str, Any]:
    """A private copy of the agent cfg for ``Runner(env, cfg)`` in the installed schema.

    Our own keys (``max_iterations``, ``save_interval``) are dropped; skrl writes nothing itself
    (no TensorBoard writer, no checkpoints: intervals 0; the backend attaches its own writer and
    saves its own files), shows no progress bar, renders nothing and leaves closing the env to
    the launcher. ``trainer.timesteps`` is set later (:func:`set_timesteps`).
    """
    cfg = copy.deepcopy(agent_cfg)
    cfg.pop("max_iterations", None)
    cfg.pop("save_interval", None)
    agent = cfg.setdefault("agent", {})
    experiment = dict(agent.get("experiment") or {})
    experiment.update(directory=directory, experiment_name="skrl", write_interval=0,
                      checkpoint_interval=0, wandb=False)
    agent["experiment"] = experiment
    trainer = cfg.setdefault("trainer", {})
    trainer.setdefault("class", "SequentialTrainer")
    trainer.update(timesteps=agent.get("rollouts", 1), headless=True, disable_progressbar=True,
                   close_environment_at_exit=False)
    if MAJOR < 2:
        _to_1x_names(agent)
    return cfg


def _to_1x_names(agent: dict[str, Any]) -> None:
    """skrl 2.x names (ours) as 1.4.3 reads them; 1.4.3 silently ignores keys it does not know,
    so a 2.x name left in place would fall back to a default without a word."""
    if "gae_lambda" in agent:
        agent["lambda"] = agent.pop("gae_lambda")
    if "observation_preprocessor" in agent:
        agent["state_preprocessor"] = agent.pop("observation_preprocessor")
        agent["state_preprocessor_kwargs"] = agent.pop("observation_preprocessor_kwargs", None)
    if "value_clip" in agent and "clip_predicted_values" not in agent:
        agent["clip_predicted_values"] = agent["value_clip"] > 0  # 2.x: value_clip > 0 clips


def rollouts(agent: Any) -> int:
    """Timesteps per iteration (``agent.rollouts`` of the cfg)."""
    return int(agent.cfg.rollouts if MAJOR >= 2 else agent.cfg["rollouts"])


def set_timesteps(trainer: Any, timesteps: int) -> None:
    """How many timesteps the next ``trainer.train()`` runs (from timestep 0)."""
    if MAJOR >= 2:
        trainer.cfg.timesteps = timesteps
    else:
        trainer.timesteps = timesteps


# --- metrics -----------------------------------------------------------------------------------


class TrackedValues:
    """A stand-in for the agent's TensorBoard writer that keeps what skrl wrote.

    skrl's ``write_tracking_data`` reduces each tracked series (mean, or min/max for tags that
    end in "(min)"/"(max)") and hands the result to ``writer.add_scalar``; receiving it here
    reports exactly skrl's numbers, every tag, without copying its bookkeeping.
    """

    def __init__(self) -> None:
        self._values: dict[str, float] = {}

    def add_scalar(self, tag: str, value: Any, timestep: Any = None) -> None:  # 1.4.3 and 2.x
        self._values[tag] = float(value)

    def take(self) -> dict[str, float]:
        values, self._values = self._values, {}
        return values

    def flush(self) -> None:
        return None

    close = flush


def attach_writer(agent: Any, writer: TrackedValues, *, write_interval: int) -> None:
    """Make the agent track and write its data every ``write_interval`` timesteps into
    ``writer``. Set after the Runner is built (built with interval 0: no TensorBoard files);
    ``record_transition`` checks the interval at each step."""
    agent.writer = writer
    agent.write_interval = write_interval


def write_tracking_data(agent: Any, *, timestep: int, timesteps: int) -> None:
    """skrl's own write (reduce, hand to the writer, clear), when anything is left to write."""
    if agent.tracking_data:
        if MAJOR >= 2:
            agent.write_tracking_data(timestep=timestep, timesteps=timesteps)
        else:
            agent.write_tracking_data(timestep, timesteps)


# --- checkpoints -------------------------------------------------------------------------------


def modules_as_installed(modules: dict[str, Any], *, written_by: int) -> dict[str, Any]:
    """A checkpoint's module states (``{name: state_dict}``, written by skrl major
    ``written_by``) under the names the installed skrl's agent uses.

    The observation preprocessor is the one module whose name changed: 1.4.3 calls it
    ``state_preprocessor``; 2.x ``observation_preprocessor`` (and uses ``state_preprocessor``
    for the env *state*, which 1.4.3 does not have).
    """
    modules = dict(modules)
    if written_by >= 2 and MAJOR < 2:
        modules.pop("state_preprocessor", None)
        if "observation_preprocessor" in modules:
            modules["state_preprocessor"] = modules.pop("observation_preprocessor")
    elif written_by < 2 <= MAJOR and "state_preprocessor" in modules:
        modules["observation_preprocessor"] = modules.pop("state_preprocessor")
    return modules


def is_preprocessor(name: str) -> bool:
    """Whether checkpoint module ``name`` holds running statistics (observation, state or
    value preprocessor: a warm start keeps them with the weights)."""
    return name.endswith("_preprocessor")


# --- inference and export ----------------------------------------------------------------------


def observation_preprocessor(agent: Any) -> Any:
    """The agent's observation preprocessor (running mean/std), what its ``act`` applies to
    observations: ``_state_preprocessor`` in 1.4.3, ``_observation_preprocessor`` in 2.x (whose
    ``_state_preprocessor`` is for the env state). A method (skrl's empty one) when off."""
    return agent._observation_preprocessor if MAJOR >= 2 else agent._state_preprocessor
