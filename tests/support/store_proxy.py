"""A loopback HTTP proxy in front of a real `mlflow server` that makes chosen requests fail the
way a tracking store fails in production:

- ``drop``: the connection closes without an answer (a restarting server, a reset by a load
  balancer); MLflow's client sees a ConnectionError: the store "did not answer";
- ``hang``: no answer for a while, then the connection closes (an overloaded server);
- ``refuse``: an HTTP 403 with an MLflow error body (no permission): the store "answered".

Everything else is forwarded unchanged to the real server, so the code under test talks to a
real MLflow store; only the failures are made here. Plain Python (no pytest).
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class Rule:
    path: re.Pattern[str]
    action: str  # "drop", "hang" or "refuse"
    seconds: float = 0.0  # for "hang"


class StoreProxy:
    def __init__(self, upstream_url: str) -> None:
        upstream = urlsplit(upstream_url)
        self._upstream = (upstream.hostname or "127.0.0.1", upstream.port or 80)
        self.rules: list[Rule] = []
        self.seen: list[tuple[str, str]] = []  # (method, path) of every request
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    proxy.seen.append((self.command, self.path))
                    rule = next((r for r in proxy.rules if r.path.search(self.path)), None)
                if rule is not None and rule.action in ("drop", "hang"):
                    time.sleep(rule.seconds)
                    self.close_connection = True
                    self.connection.close()
                    return
                if rule is not None:  # refuse
                    self._answer(403, json.dumps({"error_code": "PERMISSION_DENIED",
                                                  "message": "refused by the test proxy"}).encode(),
                                 {"Content-Type": "application/json"})
                    return
                connection = http.client.HTTPConnection(*proxy._upstream, timeout=120)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection")}
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
                self._answer(answer.status, data, {k: v for k, v in answer.getheaders() if
                                                   k.lower() not in ("transfer-encoding",
                                                                     "connection",
                                                                     "content-length")})
                connection.close()

            def _answer(self, status: int, data: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def fail(self, path_pattern: str, action: str, seconds: float = 0.0) -> None:
        """Make requests whose path matches path_pattern fail with action from now on."""
        with self._lock:
            self.rules.append(Rule(re.compile(path_pattern), action, seconds))

    def heal(self) -> None:
        with self._lock:
            self.rules.clear()

    def requests_to(self, path_pattern: str) -> int:
        with self._lock:
            return sum(1 for _, path in self.seen if re.search(path_pattern, path))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> StoreProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
