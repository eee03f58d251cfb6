"""training.console.quiet_stdout: a library's chatter is dropped, the launcher's other threads
still print. Under contextlib.redirect_stdout (the old code) the line another thread printed
while rsl-rl's per-iteration log was silenced went to /dev/null as well: CI lost the one
"video: cannot render ..." line that way."""

from __future__ import annotations

import sys
import threading

import pytest

from training.console import quiet_stdout


def test_a_line_another_thread_prints_during_a_quiet_block_is_kept(
        capfd: pytest.CaptureFixture[str]) -> None:
    inside, printed = threading.Event(), threading.Event()

    def watcher() -> None:  # as a video watcher or an upload thread does
        inside.wait(10)
        print("video: cannot render here; training goes on without videos", flush=True)
        printed.set()

    thread = threading.Thread(target=watcher)
    thread.start()
    stdout_before = sys.stdout
    with quiet_stdout():
        print("################ Learning iteration 1/3 ################", flush=True)
        inside.set()
        assert printed.wait(10)
        with quiet_stdout():  # nested (MLflow's save_model inside a quiet export)
            print("Model saved", flush=True)
        print("Mean reward: 6.7", flush=True)
    thread.join(10)
    print("it 1/3 | reward 6.7", flush=True)

    out = capfd.readouterr().out.splitlines()
    assert out == ["video: cannot render here; training goes on without videos",
                   "it 1/3 | reward 6.7"]
    assert sys.stdout is stdout_before  # nothing left installed after the block

