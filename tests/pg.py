"""A real PostgreSQL for the tests: one server per session, one database per test.

The server is pgserver's (PostgreSQL's own binaries from PyPI, listening on a unix socket
only; as root it runs them as a 'pgserver' system user). With PROVISIONER_TEST_PG_URL set
(a role that may CREATE DATABASE), the tests use that server instead. Tests that stop,
restart or reconfigure a server always start one of their own with ``start_server``.

Its fixtures (``pg_server``, ``pg_url``) are loaded for every test by conftest.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import uuid
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

TEST_URL_VARIABLE = "PROVISIONER_TEST_PG_URL"


class Server:
    """A PostgreSQL server the tests can make databases on."""

    def __init__(self, url: str):
        self.admin_url = url

    def url(self, database: str) -> str:
        """The URL of ``database`` on this server, as a user would pass it to --state."""
        parts = urlsplit(self.admin_url)  # (urlunsplit would drop the // of postgresql:///db)
        return f"{parts.scheme}://{parts.netloc}/{database}" + (f"?{parts.query}" if parts.query else "")

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.admin_url, autocommit=True)

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def close(self) -> None:
        pass


class OwnServer(Server):
    """A server of pgserver's binaries in a temporary directory: stopped, restarted, removed at will."""

    def __init__(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: no XDG_RUNTIME_DIR (it uses /tmp instead)
            import pgserver

        self.directory = Path(tempfile.mkdtemp(prefix="provisioner-pg-"))
        # cleanup_mode=None: this class stops the server itself (pgserver's own cleanup loses
        # track of a restarted server and would delete its directory under it).
        self._pgserver = pgserver.get_server(self.directory, cleanup_mode=None)
        super().__init__(self._pgserver.get_uri().replace("postgres:@", "postgres@"))
        with self.admin() as conn:
            # Durability against a power cut is not under test; a crashed server process is (the
            # WAL still reaches the kernel at each commit), so fsync alone can go.
            conn.execute("ALTER SYSTEM SET fsync = off")
            conn.execute("ALTER SYSTEM SET full_page_writes = off")
            conn.execute("SELECT pg_reload_conf()")

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name} STRATEGY FILE_COPY")  # the quicker copy without fsync
        return name

    def pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        from pgserver._commands import POSTGRES_BIN_PATH

        return subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.directory), *args],
            user=self._pgserver.system_user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=check,
            timeout=60,
        )

    def restart(self, mode: str = "immediate") -> None:
        """``immediate`` is a crash of the server (every session cut, recovery from the WAL)."""
        self.pg_ctl("-w", "-m", mode, "restart", "-l", str(self.directory / "log"))

    def stop(self, mode: str = "immediate") -> None:
        self.pg_ctl("-w", "-m", mode, "stop")

    def start(self) -> None:
        """Starts a stopped server as pgserver did: on its unix socket only, no TCP port."""
        socket_directory = self.admin_url.split("host=")[1].split("&")[0]
        self.pg_ctl("-w", "-o", '-h ""', "-o", f"-k {socket_directory}", "-l", str(self.directory / "log"), "start")

    def set_hba(self, lines: str) -> None:
        """Replaces pg_hba.conf (who may connect, and how) and reloads it."""
        (self.directory / "pg_hba.conf").write_text(lines)
        with self.admin() as conn:
            conn.execute("SELECT pg_reload_conf()")

    def close(self) -> None:
        self.pg_ctl("-w", "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_server() -> OwnServer:
    return OwnServer()


@pytest.fixture(scope="session")
def pg_server():
    url = os.environ.get(TEST_URL_VARIABLE)
    if url and urlsplit(url).password:
        # Tests pass URLs on the command line, where provisioner refuses a password: libpq's
        # variable carries it instead, for this process and the CLI processes it starts.
        parts = urlsplit(url)
        os.environ["PGPASSWORD"] = parts.password
        url = urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", "@", 1)))
    server = Server(url) if url else start_server()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh database of the session's server, as a --state URL (no password in it)."""
    name = pg_server.create_database()
    yield pg_server.url(name)
    pg_server.drop_database(name)  # at once: a few hundred databases left over slow the server's removal


class NetworkCut:
    """A TCP front for a server's unix socket that can cut the network the way a real cut does:
    the clients lose their connections while the server keeps their sessions (and their locks),
    until it notices they are gone (``end_sessions``: its keepalive, a minute or so later)."""

    def __init__(self, server: Server):
        import socket

        self.socket_path = os.path.join(server.admin_url.split("host=")[1].split("&")[0], ".s.PGSQL.5432")
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._pairs: list[tuple] = []
        self._lingering: list = []  # the server's side of connections cut
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server_side = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server_side.connect(self.socket_path)
            with self._lock:
                self._pairs.append((client, server_side))
            for source, target in ((client, server_side), (server_side, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    @staticmethod
    def _pipe(source, target) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass

    def cut(self) -> None:
        """Every client connection breaks; the server's side stays open, its sessions alive."""
        import socket

        with self._lock:
            for client, server_side in self._pairs:
                try:
                    client.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                client.close()
                self._lingering.append(server_side)
            self._pairs.clear()

    def end_sessions(self) -> None:
        """The server notices the vanished clients of the cut: their sessions end, their locks go."""
        with self._lock:
            for server_side in self._lingering:
                server_side.close()
            self._lingering.clear()

    def close(self) -> None:
        self._listener.close()
        self.cut()
        self.end_sessions()
