"""Graceful stop on SIGTERM and SIGINT (Kubernetes sends SIGTERM, then SIGKILL after the pod's
grace period: 30 s by default).

What the first signal does depends on how far the launcher got:

- starting (dependencies, tracking, auto-resume look-up, environment, MLflow run): nothing is
  trained, so nothing to save: the handler raises :class:`StopRequested` where the main thread
  is; it unwinds (closing what was opened, ending a started run KILLED) and the launcher
  exits 75;
- training: the handler only sets a flag; the backend polls it (``TrainHooks.should_stop``) at
  the next iteration boundary, saves ``model_<done>.pt`` and returns early; the launcher uploads
  it within the grace and exits 75;
- finishing (training is over: final uploads): the end of the run goes on as usual.

In every phase the grace deadline (first signal + STOP_GRACE_S) is enforced by a watchdog
thread: when it passes, the process exits 75 at once, whatever the main thread still waits for.
A second signal exits at once with 128 + the signal number, without waiting for anything.

Messages from the handler and the watchdog go straight to file descriptor 1: a handler that
prints through sys.stdout while the main thread is inside a print would fail ("reentrant call").
Standard library only: this is installed before the dependency check.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.backends.base import Checkpoint, TrainResult
    from training.checkpoints import CheckpointUploader
    from training.tracking import MetricLogger

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# After a stop signal, uploads may use the grace up to this many seconds before its end and
# metrics up to 1 s before it; what is left is for marking the run KILLED.
UPLOAD_RESERVE_S = 3.0
METRICS_RESERVE_S = 1.0


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

    def install(self) -> GracefulStop:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        # Started now, not from the handler: starting a thread inside a signal handler can
        # deadlock when the main thread was interrupted while starting one itself.
        threading.Thread(target=self._enforce_deadline, name="stop-grace", daemon=True).start()
        return self

    @property
    def requested(self) -> bool:
        return self.deadline is not None

    def should_stop(self) -> bool:
        """For TrainHooks.should_stop."""
        return self.requested

    def time_left(self, reserve_s: float = 0.0) -> float:
        """Seconds until the grace deadline minus reserve_s (kept for what comes after)."""
        if self.deadline is None:
            return float("inf")
        return max(0.0, self.deadline - reserve_s - time.monotonic())

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        """While the backend trains, a signal asks it to save and return (see module doc)."""
        self._phase = "training"
        try:
            yield
        finally:
            self._phase = "finishing"

    def finish_after_save(self, uploader: CheckpointUploader, metrics: MetricLogger,
                          result: TrainResult, resumed_from: Checkpoint | None) -> int:
        """The backend saved at the iteration boundary and returned: store that checkpoint (and
        any other pending one) and flush metrics within the grace; return the exit code. The
        launcher ends the run KILLED, so that the next attempt of the workflow resumes it.
        resumed_from: the checkpoint auto-resume took from this run's store, if any."""
        report = uploader.close(self.time_left(reserve_s=UPLOAD_RESERVE_S))
        lost_metrics = metrics.close(self.time_left(reserve_s=METRICS_RESERVE_S))
        iteration, name = result.final_iteration, f"model_{result.final_iteration}.pt"
        if iteration in report.uploaded or (resumed_from and resumed_from.iteration == iteration):
            outcome = f"{name} stored"
        elif result.final_checkpoint is None or iteration == result.start_iteration:
            outcome = "nothing new to save"
        else:
            reason = report.errors.get(iteration) or f"the stop grace of {self.grace_s:g} s ran out"
            outcome = f"{name} NOT stored ({reason}), kept at {result.final_checkpoint}"
        print(f"checkpoint uploads: {report.summary()}", flush=True)
        if lost_metrics:
            print(f"warning: {lost_metrics} metric values could not be logged "
                  f"({metrics.last_error})", flush=True)
        print(f"stopped at iteration {iteration}: {outcome}; exiting {self.exit_code} "
              "(retryable)", flush=True)
        return self.exit_code

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
        while (left := self.deadline - time.monotonic()) > 0:
            time.sleep(left)
        _say(f"the stop grace of {self.grace_s:g} s ran out: exiting {self.exit_code} "
             "(retryable) now")
        os._exit(self.exit_code)


def _say(line: str) -> None:
    with contextlib.suppress(OSError):  # stdout closed: nothing to tell
        os.write(1, (line + "\n").encode())
