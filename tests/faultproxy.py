"""A real HTTP proxy in front of the sandbox that misbehaves on cue, for money-safety tests.

Adapted from the money-safety review's reproductions. A test gives a rule:
``rule(request) -> action`` for every request, where ``request`` has ``method``, ``path``,
``body`` (the JSON sent, or None) and ``number`` (1-based count of that method). Actions:

- ``Forward(...)``        pass it on; optionally run a hook once the sandbox answered, hold the
                          answer until a condition holds, or rewrite the JSON answer (or give an
                          ``Answer`` instead: the sandbox did the work, the client hears otherwise);
- ``Answer(status, ...)`` answer without passing it on: nothing happens upstream;
- ``DropThenCommit(s)``   close the connection unanswered, while the request is still "being
                          processed": the sandbox receives it ``s`` seconds later.

A dropped request is never committed by a timer: it reaches the sandbox just before the first
request that arrives once it is due (so a lookup made after the due time always sees it, one made
before never does), or when the test calls ``commit_late_requests()``. No race decides an outcome.

``date_shift`` moves the Date header of every answer (another frontend's clock, or one stepped by NTP).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

import requests

FORWARDED_HEADERS = ("authorization", "content-type", "accept")
HOP_BY_HOP = ("content-length", "connection", "transfer-encoding", "server", "date", "keep-alive")
INJECTED_ERROR = {"error": "injected", "message": "injected by proxy"}


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    path: str
    body: dict | None
    number: int


@dataclass
class Forward:
    after_upstream: Callable[[], None] | None = None  # runs once the sandbox has answered
    answer_when: Callable[[], bool] | None = None  # hold the answer until this is true...
    wait_limit: float = 2.0  # ...or this many seconds went by
    rewrite: Callable[[dict], dict | Answer] | None = None  # edits the JSON answer, or answers otherwise


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict = field(default_factory=dict)
    body: dict | None = None  # None: an error "injected by proxy"


@dataclass(frozen=True)
class DropThenCommit:
    after: float


Rule = Callable[[ProxiedRequest], "Forward | Answer | DropThenCommit"]


def forward_everything(request: ProxiedRequest) -> Forward:
    return Forward()


class LoopbackServer:
    """A threaded HTTP server on a free loopback port, served while the ``with`` block runs."""

    def _listen(self, handler) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()


class FaultProxy(LoopbackServer):
    def __init__(self, upstream: str, rule: Rule = forward_everything):
        self.upstream = upstream
        self.rule = rule
        self.log: list[tuple[str, str, str]] = []  # (method, path, what the proxy did)
        self._counts: dict[str, int] = {}
        self._late: list[tuple[float, Callable[[], None]]] = []  # (due, send) of dropped requests
        self.date_shift = 0.0  # seconds the Date of every answer is ahead of this machine's clock
        self._guard = threading.Lock()
        self._commit_guard = threading.Lock()
        self._session = requests.Session()
        self._listen(self._handler_class())

    def __exit__(self, *exc_info) -> None:
        super().__exit__(*exc_info)
        self._session.close()

    def posts(self, outcome: str | None = None) -> int:
        return sum(1 for method, _, what in self.log if method == "POST" and (outcome is None or what == outcome))

    def commit_late_requests(self) -> None:
        """Lets every dropped request reach the sandbox now, due or not."""
        self._commit_due(until=float("inf"))

    # --- inside ---------------------------------------------------------------------------

    def _commit_due(self, until: float) -> None:
        with self._commit_guard:  # held while sending: whoever comes next sees them committed
            with self._guard:
                due = [item for item in self._late if item[0] <= until]
                self._late = [item for item in self._late if item[0] > until]
            for _, send in sorted(due, key=lambda item: item[0]):
                send()

    def _number(self, method: str) -> int:
        with self._guard:
            self._counts[method] = self._counts.get(method, 0) + 1
            return self._counts[method]

    def _note(self, method: str, path: str, what: str) -> None:
        with self._guard:
            self.log.append((method, path, what))

    def _handler_class(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args) -> None:
                pass

            def date_time_string(self, timestamp: float | None = None) -> str:
                return super().date_time_string((time.time() if timestamp is None else timestamp) + proxy.date_shift)

            def do_GET(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
                proxy._commit_due(until=time.monotonic())
                request = ProxiedRequest(
                    self.command, self.path, json.loads(raw) if raw else None, proxy._number(self.command)
                )
                action = proxy.rule(request)
                headers = {name: value for name, value in self.headers.items() if name.lower() in FORWARDED_HEADERS}

                def send() -> requests.Response:
                    return proxy._session.request(self.command, proxy.upstream + self.path, data=raw, headers=headers)

                if isinstance(action, DropThenCommit):
                    with proxy._guard:
                        proxy._late.append((time.monotonic() + action.after, send))
                    proxy._note(self.command, self.path, "dropped")
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                elif isinstance(action, Answer):
                    proxy._note(self.command, self.path, f"answered {action.status}")
                    self._reply(action.status, action.headers, action.body or INJECTED_ERROR)
                else:
                    self._forward(action, send)

            do_POST = do_PUT = do_GET

            def _forward(self, action: Forward, send: Callable[[], requests.Response]) -> None:
                upstream = send()
                proxy._note(self.command, self.path, f"forwarded {upstream.status_code}")
                if action.after_upstream is not None:
                    action.after_upstream()
                if action.answer_when is not None:
                    deadline = time.monotonic() + action.wait_limit
                    while not action.answer_when() and time.monotonic() < deadline:
                        time.sleep(0.01)
                status = upstream.status_code
                headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
                body = upstream.content
                if action.rewrite is not None:
                    body = action.rewrite(upstream.json())
                    if isinstance(body, Answer):
                        status, headers, body = body.status, body.headers, body.body or INJECTED_ERROR
                self._reply(status, headers, body)

            def _reply(self, status: int, headers: dict, body) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if "content-type" not in {name.lower() for name in headers}:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up waiting: its timeout, not ours

        return Handler


class ListingServer(LoopbackServer):
    """A real HTTP server that answers every listing from ``pages(page_number) -> listing``.

    ``listing`` is the APICreditBatchesByClientAndCreditAccount object; ``requests_served``
    counts the listings asked for.
    """

    def __init__(self, pages: Callable[[int], dict]):
        self.pages = pages
        self.requests_served = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                owner.requests_served += 1
                page = int(self.path.split("page=")[1].split("&")[0]) if "page=" in self.path else 1
                data = json.dumps({"data": {"APICreditBatchesByClientAndCreditAccount": owner.pages(page)}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._listen(Handler)
