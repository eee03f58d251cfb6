"""Run a task's command, or a group's tasks side by side, as child process trees: output teed
live, signals forwarded.

Each child gets its own session (process group), so the terminal's Ctrl-C reaches only us; we
forward it once to every group, like a pod's SIGTERM on the cluster, and if a tree is still
alive after a grace period (the runtime saves a checkpoint first), we kill it. Whatever a tree
leaves behind when its task exits is killed too, as when a container stops. A group ends as
OSMO ends one: when its lead ends, or when a task fails and the group does not ignore it; the
tasks still running then get SIGTERM, and SIGKILL after the grace period.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO, NamedTuple

# Time the runtime gets after a forwarded signal: enough to finish an iteration, save a
# checkpoint and upload it to a local store.
DEFAULT_GRACE_SECONDS = 60.0
# After the lead of a group ended well: how long the other tasks may take to end by themselves
# before they are stopped (on OSMO the lead's end is the group's end).
SETTLE_SECONDS = 10.0


class _Terminal:
    """One of our own streams, shared by every task of a run. Without a prefix, chunks pass
    through as they come (progress written with "\r" shows as it is written); with one (a
    group of tasks), whole lines only, each prefixed with its task's name, so that two tasks'
    output never mixes within a line."""

    def __init__(self, stream: BinaryIO | None, lock: threading.Lock) -> None:
        self._stream = stream
        self._lock = lock

    def write(self, chunk: bytes) -> None:
        if self._stream is None:
            return
        with self._lock:
            try:
                self._stream.write(chunk)
                self._stream.flush()
            except (OSError, ValueError):  # BrokenPipeError, or a closed stream
                # The reader went away (`| head`): keep draining into the log, or the
                # task would block on a full pipe.
                self._stream = None


def _complete_lines(pending: bytes) -> tuple[bytes, bytes]:
    """(the complete lines of `pending`, the rest); "\r" ends a line like "\n"."""
    end = max(pending.rfind(b"\n"), pending.rfind(b"\r")) + 1
    return pending[:end], pending[end:]


def _prefixed(lines: bytes, prefix: bytes) -> bytes:
    return b"".join(prefix + line for line in lines.splitlines(keepends=True))


def _tee(source: BinaryIO, terminal: _Terminal, log: BinaryIO, lock: threading.Lock,
         prefix: bytes = b"") -> None:
    fd = source.fileno()
    pending = b""
    while chunk := os.read(fd, 65536):
        if prefix:
            lines, pending = _complete_lines(pending + chunk)
            if lines:
                terminal.write(_prefixed(lines, prefix))
        else:
            terminal.write(chunk)
        with lock:
            log.write(chunk)
            log.flush()
    if pending:
        terminal.write(_prefixed(pending + b"\n", prefix))
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
    """Our SIGINT/SIGTERM handler while the tasks run: the first signal goes to every task's
    process group and starts the grace timer; a second one kills them at once. Installed
    before the children start, so a Ctrl-C in between is held and forwarded, never lost.
    `stop()` does the same on our own account (a group whose task failed ends the others)."""

    def __init__(self, grace_seconds: float, quiet: bool) -> None:
        self._grace_seconds = grace_seconds
        self._quiet = quiet
        self._pgids: list[int] = []
        self._started = False  # every child has been started (attach_done)
        self._pending: int | None = None
        self._killer: threading.Timer | None = None

    def attach(self, pgid: int) -> None:
        self._pgids.append(pgid)

    def attach_done(self) -> None:
        self._started = True
        if self._pending is not None:
            self._forward(self._pending)

    def __call__(self, signum: int, _frame: object) -> None:
        if not self._started:
            self._pending = signum
        elif self._killer is not None:
            # A second Ctrl-C: the user does not want to wait for the grace period.
            self._kill_all(signal.SIGKILL)
        else:
            if not self._quiet:
                print(f"\n{signal.Signals(signum).name}: stopping the task (killed after "
                      f"{self._grace_seconds:.0f} s; press Ctrl-C again to kill it now)",
                      file=sys.stderr, flush=True)
            self._forward(signum)

    def stop(self) -> None:
        """SIGTERM to every task, as OSMO ends a group's other pods; killed after the grace."""
        if self._killer is None:
            self._forward(signal.SIGTERM)

    def _kill_all(self, sig: int) -> None:
        for pgid in self._pgids:
            _kill_group(pgid, sig)

    def _forward(self, signum: int) -> None:
        self._kill_all(signum)
        self._killer = threading.Timer(self._grace_seconds, self._kill_all, (signal.SIGKILL,))
        self._killer.daemon = True
        self._killer.start()

    def cancel(self) -> None:
        if self._killer is not None:
            self._killer.cancel()


