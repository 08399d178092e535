"""A scripted HTTP server that plays the answers the sandbox cannot give, and the API client as the
client tests make it: backoff sleeps recorded instead of waited, quick backoff, no run-wide outage watcher."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from conftest import TEST_KEY

from provisioner.api.client import CreditsApi

FAST = {"backoff_base": 0.001, "backoff_cap": 0.004}
# The client on its own: each request gives up after its attempts, with no run-wide outage watcher
# (tests/api/test_outage.py tests the watcher).
ALONE = {"give_up_after": None}


class SleepRecorder:
    """Stands in for time.sleep: records each delay; an optional hook runs on the n-th call."""

    def __init__(self, on_call: dict | None = None):
        self.delays: list[float] = []
        self._on_call = on_call or {}
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.delays.append(seconds)
            hook = self._on_call.get(len(self.delays))
        if hook:
            hook()


def make_api(url: str, key: str = TEST_KEY, **options) -> CreditsApi:
    options.setdefault("sleep", SleepRecorder())
    options.setdefault("timeout", (1.0, 2.0))
    for name, value in {**FAST, **ALONE}.items():
        options.setdefault(name, value)
    return CreditsApi(url, key, **options)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ScriptedServer:
    """A real HTTP server that answers from a script of (status, headers, body), the last repeating.

    A body is sent as JSON, or as it is when given as bytes.
    """

    def __init__(self, *script: tuple[int, dict, dict]):
        self.script = list(script)
        self.received: list[tuple[str, str, bytes]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self):
                length = int(self.headers.get("Content-Length", "0"))
                owner.received.append((self.command, self.path, self.rfile.read(length)))
                status, headers, body = owner.script[min(len(owner.received), len(owner.script)) - 1]
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PUT = do_GET

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ScriptedServer:
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()


def error_body(status: int, message: str) -> tuple[int, dict, dict]:
    return status, {}, {"error": "e", "message": message}
