"""A socket-level guard: any connect() to an address other than 127.0.0.1 / ::1 fails with
PermissionError and is written down, so a test can assert that nothing tried to leave the
machine (a credential chain probing 169.254.169.254, MSAL reaching login.microsoftonline.com).
It wraps the real socket methods; every allowed connection is a real one.

Installed in the test process by tests/azure/conftest.py and in child processes by
support/loopback_guard/sitecustomize.py (PYTHONPATH)."""

from __future__ import annotations

import socket
import threading

ALLOWED_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
refused: list[str] = []
_lock = threading.Lock()
_installed = False


def _host_of(address: object) -> str | None:
    if isinstance(address, tuple) and address and isinstance(address[0], str):
        return address[0]
    return None  # AF_UNIX paths and the like stay local


def install_guard(log_path: str | None = None) -> None:
    global _installed
    if _installed:
        return
    _installed = True
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def check(sock: socket.socket, address: object) -> None:
        host = _host_of(address)
        if sock.family in (socket.AF_INET, socket.AF_INET6) and host not in ALLOWED_HOSTS:
            with _lock:
                refused.append(str(address))
                if log_path:
                    with open(log_path, "a") as log:
                        log.write(f"{address}\n")
            raise PermissionError(f"loopback guard: connect to {address} refused")

    def connect(self: socket.socket, address: object) -> None:
        check(self, address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        check(self, address)
        return real_connect_ex(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
