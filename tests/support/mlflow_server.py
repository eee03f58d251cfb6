"""Real MLflow for tests: a `mlflow server` process on 127.0.0.1 and a sqlite store.

The server uses a sqlite backend and serves artifacts itself (`mlflow-artifacts:/`), both in
a temp directory, on a free port. It can be stopped and started again on the same port and
store, which the tracking-outage test uses.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

STARTUP_TIMEOUT_S = 90.0


PORT_BAND = 2000  # ports a process picks from: one band to each pytest-xdist worker


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now, from this process's own band.

    Not the kernel's pick (bind to port 0): that comes from the ephemeral range, shared by
    both xdist workers and by every outgoing connection, so a port one test expects to stay
    its own (a server stopped and started again on it, a port where nothing may answer)
    could be handed to the other worker in between. Bands lie below the ephemeral range
    (32768 up on Linux): the main process 10000-11999, worker gwN 12000 + 2000 N onwards."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    band = 10000 + (PORT_BAND * (1 + int(worker[2:])) if worker.startswith("gw") else 0)
    for port in random.sample(range(band, band + PORT_BAND), PORT_BAND):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port on 127.0.0.1 in {band}-{band + PORT_BAND - 1}")


class MlflowServer:
    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "server.log"
        self._process: subprocess.Popen | None = None

    def start(self) -> MlflowServer:
        self.root.mkdir(parents=True, exist_ok=True)
        command = [
            str(Path(sys.executable).with_name("mlflow")), "server",
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
            "--artifacts-destination", str(self.root / "artifacts"),
        ]
        log = self.log_path.open("ab")
        # Without job execution: MLflow 3.x would otherwise start a job runner and its
        # workers after /health answers, CPU the tests' training runs need (none use jobs).
        # Nor usage telemetry to a public host (the benchmarks start servers outside pytest).
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
               "MLFLOW_DISABLE_TELEMETRY": "true"}
        # Own process group: stop() kills the server and its worker together.
        self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, env=env)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {self.log_path.read_text()[-2000:]}")
            if self.healthy():
                return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"mlflow server not up after {STARTUP_TIMEOUT_S} s")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self._process is None:
            return
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._process.wait(timeout=30)
        self._process = None


@dataclass(frozen=True)
class SqliteStore:
    root: Path
    uri: str


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One real server for the session (start-up takes seconds)."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def restartable_mlflow_server(tmp_path: Path) -> Iterator[MlflowServer]:
    """A server of the test's own, which the test may stop and start again."""
    server = MlflowServer(tmp_path / "mlflow-server").start()
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class ServerRun:
    server: MlflowServer
    client: Any  # mlflow.MlflowClient pointed at the server
    run_id: str


@pytest.fixture
def run_on_own_server(restartable_mlflow_server: MlflowServer,
                      monkeypatch: pytest.MonkeyPatch) -> ServerRun:
    """A fresh run on a server the test may stop and restart. MLflow's own HTTP retries are
    off (as the launcher keeps them low), so the code under test sees an outage at once."""
    import mlflow

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(restartable_mlflow_server.url)
    client = mlflow.MlflowClient()
    run_id = client.create_run(client.create_experiment("outage")).info.run_id
    return ServerRun(restartable_mlflow_server, client, run_id)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> SqliteStore:
    root = tmp_path / "sqlite-store"
    root.mkdir()
    return SqliteStore(root=root, uri=f"sqlite:///{root / 'mlflow.db'}")


class _NotMlflow(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_error(404, "no such page")

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def not_mlflow_server() -> Iterator[str]:
    """The URL of an HTTP server on loopback that answers 404 to everything: a tracking URI
    that points at the wrong service."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotMlflow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
