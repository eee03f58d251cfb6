"""Graceful stop on SIGTERM and SIGINT (Kubernetes sends SIGTERM, then SIGKILL after the pod's
grace period: 30 s by default).

What the first signal does depends on how far the launcher got:

- starting (dependencies, the Isaac Sim app, tracking, auto-resume look-up, environment, the
  MLflow run): nothing is trained, so nothing to save: the handler raises
  :class:`StopRequested` where the main thread is; it unwinds (the run owner closes what was
  opened and ends a started run KILLED) and the launcher exits 75;
- training: the handler only sets a flag; the backend polls it (``TrainHooks.should_stop``) at
  the next iteration boundary, saves ``model_<done>.pt`` and returns early; the run owner
  uploads it within the grace and the launcher exits 75;
- finishing (training is over: final uploads, registration): the end of the run goes on, but
  every wait is cut to the grace (see :meth:`GracefulStop.deadline_for`).

In every phase the grace deadline (first signal + STOP_GRACE_S) is enforced by a watchdog
thread: shortly before it passes the watchdog runs the "last words" the run owner registered
(ending the MLflow run KILLED, so it is not left RUNNING), and when it passes the process exits
75 at once, whatever the main thread still waits for. A second signal exits at once with
128 + the signal number, without waiting for anything.

Isaac Sim installs its own SIGTERM/SIGINT handlers when its app starts (shared/docs/
isaaclab.md): :meth:`GracefulStop.install` is called again once the app is up, and
:meth:`GracefulStop.should_stop` puts ours back at every iteration boundary if anything
replaced them.

Messages from the handler and the watchdog go straight to file descriptor 1: a handler that
prints through sys.stdout while the main thread is inside a print would fail ("reentrant call").
Standard library only: this is installed before the dependency check.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# The watchdog starts the last words this long before the grace ends.
LAST_WORDS_S = 3.0


class StopRequested(BaseException):
    """A stop signal arrived before training started. A BaseException, like KeyboardInterrupt,
    so that the `except Exception` clauses it passes on the way out do not swallow it."""


class GracefulStop:
    def __init__(self, grace_s: float, exit_code: int) -> None:
        self.grace_s = grace_s
        self.exit_code = exit_code
        self.deadline: float | None = None  # time.monotonic() by which the process exits
        self._phase = "starting"
        self._signalled = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._last_words: Callable[[], None] | None = None
        # With several ranks (training.distributed): whether any rank was asked to stop.
        self._agree: Callable[[bool], bool] | None = None

    def install(self) -> GracefulStop:
        """Install (or put back) our handlers; the watchdog thread starts once."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        if self._watchdog is None:
            # Started now, not from the handler: starting a thread inside a signal handler can
            # deadlock when the main thread was interrupted while starting one itself.
            self._watchdog = threading.Thread(target=self._enforce_deadline, name="stop-grace",
                                              daemon=True)
            self._watchdog.start()
        return self

    def ensure_installed(self) -> None:
        """Put our handlers back if something replaced them (only the main thread can)."""
        if threading.current_thread() is not threading.main_thread():
            return
        if any(signal.getsignal(signum) != self._on_signal for signum in STOP_SIGNALS):
            self.install()

    @property
    def requested(self) -> bool:
        return self.deadline is not None

    def agree_with(self, any_rank_stopped: Callable[[bool], bool]) -> None:
        """Ask ``any_rank_stopped(stopped_here)`` at every iteration boundary, so that a signal
        to one rank stops every rank at the same boundary (called on every rank alike)."""
        self._agree = any_rank_stopped

    def should_stop(self) -> bool:
        """For TrainHooks.should_stop: called at every iteration boundary."""
        self.ensure_installed()
        if self._agree is None:
            return self.requested
        # The agreed answer, not the local flag: a signal that lands during the all-reduce
        # stops every rank at the next boundary, not this rank alone at this one.
        agreed = self._agree(self.requested)
        if agreed and not self.requested:
            # Another rank was signalled: stop here too, with the same grace from now.
            self.deadline = time.monotonic() + self.grace_s
            self._signalled.set()
            _say("stop requested by another rank: saving at this iteration boundary")
        return agreed

    def time_left(self, reserve_s: float = 0.0) -> float:
        """Seconds until the grace deadline minus reserve_s (kept for what comes after)."""
        if self.deadline is None:
            return float("inf")
        return max(0.0, self.deadline - reserve_s - time.monotonic())

    def deadline_for(self, timeout_s: float, reserve_s: float = 0.0) -> Callable[[], float]:
        """A deadline timeout_s from now that a stop signal brings forward to reserve_s before
        the grace ends: asked again before each wait, so a signal shortens a wait under way."""
        own = time.monotonic() + timeout_s

        def deadline() -> float:
            if self.deadline is None:
                return own
            return min(own, self.deadline - reserve_s)

        return deadline

    def set_last_words(self, action: Callable[[], None] | None) -> None:
        """What the watchdog runs just before the grace ends (e.g. end the run KILLED)."""
        self._last_words = action

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        """While the backend trains, a signal asks it to save and return (see module doc)."""
        self._phase = "training"
        try:
            yield
        finally:
            self._phase = "finishing"

    def _on_signal(self, signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if self.requested:
            _say(f"second {name}: exiting now without waiting (exit {128 + signum})")
            os._exit(128 + signum)
        self.deadline = time.monotonic() + self.grace_s
        self._signalled.set()
        if self._phase == "starting":
            _say(f"stop requested ({name}): training has not started, nothing to save")
            raise StopRequested(name)
        if self._phase == "training":
            _say(f"stop requested ({name}): saving at the next iteration boundary")
        else:
            _say(f"stop requested ({name}): training is done; finishing its uploads within "
                 f"{self.grace_s:g} s")

    def _enforce_deadline(self) -> None:
        self._signalled.wait()
        assert self.deadline is not None
        _sleep_until(self.deadline - LAST_WORDS_S)
        last_words = self._last_words
        if last_words is not None:
            threading.Thread(target=_quietly, args=(last_words,), name="stop-last-words",
                             daemon=True).start()
        _sleep_until(self.deadline)
        _say(f"the stop grace of {self.grace_s:g} s ran out: exiting {self.exit_code} "
             "(retryable) now")
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(self.exit_code)


def _sleep_until(moment: float) -> None:
    while (left := moment - time.monotonic()) > 0:
        time.sleep(left)


def _quietly(action: Callable[[], None]) -> None:
    with contextlib.suppress(Exception):
        action()


def _say(line: str) -> None:
    with contextlib.suppress(OSError):  # stdout closed: nothing to tell
        os.write(1, (line + "\n").encode())
