"""Comparing checkpoint contents in tests."""

from __future__ import annotations

from typing import Any


def deep_equal(a: Any, b: Any) -> bool:
    """Deep equality of (nested) state dicts holding tensors."""
    import torch

    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(
            deep_equal(a[k], b[k]) for k in a
        )
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(deep_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b
