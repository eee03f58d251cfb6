"""GracefulStop in-process: what it installs, and that it stays installed."""

from __future__ import annotations

import signal
import threading

from training.stop import GracefulStop


def _watchdogs() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == "stop-grace")


def test_installing_again_puts_the_handlers_back_with_one_watchdog() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        existing = _watchdogs()
        stop = GracefulStop(25, exit_code=75).install()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # what Isaac Sim's app start does
        stop.install()
        assert _watchdogs() == existing + 1
        assert signal.getsignal(signal.SIGTERM) == stop._on_signal
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def test_handlers_replaced_during_training_are_put_back_at_the_next_boundary() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        stop = GracefulStop(25, exit_code=75).install()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Isaac Lab 3.0's reset
        assert stop.should_stop() is False
        assert signal.getsignal(signal.SIGINT) == stop._on_signal
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
