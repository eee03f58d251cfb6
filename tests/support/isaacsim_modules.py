"""Stand-in for the modules Isaac Lab 2.x imports at module level but that cannot be had here.

``import isaaclab_tasks`` (which imports every task package to register the tasks) and
``parse_env_cfg`` reach, at module level, Isaac Sim's own Python modules (``omni``, ``pxr``,
``carb``, ``isaacsim``: shipped inside Isaac Sim, not on PyPI) and pip packages that the 2.x
images install beside Isaac Lab but this project does not (``flatdict``, ``h5py``, ``hid``,
``cv2``, ``torchvision``, which would pull another torch). Where (2.2.0 and 2.3.2.post1 wheels,
``isaaclab/source/``):

- ``isaaclab/isaaclab/utils/math.py:17``: ``import omni.log``;
- ``isaaclab/isaaclab/sim/simulation_context.py:22-32``: ``import carb``, ``import flatdict``,
  ``import omni.log / omni.physx / omni.usd``, ``from isaacsim.core.api.simulation_context
  import SimulationContext as _SimulationContext`` (its base class), ``from pxr import Gf,
  PhysxSchema, Usd, UsdPhysics``;
- ``isaaclab/isaaclab/assets/articulation/articulation.py:16-20``: ``import
  omni.physics.tensors.impl.api as physx``, ``from isaacsim.core.simulation_manager import
  SimulationManager``, ``from pxr import PhysxSchema, UsdPhysics``;
- ``isaaclab/isaaclab/utils/datasets/hdf5_dataset_file_handler.py:11``: ``import h5py``
  (``isaaclab.managers.recorder_manager`` imports it); ``isaaclab_tasks/.../direct/automate/
  automate_log_utils.py``: ``h5py`` too;
- ``isaaclab/isaaclab/devices/spacemouse/se2_spacemouse.py``, ``se3_spacemouse.py``:
  ``import hid``;
- ``isaaclab_tasks/.../direct/shadow_hand/feature_extractor.py`` and
  ``.../stack/config/franka/stack_ik_rel_blueprint_env_cfg.py``: ``torchvision``;
- 2.3 only, ``isaaclab_contrib/isaaclab_contrib/sensors/tacsl_sensor/visuotactile_render.py:12``:
  ``import cv2`` (``isaaclab/isaaclab/scene/interactive_scene.py:39`` imports that sensor).

Nothing of them runs while cfgs are built: configclass fields hold Isaac Lab's own ``*Cfg``
objects, and Isaac Sim's names stand only as base classes, decorators and type hints. So each
module here is empty and answers every name with a fresh class, which serves as a base class,
a decorator (called with one function, it returns it) and a type hint (subscriptable,
``|``-able). Whatever *calls* into them would get a meaningless object: tests that use this
build cfgs only, never an env (``gymnasium.make`` is stood in). 3.0 needs none of it: its
``isaaclab_tasks`` imports without Isaac Sim.

``install()`` puts the finder first on ``sys.meta_path``.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import types
from typing import Any

TOP_LEVEL = ("omni", "pxr", "carb", "isaacsim", "flatdict", "h5py", "hid", "cv2",
             "torchvision")


class _Name(type):
    """Every name of a stood-in module: a class whose attributes are names again."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _name(name)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]  # used as a decorator
        return _name("instance")

    def __getitem__(cls, _key: Any) -> Any:  # a generic type hint: Foo[int]
        return cls

    def __or__(cls, _other: Any) -> Any:  # a union type hint: Foo | None
        return cls

    __ror__ = __or__


def _name(name: str) -> _Name:
    return _Name(name, (), {})


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname.split(".")[0] not in TOP_LEVEL:
            return None
        return importlib.util.spec_from_loader(fullname, self, is_package=True)

    def create_module(self, spec: Any) -> types.ModuleType:
        module = types.ModuleType(spec.name)
        module.__path__ = []  # a package: `import omni.physics.tensors` finds its children

        def module_getattr(name: str) -> Any:  # PEP 562: `from pxr import Gf`
            if name.startswith("__"):
                raise AttributeError(name)
            return _name(name)

        module.__getattr__ = module_getattr  # type: ignore[method-assign]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def install() -> None:
    sys.meta_path.insert(0, _Finder())
