"""Probe, run as a subprocess under one Isaac Lab release (support.isaaclab_releases, no app):
real agent cfgs of that release's tasks through our cfg handling into its real rsl-rl.

``python isaaclab_cfg_probe.py CASES_JSON``: CASES_JSON is a list of cases
``{"task", "entry_point", "module", "cfg_class", "obs", "actions", "marl"}``; prints one JSON
line per case: ``{"task", "error", "runner", "random_starts", "received_marl", "params"}``.

How a cfg is found:
- 3.0 (``isaaclab_tasks`` imports without Isaac Sim): the real registry and
  :func:`training.envs.isaaclab.make_isaaclab_env` end to end; only what needs the simulator
  is stood in: ``gymnasium.make`` returns a placeholder env (a ``DirectMARLEnv`` subclass
  instance for multi-agent tasks, with the spaces ``multi_agent_to_single_agent`` reads), and
  the backend's wrapper returns :class:`StandInVecEnv` (Isaac Lab's ``RslRlVecEnvWrapper``
  needs a running env).
- 2.2 / 2.3 (``isaaclab_tasks``, ``isaaclab_rl.rsl_rl`` and ``isaaclab.envs`` import ``omni``
  in their package ``__init__``s): the agent cfg module is imported with those packages
  replaced by empty ones that keep the real ``__path__`` (:func:`import_skipping_inits`), so
  only the cfg module and the cfg classes it names run; then the same steps of
  :mod:`training.envs.isaaclab_compat` the launcher takes.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import json
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import torch

from training.backends import rsl_rl
from training.backends import rsl_rl_compat as rsl_compat
from training.backends.base import TrainHooks
from training.envs import EnvHandle, TaskError
from training.envs import isaaclab_compat as compat

RSL_RL_CFG_MODULES = ("rl_cfg", "distillation_cfg", "rnd_cfg", "symmetry_cfg")
NUM_ENVS = 4


class StandInVecEnv:
    """An rsl-rl VecEnv with a task's observation and action sizes (random observations).
    Notes whether the runner set ``episode_length_buf`` (``init_at_random_ep_len``)."""

    def __init__(self, obs: int, actions: int, groups: list[str], cfg: Any = None) -> None:
        self.groups = groups  # the observation groups the agent cfg's obs_groups name
        self.num_envs, self.num_actions, self.num_obs = NUM_ENVS, actions, obs
        self.max_episode_length = 50
        self.device = "cpu"
        self.cfg = cfg
        self._buf = torch.zeros(NUM_ENVS, dtype=torch.long)
        self.random_starts = False

    @property
    def episode_length_buf(self) -> torch.Tensor:
        return self._buf

    @episode_length_buf.setter
    def episode_length_buf(self, value: torch.Tensor) -> None:  # rsl-rl's learn() sets it
        self.random_starts = True
        self._buf = value

    def _obs(self, *, for_step: bool) -> Any:
        policy = torch.randn(NUM_ENVS, self.num_obs)
        if rsl_compat.MAJOR >= 3:
            from tensordict import TensorDict

            return TensorDict({group: policy.clone() for group in self.groups},
                              batch_size=[NUM_ENVS])
        extras = {"observations": {"critic": policy.clone()}}
        return policy if for_step else (policy, extras)

    def get_observations(self) -> Any:
        return self._obs(for_step=False)

    def step(self, actions: torch.Tensor) -> tuple[Any, ...]:
        self._buf = self._buf + 1
        dones = self._buf >= self.max_episode_length
        self._buf[dones] = 0
        extras = rsl_compat.step_extras(torch.zeros(NUM_ENVS, dtype=torch.bool), {})
        if rsl_compat.MAJOR < 3:
            extras["observations"] = {"critic": torch.randn(NUM_ENVS, self.num_obs)}
        return self._obs(for_step=True), torch.rand(NUM_ENVS), dones, extras

    def reset(self) -> Any:
        return self.get_observations()

    def close(self) -> None:
        pass


class _EmptyPackages(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Packages under ``prefixes`` import as empty modules with their real ``__path__`` (their
    ``__init__`` never runs); plain modules in them import normally."""

    def __init__(self, roots: list[Path], prefixes: tuple[str, ...]) -> None:
        self.roots, self.prefixes = roots, prefixes

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname.split(".")[0] not in self.prefixes:
            return None
        relative = Path(*fullname.split("."))
        for root in self.roots:
            if (root / relative / "__init__.py").exists():
                spec = importlib.util.spec_from_loader(fullname, self, is_package=True)
                spec.submodule_search_locations = [str(root / relative)]
                return spec
        return None

    def create_module(self, spec: Any) -> None:
        return None  # the default module; exec_module leaves it empty

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def import_skipping_inits(module: str, roots: list[Path]) -> types.ModuleType:
    """Import ``module`` with every package of ``isaaclab_tasks`` / ``isaaclab_rl`` (and
    ``isaaclab.utils``) created empty, so package ``__init__``s that reach ``omni`` never run;
    ``isaaclab_rl.rsl_rl`` and ``isaaclab.utils`` get the names of the modules their
    ``__init__`` would export and the cfg modules use."""
    sys.meta_path.insert(0, _EmptyPackages(roots, ("isaaclab_tasks", "isaaclab_rl")))

    def export(package: str, modules: tuple[str, ...]) -> None:
        """``package`` created empty, then given the public names of ``modules`` in it."""
        if package not in sys.modules:
            spec = _EmptyPackages(roots, (package.split(".")[0],)).find_spec(package)
            sys.modules[package] = importlib.util.module_from_spec(spec)
        target = sys.modules[package]
        for name in modules:
            if (Path(target.__path__[0]) / f"{name}.py").exists():
                loaded = importlib.import_module(f"{package}.{name}")
                for key, value in vars(loaded).items():
                    if not key.startswith("_"):
                        setattr(target, key, value)

    # 2.3's isaaclab.utils __init__ also imports pxr (utils/mesh.py): configclass and the
    # dict helpers (what the cfg modules and dump_yaml use) are exported by hand.
    export("isaaclab.utils", ("configclass", "dict", "string"))
    export("isaaclab_rl.rsl_rl", RSL_RL_CFG_MODULES)
    return importlib.import_module(module)


