"""A child process whose output is read line by line while it runs, so that a test (or
bench/chaos.py) can act at a chosen moment: signal it, kill it, stop the tracking server.

Plain Python (no pytest), so that the benchmarks can import it too.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class StreamedProcess:
    """A child in its own process group (like a pod's processes) whose stdout and stderr,
    merged, are collected line by line with the time each line arrived."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> None:
        self.argv = list(argv)
        self.lines: list[str] = []
        self.arrival: list[float] = []  # time.monotonic() of each line
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            self.argv, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self.arrival.append(time.monotonic())
                self._changed.notify_all()
        with self._changed:  # end of output: wake waiters so they see the exit
            self._changed.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def tail(self, count: int = 40) -> str:
        return "\n".join(self.lines[-count:])

    def wait_for(self, pattern: re.Pattern[str] | str, timeout: float,
                 start: int = 0) -> re.Match[str]:
        """The first line at index >= start matching pattern; waits for it to be printed.
        AssertionError (with the output's tail) when the process ends or time runs out."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        checked = start
        with self._changed:
            while True:
                for index in range(checked, len(self.lines)):
                    match = regex.search(self.lines[index])
                    if match:
                        return match
                checked = max(checked, len(self.lines))
                ended = not self._reader.is_alive()
                left = deadline - time.monotonic()
                if ended or left <= 0:
                    why = "the process ended" if ended else f"{timeout:.0f} s passed"
                    raise AssertionError(
                        f"{why} without a line matching {regex.pattern!r}; output tail:\n"
                        + self.tail()
                    )
                self._changed.wait(min(left, 0.5))

    def signal_process(self, sig: int) -> None:
        """sig to the process itself, as Kubernetes signals a container's main process."""
        self.process.send_signal(sig)

    def kill_group(self) -> None:
        """SIGKILL to the whole process group: what an OOM kill or a lost node leaves."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def finish(self, timeout: float) -> int:
        """Wait for the exit and for the last line of output; the exit code (-N: signal N)."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            self.process.wait()
            self._reader.join(10)
            raise AssertionError(f"still running after {timeout:.0f} s; output tail:\n"
                                 + self.tail()) from None
        self._reader.join(30)
        return code

    def stop_if_running(self) -> None:
        if self.process.poll() is None:
            self.kill_group()
            self.process.wait()

    def __enter__(self) -> StreamedProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_if_running()


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               poll_s: float = 0.2) -> float:
    """Seconds it took for condition() to hold; AssertionError after timeout."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(poll_s)
    return time.monotonic() - start
