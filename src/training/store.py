"""Talking to the tracking store: which failures are worth waiting out, and waiting them out.

Every call to MLflow can fail in two ways that call for opposite reactions:

- the store **did not answer** (connection refused or reset, a timeout, MLflow's retries on 5xx
  answers used up): it may be back in a moment, so background work retries with
  :class:`Backoff`, a blocking step retries with :func:`retry` until its deadline, and a task
  that runs out of time exits 75 so OSMO runs it again later;
- the store **answered with a refusal** (403, 404, a request it rejects): asking again does
  not help, so the step fails at once and the task exits 5.

:func:`unreachable` tells the two apart; :class:`StoreFailure` carries the exit code that
follows. This module is the one place for both, and for the backoff schedule: the metric
sender, the checkpoint uploader, the auto-resume look-up, the final upload and the end of the
run all use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

EXIT_TRAINING_FAILED = 5
EXIT_RETRYABLE = 75

T = TypeVar("T")
Deadline = Callable[[], float]  # returns a time.monotonic() value; called again before each wait


def unreachable(error: BaseException) -> bool:
    """Whether error, or one it was raised from, says the store did not answer. MLflow wraps
    the requests error it got, so the whole chain is read."""
    import requests  # MLflow's own HTTP client

    no_answer = (ConnectionError, TimeoutError, requests.exceptions.ConnectionError,
                 requests.exceptions.Timeout, requests.exceptions.RetryError)
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, no_answer):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def first_line(error: BaseException) -> str:
    """The first line of an error's text (library errors can span a table of lines)."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


class StoreFailure(Exception):
    """A step that needs the store failed: exit 75 when the store did not answer (a later
    attempt may meet it), else 5. The message is one line for the user."""

    def __init__(self, message: str, cause: BaseException) -> None:
        self.retryable = unreachable(cause)
        if self.retryable:
            message += "; the store did not answer: exiting 75 (retryable)"
        else:
            message += f": {first_line(cause)}"
        super().__init__(message)

    @property
    def exit_code(self) -> int:
        return EXIT_RETRYABLE if self.retryable else EXIT_TRAINING_FAILED


class Backoff:
    """Waits between tries: first_s, doubled after each failure, at most max_s."""

    def __init__(self, first_s: float = 1.0, max_s: float = 30.0) -> None:
        self.first_s, self.max_s = first_s, max_s
        self.failures = 0

    def failed(self) -> float:
        """Record a failure; the wait before the next try."""
        self.failures += 1
        return min(self.first_s * 2 ** (self.failures - 1), self.max_s)

    def succeeded(self) -> None:
        self.failures = 0


def retry(action: Callable[[], T], *, deadline: Deadline, backoff: Backoff | None = None,
          attempts: int | None = None, only_unreachable: bool = False,
          on_retry: Callable[[BaseException, float], None] | None = None) -> T:
    """action() until it succeeds; its error once the next wait would pass deadline(), after
    `attempts` tries, or at once when only_unreachable and the store answered with a refusal.
    deadline is a function so that a stop signal can bring it forward while we wait."""
    backoff = backoff or Backoff()
    while True:
        try:
            return action()
        except Exception as error:  # MLflow and requests raise many types
            if only_unreachable and not unreachable(error):
                raise
            wait_s = backoff.failed()
            if (attempts is not None and backoff.failures >= attempts
                    or time.monotonic() + wait_s > deadline()):
                raise
            if on_retry is not None:
                on_retry(error, wait_s)
            time.sleep(wait_s)


def within(seconds: float) -> Deadline:
    """A fixed deadline `seconds` from now."""
    end = time.monotonic() + seconds
    return lambda: end
