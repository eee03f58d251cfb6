"""The deterministic actor module both backends export when their library has no export
module of its own (rsl-rl 2.x/3.x, skrl): the checkpoint's observation normaliser, then the
actor network. Imports torch."""

from __future__ import annotations

import copy
from typing import Any

import torch

from training.backends.base import Policy


class NormalizedActor(torch.nn.Module):
    """``actor(normalizer(obs))`` on private CPU copies, in eval mode: training the library's
    own modules afterwards cannot change an export, and exports are device-neutral."""

    def __init__(self, normalizer: Any, actor: torch.nn.Module) -> None:
        super().__init__()
        if not isinstance(normalizer, torch.nn.Module):  # e.g. skrl's _empty_preprocessor
            normalizer = torch.nn.Identity()
        self.normalizer = cpu_copy(normalizer)
        self.actor = cpu_copy(actor)
        self.eval()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(self.normalizer(obs))


def cpu_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``module`` wholly on the CPU: its parameters and buffers, and also the
    plain tensor attributes and ``device`` attributes ``Module.cpu`` leaves alone (skrl's
    models keep their action limits as plain tensors on the training device and a ``device``
    they allocate on): using the copy never touches the training device (a forked video
    renderer must not touch CUDA). What the module keeps of its last forward pass in training
    (skrl's ``_g_distribution``, tensors with a graph, which do not deep-copy) becomes None in
    the copy: its next forward pass sets it again."""
    last_pass = {id(value): None for sub in module.modules() for value in vars(sub).values()
                 if isinstance(value, torch.distributions.Distribution)
                 or (isinstance(value, torch.Tensor) and not value.is_leaf)}
    copied = copy.deepcopy(module, last_pass).cpu()
    cpu = torch.device("cpu")
    for sub in copied.modules():
        attributes = vars(sub)
        for name, value in list(attributes.items()):
            if isinstance(value, torch.Tensor) and value.device != cpu:
                attributes[name] = value.cpu()
        if isinstance(attributes.get("device"), torch.device):
            attributes["device"] = cpu
    return copied


def make_policy(module: torch.nn.Module, onnx_module: torch.nn.Module, *, scriptable: bool,
                exporter: str) -> Policy:
    """A Policy whose shapes are read off the module: observations are the first linear
    layer's inputs, actions what the module returns for them."""
    module, onnx_module = module.cpu().eval(), onnx_module.cpu().eval()
    linear = next((m for m in module.modules() if isinstance(m, torch.nn.Linear)), None)
    if linear is None:
        raise ValueError(f"{type(module).__name__} has no linear layer: not an MLP actor")
    with torch.no_grad():
        actions = module(torch.zeros(2, linear.in_features))
    return Policy(module=module, onnx_module=onnx_module, obs_dim=linear.in_features,
                  action_dim=int(actions.shape[-1]), scriptable=scriptable, exporter=exporter)
