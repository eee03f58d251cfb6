"""Run the task's command as a child process tree: output teed live, signals forwarded.

The child gets its own session (process group), so the terminal's Ctrl-C reaches only us; we
forward it once to the whole group, like a pod's SIGTERM on the cluster, and if the tree is
still alive after a grace period (the runtime saves a checkpoint first), we kill it. Whatever
the tree leaves behind when the task exits is killed too, as when a container stops.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

# Time the runtime gets after a forwarded signal: enough to finish an iteration, save a
# checkpoint and upload it to a local store.
DEFAULT_GRACE_SECONDS = 60.0


def _tee(source: BinaryIO, terminal: BinaryIO | None, log: BinaryIO, lock: threading.Lock):
    # Chunks, not lines: progress written with "\r" shows as it is written.
    fd = source.fileno()
    while chunk := os.read(fd, 65536):
        if terminal is not None:
            try:
                terminal.write(chunk)
                terminal.flush()
            except (OSError, ValueError):  # BrokenPipeError, or a closed stream
                # The reader went away (`| head`): keep draining into the log, or the
                # task would block on a full pipe.
                terminal = None
        with lock:
            log.write(chunk)
            log.flush()
    source.close()


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone already


def exit_code_of(returncode: int) -> int:
    """A shell-style exit code: a child killed by signal N ends with 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


class _SignalForwarder:
    """Our SIGINT/SIGTERM handler while the task runs: the first signal goes to the task's
    process group and starts the grace timer; a second one kills the group at once. Installed
    before the child starts, so a Ctrl-C in between is held and forwarded, never lost."""

    def __init__(self, grace_seconds: float, quiet: bool) -> None:
        self._grace_seconds = grace_seconds
        self._quiet = quiet
        self._pgid: int | None = None
        self._pending: int | None = None
        self._killer: threading.Timer | None = None

    def attach(self, pgid: int) -> None:
        self._pgid = pgid
        if self._pending is not None:
            self._forward(self._pending)

    def __call__(self, signum: int, _frame: object) -> None:
        if self._pgid is None:
            self._pending = signum
        elif self._killer is not None:
            # A second Ctrl-C: the user does not want to wait for the grace period.
            _kill_group(self._pgid, signal.SIGKILL)
        else:
            self._forward(signum)

    def _forward(self, signum: int) -> None:
        assert self._pgid is not None
        if not self._quiet:
            print(
                f"\n{signal.Signals(signum).name}: stopping the task (killed after "
                f"{self._grace_seconds:.0f} s; press Ctrl-C again to kill it now)",
                file=sys.stderr,
                flush=True,
            )
        _kill_group(self._pgid, signum)
        self._killer = threading.Timer(
            self._grace_seconds, _kill_group, (self._pgid, signal.SIGKILL)
        )
        self._killer.daemon = True
        self._killer.start()

    def cancel(self) -> None:
        if self._killer is not None:
            self._killer.cancel()


def run_task(
    argv: list[str],
    env: Mapping[str, str],
    *,
    log_path: Path,
    cwd: Path,
    quiet: bool,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
) -> int:
    """Run `argv` until it exits and return its exit code; stdout and stderr go to our own
    stdout and stderr (unless quiet) and, interleaved as they came, to `log_path`.

    Call from the main thread (signal handlers can only be installed there)."""
    forwarder = _SignalForwarder(grace_seconds, quiet)
    previous = {sig: signal.signal(sig, forwarder) for sig in (signal.SIGINT, signal.SIGTERM)}
    child: subprocess.Popen[bytes] | None = None
    pumps: list[threading.Thread] = []
    with open(log_path, "ab") as log:
        try:
            child = subprocess.Popen(
                argv,
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            forwarder.attach(child.pid)
            lock = threading.Lock()
            for stream, terminal in ((child.stdout, sys.stdout), (child.stderr, sys.stderr)):
                target = None if quiet else getattr(terminal, "buffer", None)
                pump = threading.Thread(
                    target=_tee, args=(stream, target, log, lock), daemon=True
                )
                pump.start()
                pumps.append(pump)
            returncode = child.wait()
        finally:
            forwarder.cancel()
            if child is not None:
                # Leftovers of the tree (a daemon that outlived the task) would hold the
                # pipes open and keep running; a stopped container leaves nothing either.
                _kill_group(child.pid, signal.SIGKILL)
            for pump in pumps:
                pump.join()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return exit_code_of(returncode)
