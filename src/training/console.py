"""Silencing a library's console output without silencing the launcher's other threads.

rsl-rl prints a block per iteration, skrl 1.4.3 its generated model source, MLflow's
``save_model`` a line or two: the launcher prints its own short lines instead. Swapping
``sys.stdout`` for the block (``contextlib.redirect_stdout``) is process-wide, though: a line a
video watcher or an upload thread printed meanwhile went to the same sink and was lost (the one
line saying videos cannot render vanished when it came during rsl-rl's per-iteration log call).
:func:`quiet_stdout` drops only what the thread that entered it writes.

Standard library only.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

_muted = threading.local()  # .depth: how many quiet blocks this thread is inside
_install_lock = threading.Lock()
_active_blocks = 0  # in every thread: the filter stays installed while any is open


class _ThreadFilteredStdout:
    """Stands in for ``sys.stdout`` while a quiet block is open: a muted thread's writes are
    dropped, every other thread's go to the stream that was there."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        if getattr(_muted, "depth", 0):
            return len(text)
        return self.stream.write(text)

    def flush(self) -> None:
        if not getattr(_muted, "depth", 0):
            self.stream.flush()

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, isatty ...: the stream's
        return getattr(self.stream, name)


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Inside the block, what this thread prints is dropped; other threads print as before."""
    global _active_blocks
    with _install_lock:
        if not isinstance(sys.stdout, _ThreadFilteredStdout):
            sys.stdout = _ThreadFilteredStdout(sys.stdout)
        _active_blocks += 1
    _muted.depth = getattr(_muted, "depth", 0) + 1
    try:
        yield
    finally:
        _muted.depth -= 1
        with _install_lock:
            _active_blocks -= 1
            # Put back the stream that was there, unless someone has replaced us since.
            if _active_blocks == 0 and isinstance(sys.stdout, _ThreadFilteredStdout):
                sys.stdout = sys.stdout.stream