class ProbeBackend:
    """The real rsl-rl backend, but wrapping with :class:`StandInVecEnv` (module doc)."""

    NAME = rsl_rl.NAME
    versions = staticmethod(rsl_rl.versions)

    def __init__(self, case: dict[str, Any]) -> None:
        self.ISAACLAB_CFG_ENTRY_POINT = case["entry_point"]
        self.case = case
        self.received: Any = None

    def wrap_isaaclab_env(self, env: Any, agent_cfg: Any, *, device: str) -> EnvHandle:
        self.received = env
        cfg = agent_cfg.to_dict()
        named = {group for groups in (cfg.get("obs_groups") or {}).values() for group in groups}
        groups = sorted(named | {"policy", "critic"})
        return EnvHandle(env=StandInVecEnv(self.case["obs"], self.case["actions"], groups, env),
                         agent_cfg=cfg, kind="isaaclab", max_iterations=cfg["max_iterations"],
                         save_interval=cfg["save_interval"], seed=cfg["seed"], _close=env.close)


def marl_placeholder(obs: int, actions: int) -> Any:
    """A DirectMARLEnv instance of two agents without a simulator (__init__ not run): the
    attributes multi_agent_to_single_agent reads."""
    import gymnasium
    from isaaclab.envs import DirectMARLEnv

    env = DirectMARLEnv.__new__(DirectMARLEnv)
    agents = ["left", "right"]
    env.__dict__.update(
        cfg=types.SimpleNamespace(state_space=0), sim=None, render_mode=None, _is_closed=True,
        scene=types.SimpleNamespace(num_envs=NUM_ENVS),
        possible_agents=agents, num_envs=NUM_ENVS, device="cpu",
        observation_spaces={a: gymnasium.spaces.Box(-1.0, 1.0, shape=(obs,)) for a in agents},
        action_spaces={a: gymnasium.spaces.Box(-1.0, 1.0, shape=(actions,)) for a in agents},
    )
    return env


class _Placeholder:
    """What gymnasium.make returns for a single-agent task here."""

    unwrapped = property(lambda self: self)

    def close(self) -> None:
        pass


def handle_for(case: dict[str, Any], backend: ProbeBackend) -> EnvHandle:
    if compat.release() == "3.0":
        import gymnasium

        from training.envs.isaaclab import make_isaaclab_env

        def make(task: str, cfg: Any) -> Any:
            return marl_placeholder(case["obs"], case["actions"]) if case["marl"] \
                else _Placeholder()

        gymnasium.make = make
        return make_isaaclab_env(case["task"], backend=backend, num_envs=NUM_ENVS, seed=None,
                                 device="cpu")
    from support.isaaclab_releases import source_paths

    roots = source_paths(release_name)
    agent_cfg = getattr(import_skipping_inits(case["module"], roots), case["cfg_class"])()
    compat.refuse_distillation(case["task"], agent_cfg)
    agent_cfg.device = "cpu"
    agent_cfg = compat.adapt_rsl_rl_cfg(agent_cfg, rsl_rl.RSL_RL_VERSION)
    handle = backend.wrap_isaaclab_env(_Placeholder(), agent_cfg, device="cpu")
    # 2.x env cfg modules import isaaclab.sim / assets (omni) at module level: no env cfg here
    handle.params = compat.params_texts({"task": case["task"]}, agent_cfg)
    return handle


def probe(case: dict[str, Any]) -> dict[str, Any]:
    backend = ProbeBackend(case)
    result: dict[str, Any] = {"task": case["task"]}
    try:
        handle = handle_for(case, backend)
    except TaskError as error:
        return result | {"error": f"TaskError: {error}"}
    except Exception as error:  # noqa: BLE001 -- reported to the test, which shows it
        return result | {"error": f"{type(error).__name__}: {error}"}
    with tempfile.TemporaryDirectory() as log_dir:
        runner = rsl_rl.build_runner(handle, log_dir=Path(log_dir), device="cpu", init=None,
                                     mode=None)
        rsl_rl.train(handle, log_dir=Path(log_dir), device="cpu", max_iterations=1,
                     save_interval=1, init=None, mode=None, hooks=TrainHooks())
    return result | {
        "error": None,
        "runner": type(runner).__mro__[1].__name__,
        "random_starts": handle.env.random_starts,
        "received_marl": type(backend.received).__name__ == "DirectMARLEnv",
        "received_actions": int(getattr(getattr(backend.received, "single_action_space", None),
                                        "shape", [0])[0]),
        "params": sorted(handle.params),
        "agent_yaml": handle.params.get("params/agent.yaml", ""),
    }


if __name__ == "__main__":
    release_name = compat.release()
    for case in json.loads(sys.argv[1]):
        print(json.dumps(probe(case)), flush=True)
