"""The sandbox as a real HTTP server: `with Sandbox() as sandbox: ... sandbox.url`."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from provisioner.sandbox.app import SandboxApp
from provisioner.sandbox.faults import FaultInjector, Faults
from provisioner.sandbox.messages import Request, Response
from provisioner.sandbox.quirks import Quirks
from provisioner.sandbox.ratelimit import RateLimiter
from provisioner.sandbox.store import BatchStore, present
from provisioner.sandbox.timestamps import now_text
from provisioner.sandbox.validation import DIGITS

_MAX_BODY_BYTES = 1 << 20


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a requests.Session reuses its connection
    # Headers and body go out in two writes; with Nagle on, delayed ACKs would
    # stall every keep-alive request by ~40 ms.
    disable_nagle_algorithm = True
    server: _SandboxHTTPServer

    def version_string(self) -> str:
        return "ti-credits-sandbox/1.0"

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            authorization=self.headers.get("Authorization"),
            body=self._read_body(),
        )
        self._deliver(self.server.app.handle(request))

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length", "0")
        if self.headers.get("Transfer-Encoding") or not DIGITS.match(length) or int(length) > _MAX_BODY_BYTES:
            self.close_connection = True  # the unread body would corrupt the next request
            return None
        return self.rfile.read(int(length))

    def _deliver(self, response: Response) -> None:
        if response.delay > 0:
            time.sleep(response.delay)  # no lock is held here
        if response.drop_connection:
            self._drop_connection()
            return
        body = json.dumps(response.payload).encode() if response.payload is not None else b""
        try:
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:  # the client went away; nothing left to tell it
            self.close_connection = True

    def _drop_connection(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def log_message(self, format: str, *args) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


class _SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: SandboxApp, verbose: bool) -> None:
        self.app = app
        self.verbose = verbose
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_open_connections(self) -> None:
        """Hang up idle keep-alive connections so no handler outlives the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        # Clients hanging up mid-request are routine under chaos; stay quiet unless asked.
        if self.verbose:
            super().handle_error(request, client_address)


# ---------------------------------------------------------------- public entry point


class Sandbox:
    """A local Thought Industries credits API: `with Sandbox() as sandbox: ... sandbox.url`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        data_path: str | Path | None = None,
        api_key: str | None = None,
        rate_limit: int | None = None,
        burst: int | None = None,
        faults: Faults | None = None,
        page_size: int = 25,
        known_clients: set[str] | None = None,
        verbose: bool = False,
        quirks: Quirks | None = None,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self._address = (host, port)
        self._verbose = verbose
        self._store = BatchStore(data_path)
        self._faults = FaultInjector(faults or Faults())
        self._app = SandboxApp(
            store=self._store,
            api_key=api_key,
            limiter=RateLimiter(rate_limit, burst),
            faults=self._faults,
            page_size=page_size,
            known_clients=known_clients,
            verbose=verbose,
            quirks=quirks,
        )
        self._server: _SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the sandbox has not been started")
        return self._url

    @property
    def request_log(self) -> list[tuple[str, str, int]]:
        """(method, path without query, status) per request; status 0 = connection dropped."""
        return self._app.request_log

    @property
    def stats(self) -> Counter:
        """A snapshot: "requests", "creates", "updates", one key per status ("201", "429", ...),
        "injected_429", "injected_errors", "errors_after_commit", "drops". Missing keys read 0."""
        return self._app.stats()

    @property
    def faults(self) -> Faults:
        return self._faults.current

    def set_faults(self, faults: Faults) -> None:
        """Swap the faults at run time; restarts the random sequence and ends any 429 storm."""
        self._faults.replace(faults)

    def start(self) -> Sandbox:
        server = self._bind()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"sandbox {self.url}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server = self._server
        if server is None:
            return
        server.shutdown()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._close(server)

    def serve_forever(self) -> None:
        server = self._bind()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self._close(server)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def all_batches(self, client_id: str | None = None) -> list[dict]:
        """Every stored batch (of one client, if given), as the API shows them, oldest first."""
        now = now_text()
        return [present(batch, now) for batch in self._store.all(client_id)]

    def _bind(self) -> _SandboxHTTPServer:
        if self._server is not None:
            raise RuntimeError("the sandbox is already running")
        self._server = _SandboxHTTPServer(self._address, self._app, self._verbose)
        host, port = self._server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        self._url = f"http://{host}:{port}"
        return self._server

    def _close(self, server: _SandboxHTTPServer) -> None:
        server.server_close()
        server.close_open_connections()
        self._server = None
        self._store.close()
