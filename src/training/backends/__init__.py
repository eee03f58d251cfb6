"""Training backends, chosen by name (``TRAINING_BACKEND``).

Each backend is one module with the same module-level interface (see
:class:`training.backends.base.Backend`); the launcher imports none of them directly, only
:func:`load_backend`. A new library needs one module and one line in :data:`BACKENDS`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.backends.base import Backend

# name -> module implementing training.backends.base.Backend
BACKENDS = {
    "rsl_rl": "training.backends.rsl_rl",
    "skrl": "training.backends.skrl",
}


def load_backend(name: str) -> Backend:
    """The backend module for ``name`` (imports its library: torch and the RL package)."""
    return importlib.import_module(BACKENDS[name])  # type: ignore[return-value]