class Member(NamedTuple):
    """One task of a local run: what to start, where, and where its output goes."""

    name: str
    argv: list[str]
    env: Mapping[str, str]
    log_path: Path
    cwd: Path


def _group_exit_code(finished: int, code: int, lead: int, ignore_nonlead_status: bool
                     ) -> int | None:
    """The group's exit code once task `finished` exited with `code`, or None while the
    others decide: OSMO's rules (docs/osmo.md, Groups) - the lead's end is the group's end; a
    non-lead task's failure ends the group unless ignoreNonleadStatus."""
    if finished == lead:
        return code
    if code != 0 and not ignore_nonlead_status:
        return code
    return None


def run_group(
    members: Sequence[Member],
    *,
    quiet: bool,
    lead: int = 0,
    ignore_nonlead_status: bool = True,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
) -> tuple[int, list[int]]:
    """Run every member at once until the group is decided (see _group_exit_code), end the
    others (SIGTERM, SIGKILL after the grace period) and return (the group's exit code, each
    member's own). Output goes to our stdout and stderr (unless
    quiet; prefixed with the task's name when there are several) and to each member's log.

    Call from the main thread (signal handlers can only be installed there)."""
    forwarder = _SignalForwarder(grace_seconds, quiet)
    previous = {sig: signal.signal(sig, forwarder) for sig in (signal.SIGINT, signal.SIGTERM)}
    children: list[subprocess.Popen[bytes]] = []
    pumps: list[threading.Thread] = []
    exited: queue.Queue[tuple[int, int]] = queue.Queue()
    codes: list[int | None] = [None] * len(members)
    terminals = [_Terminal(None if quiet else getattr(stream, "buffer", None), threading.Lock())
                 for stream in (sys.stdout, sys.stderr)]
    logs: list[BinaryIO] = []
    group_code: int | None = None
    try:
        for index, member in enumerate(members):
            logs.append(open(member.log_path, "ab"))  # closed in the finally below
            child = subprocess.Popen(
                member.argv,
                env=dict(member.env),
                cwd=member.cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            children.append(child)
            forwarder.attach(child.pid)
            prefix = f"[{member.name}] ".encode() if len(members) > 1 else b""
            lock = threading.Lock()
            for stream, terminal in zip((child.stdout, child.stderr), terminals, strict=True):
                pumps.append(threading.Thread(
                    target=_tee, args=(stream, terminal, logs[-1], lock, prefix), daemon=True))
            waiter = threading.Thread(
                target=lambda i=index, c=child: exited.put((i, c.wait())), daemon=True)
            pumps[-1].start()
            pumps[-2].start()
            waiter.start()
        forwarder.attach_done()
        stop_at = None  # when the tasks still running get SIGTERM
        while None in codes:
            if stop_at is not None and time.monotonic() >= stop_at:
                forwarder.stop()
            try:
                index, returncode = exited.get(timeout=0.2)  # a timeout: signals get through
            except queue.Empty:
                continue
            codes[index] = exit_code_of(returncode)
            if group_code is None:
                group_code = _group_exit_code(index, codes[index], lead, ignore_nonlead_status)
                if group_code is not None:
                    # A failure ends the others at once; after a lead that succeeded they get
                    # a moment to finish by themselves (ranks end together, not at one instant).
                    stop_at = time.monotonic() + (SETTLE_SECONDS if group_code == 0 else 0)
    finally:
        forwarder.cancel()
        for child in children:
            # Leftovers of each tree (a daemon that outlived its task) would hold the pipes
            # open and keep running; a stopped container leaves nothing either.
            _kill_group(child.pid, signal.SIGKILL)
        for pump in pumps:
            pump.join()
        for log in logs:
            log.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    finished = [code or 0 for code in codes]  # every task has exited by now
    return finished[lead] if group_code is None else group_code, finished


def run_task(
    argv: list[str],
    env: Mapping[str, str],
    *,
    log_path: Path,
    cwd: Path,
    quiet: bool,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
) -> int:
    """Run `argv` until it exits and return its exit code: a group of one task."""
    code, _ = run_group([Member("task", argv, env, log_path, cwd)], quiet=quiet,
                        grace_seconds=grace_seconds)
    return code
