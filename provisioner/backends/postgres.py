"""The PostgreSQL backend: one state per workspace, shared by every machine that can reach the database.

- The journal is transactions: an intent is committed on its own before its create
  leaves; a result (the resource row, the intent closed) is one transaction.
- The audit trail is its own table, ``history``, written by INSERT only, in the transaction
  of the change each event records (the docs give the grants that keep it append-only).
- The lock (pglock.py) is a session advisory lock per workspace plus a holder row.
  Every write checks, in its own transaction, that this run still holds it. A lost
  connection is re-opened and the lock taken again before anything more is written;
  when that fails the run stops, and the next run resolves the open intents by
  listing, as after a crash.

Tables live in their own schema (default ``provisioner``; ``?schema=NAME`` in the URL
chooses another), created by ``provisioner init`` and versioned.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from json.encoder import encode_basestring
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, unquote_plus, urlsplit

from pydantic import ValidationError

from provisioner.backends import entries
from provisioner.backends.base import (
    CHECKPOINT_SECONDS,
    Backend,
    ClientClaimed,
    LockInfo,
    StateError,
    StateWriter,
    Warn,
)
from provisioner.backends.entries import Entry
from provisioner.backends.pglock import AdvisoryLock
from provisioner.core.audit_trail import FORCE_UNLOCK, Head, Note, seal
from provisioner.core.models import State
from provisioner.core.timestamps import utc_now_text

SCHEMA_VERSION = 2  # 2: the workspace claims and the history tables
DEFAULT_SCHEMA = "provisioner"
# Reconnecting after the database went away (a restart takes a few seconds): attempts and pause.
RECONNECT_ATTEMPTS = 8
RECONNECT_PAUSE = 1.0
# Ask the server to notice a vanished client within about a minute, so its lock is released.
SESSION_SETTINGS = {
    "tcp_keepalives_idle": "30",
    "tcp_keepalives_interval": "10",
    "tcp_keepalives_count": "3",
    "application_name": "provisioner",
}


def is_database_url(location: str) -> bool:
    return location.startswith(("postgresql://", "postgres://"))


URL_EXAMPLE = "postgresql://user@host:5432/dbname"
# A '%' that does not start a %XX escape: libpq refuses it, and its message repeats the token (a password).
BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _split(url: str) -> SplitResult:
    """The one parse of a state URL here; what urllib cannot read is a clear error. Never echoed: it
    may carry a password."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise StateError(
            f"the state URL (--state or PROVISIONER_STATE) cannot be read: {exc}. Expected e.g. {URL_EXAMPLE} "
            "(an IPv6 host in brackets: postgresql://user@[::1]:5432/dbname)."
        ) from None
    if BAD_ESCAPE.search(url):
        raise StateError(
            "the state URL (--state or PROVISIONER_STATE) has a '%' that is not followed by two hex digits: "
            "in a URL, % starts an escape. Write a literal % as %25 (a password p%ss as p%25ss), or put the "
            "password in PGPASSWORD or ~/.pgpass instead."
        )
    return parts


def url_has_password(url: str) -> bool:
    return bool(passwords_in(url))


def passwords_in(url: str) -> list[str]:
    """Every form of the URL's passwords (user:PASSWORD@ and ?password=), as written and decoded."""
    parts = _split(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    written = [userinfo.partition(":")[2]] if at else []
    written += [
        item.partition("=")[2] for item in parts.query.split("&") if unquote(item.partition("=")[0]) == "password"
    ]
    forms = {form for raw in written for form in (raw, unquote(raw), unquote_plus(raw)) if form}
    return sorted(forms, key=len, reverse=True)  # the longest first: one form may contain another


def scrub(message: str, passwords: list[str]) -> str:
    """A driver's message without any password: libpq repeats a token of the URL it cannot read."""
    for password in passwords:
        message = message.replace(password, "***")
    return message


def split_schema(url: str) -> tuple[str, str]:
    """(the URL libpq is given, the schema): ``?schema=`` is ours, not libpq's."""
    parts = _split(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((value for key, value in query if key == "schema"), DEFAULT_SCHEMA)
    return _unsplit(parts._replace(query=_without(parts.query, "schema"))), schema


def _unsplit(parts) -> str:
    """urlunsplit, but keeping '//' before an empty host: postgresql:///db is a local socket, and
    urllib would turn it into postgresql:/db, which libpq cannot read."""
    text = f"{parts.scheme}://{parts.netloc}{parts.path}"
    return text + (f"?{parts.query}" if parts.query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def _without(query: str, name: str) -> str:
    """The query string without parameter ``name``, the rest exactly as the user wrote it (a path in
    ?host=/var/run/postgresql stays readable in every message that repeats the URL)."""
    return "&".join(item for item in query.split("&") if item and unquote(item.split("=", 1)[0]) != name)


def display_url(url: str) -> str:
    """The URL as messages may show it: never a password, from the URL or its query."""
    parts = _split(url)
    # The host part as written: libpq allows several hosts (h1:5432,h2:5433) and IPv6 in brackets,
    # which urllib's hostname and port would mangle or refuse.
    userinfo, at, hosts = parts.netloc.rpartition("@")
    netloc = f"{userinfo.split(':', 1)[0]}@{hosts}" if at else hosts
    return _unsplit(parts._replace(netloc=netloc, query=_without(parts.query, "password")))


class PostgresBackend(Backend):
    def __init__(self, url: str, workspace: str = "default", *, options: str = ""):
        try:
            import psycopg  # imported here: commands on a state file never load the driver
        except ImportError as exc:
            raise StateError(
                f"a postgresql:// state needs the PostgreSQL driver, which is not installed ({_first_line(exc)}). "
                "Install provisioner with it: pip install 'ti-provisioner[postgres]' "
                "(installed with pipx: pipx install --force 'ti-provisioner[postgres]')."
            ) from None

        self._psycopg = psycopg
        self._conninfo, self.schema = split_schema(url)
        self._passwords = passwords_in(url)
        if not self.schema.replace("_", "").isalnum() or not self.schema[0].isalpha():
            raise StateError(f"schema {self.schema!r} in the state URL: use letters, digits and underscores.")
        self.workspace = workspace
        self.name = f"{display_url(self._conninfo)} (schema {self.schema}, workspace {workspace})"
        self._options = options
        self._conn: Any = None
        self._guard = threading.RLock()
        # Set once a write ran out of reconnect attempts: every later write of the run fails at once
        # (each in-flight create would otherwise wait out the whole retry budget in turn).
        self._unreachable: str | None = None
        self.advisory = AdvisoryLock(self)

    def location_options(self) -> str:
        return self._options

    # --- connection --------------------------------------------------------------

    def _connect(self):
        conn = self._psycopg.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=os.environ.get("PGCONNECT_TIMEOUT") or "10",  # libpq judges the value
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )
        # One round trip for all of them: on a distant server each costs a command its latency.
        calls = ", ".join("set_config(%s, %s, false)" for _ in SESSION_SETTINGS)
        conn.execute(f"SELECT {calls}", [item for pair in SESSION_SETTINGS.items() for item in pair])
        return conn

    @property
    def conn(self):
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def close(self) -> None:
        with self._guard:
            if self._conn is not None and not self._conn.closed:
                self._conn.close()
            self._conn = None

    @contextmanager
    def _transaction(self, retryable: bool = False, read_only: bool = False) -> Iterator[Any]:
        """One transaction on the run's connection; database errors become clear state errors
        (a lost connection stays an OperationalError when the caller retries it)."""
        psycopg = self._psycopg
        with self._guard:
            try:
                with self.conn.transaction():
                    if read_only:
                        # One consistent snapshot, even while another run writes.
                        self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    yield self.conn
            except psycopg.OperationalError as exc:
                if retryable:
                    raise
                if self._conn is not None and self._conn.closed:
                    self._conn = None
                raise StateError(
                    f"cannot reach the state database {self.name}: {self._said(exc)}. Check the URL (--state "
                    "or PROVISIONER_STATE), that the server is up, and the password (PGPASSWORD, ~/.pgpass or "
                    "PGSERVICE). Nothing was changed."
                ) from None
            except psycopg.Error as exc:
                raise StateError(f"the state database {self.name} refused a query: {self._said(exc)}") from None

    def _said(self, exc: Exception) -> str:
        """What the driver said, without the password."""
        return scrub(_first_line(exc), self._passwords)

    def _table(self, name: str):
        sql = self._psycopg.sql
        return sql.Identifier(self.schema, name)

    def _query(self, text: str, **tables: str):
        sql = self._psycopg.sql
        return sql.SQL(text).format(**{key: self._table(value) for key, value in tables.items()})

    # --- schema ------------------------------------------------------------------------

    def _schema_version(self, conn) -> int | None:
        exists = conn.execute("SELECT to_regclass(%s)", (f'"{self.schema}".meta',)).fetchone()[0]
        if exists is None:
            return None
        row = conn.execute(self._query("SELECT value FROM {meta} WHERE key = 'schema_version'", meta="meta")).fetchone()
        version = int(row[0]) if row else None
        if version is not None and version > SCHEMA_VERSION:
            raise StateError(
                f"the state database {self.name} was set up by a newer provisioner (schema version {version}; "
                f"this one knows {SCHEMA_VERSION}). Use that release, or a newer one; nothing was changed."
            )
        return version

    def _create_schema(self, conn) -> None:
        sql = self._psycopg.sql
        # Two first runs at once must not race on CREATE TABLE.
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"provisioner schema {self.schema}",))
        if self._schema_version(conn) is not None:
            return
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
        for statement in SCHEMA:
            conn.execute(self._schema_query(statement))
        conn.execute(
            self._query("INSERT INTO {meta} (key, value) VALUES ('schema_version', %s)", meta="meta"),
            (str(SCHEMA_VERSION),),
        )

    def _schema_query(self, statement: str):
        return self._query(
            statement,
            meta="meta",
            workspaces="workspaces",
            resources="resources",
            intents="intents",
            locks="locks",
            claims="client_claims",
            history="history",
        )

    def _upgrade_schema(self) -> None:
        """Brings a schema an older release set up to this release's version (before a run writes)."""
        with self._transaction() as conn:
            version = self._schema_version(conn)
            if version is None or version >= SCHEMA_VERSION:
                return
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"provisioner schema {self.schema}",)
            )
            version = self._schema_version(conn)  # another run may have upgraded it meanwhile
            for step in range(version or SCHEMA_VERSION, SCHEMA_VERSION):
                for statement in UPGRADES[step]:
                    # A table that exists already (an upgrade done by hand, in part) is kept as it is.
                    conn.execute(self._schema_query(statement.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1)))
            conn.execute(
                self._query("UPDATE {meta} SET value = %s WHERE key = 'schema_version'", meta="meta"),
                (str(SCHEMA_VERSION),),
            )

    # --- reading -------------------------------------------------------------------------

    def exists(self) -> bool:
        with self._transaction() as conn:
            return self._workspace_row(conn) is not None

    def _workspace_row(self, conn) -> tuple | None:
        if self._schema_version(conn) is None:
            return None
        return conn.execute(
            self._query(
                "SELECT lineage, serial, instance, digest FROM {workspaces} WHERE name = %s", workspaces="workspaces"
            ),
            (self.workspace,),
        ).fetchone()

    def read(self) -> State:
        state, _, _ = self._read_with_digest()
        return state

    def _read_with_digest(self) -> tuple[State, str, Head]:
        with self._transaction(read_only=True) as conn:
            row = self._workspace_row(conn)
            if row is None:
                raise self.missing_error()
            lineage, serial, instance, digest = row
            resources = self._aggregate(conn, "resources", "resource")
            pending = self._aggregate(conn, "intents", "intent")
            head = self._history_head(conn)
        try:
            state = State.model_validate(
                {"lineage": lineage, "serial": serial, "instance": instance, "resources": resources, "pending": pending}
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"])
            raise StateError(
                f"{self.name}: the state is damaged{f' at {field!r}' if field else ''}: "
                f"{first['msg'].removeprefix('Value error, ')}. Nothing was changed."
            ) from None
        return state, digest, head

    def _history_head(self, conn) -> Head:
        if (self._schema_version(conn) or 0) < SCHEMA_VERSION:
            return Head()
        row = conn.execute(
            self._query(
                "SELECT seq, event->>'digest' FROM {history} WHERE workspace = %s ORDER BY seq DESC LIMIT 1",
                history="history",
            ),
            (self.workspace,),
        ).fetchone()
        return Head() if row is None else Head(row[0], row[1])

    def read_history(self) -> list[dict]:
        with self._transaction(read_only=True) as conn:
            if self._workspace_row(conn) is None:
                raise self.missing_error()
            if (self._schema_version(conn) or 0) < SCHEMA_VERSION:
                return []
            rows = conn.execute(
                self._query("SELECT event::text FROM {history} WHERE workspace = %s ORDER BY seq", history="history"),
                (self.workspace,),
            ).fetchall()
        return [json.loads(text) for (text,) in rows]

    def insert_events(self, conn, events: list[dict]) -> None:
        """In the transaction of their change. ON CONFLICT: a retry after a commit whose answer was lost
        (this run holds the lock: the row there is this very event); INSERT privilege is all it needs."""
        if not events:
            return
        statement = self._query(
            "INSERT INTO {history} (workspace, seq, event) VALUES (%s, %s, %s) ON CONFLICT (workspace, seq) DO NOTHING",
            history="history",
        )
        rows = [
            (self.workspace, event["seq"], json.dumps(event, sort_keys=True, separators=(",", ":"))) for event in events
        ]
        if len(rows) == 1:
            conn.execute(statement, rows[0])
        else:
            with conn.cursor() as cursor:
                cursor.executemany(statement, rows)

    def _aggregate(self, conn, table: str, column: str) -> dict:
        # The rows as text, joined into one JSON object here: a single parse instead of one per row,
        # and cheaper than having the server build that object (json_object_agg), which made the
        # read of 10,000 batches take half again as long.
        rows = conn.execute(
            self._query(f"SELECT address, {column}::text FROM {{t}} WHERE workspace = %s", t=table), (self.workspace,)
        ).fetchall()
        return json.loads("{" + ",".join(f"{encode_basestring(address)}:{text}" for address, text in rows) + "}")

    def written_at(self) -> datetime | None:
        with self._transaction() as conn:
            if self._schema_version(conn) is None:
                return None
            row = conn.execute(
                self._query("SELECT updated_at FROM {workspaces} WHERE name = %s", workspaces="workspaces"),
                (self.workspace,),
            ).fetchone()
        return row[0] if row else None

    def create(self) -> State:
        state = State()
        already = StateError(f"a state already exists at {self.name}; nothing was changed.")
        try:
            with self._transaction() as conn:
                self._create_schema(conn)
                if self._workspace_row(conn) is not None:
                    raise already
                self._insert_workspace(conn, state)
        except StateError as error:
            # Two inits at once: the one that lost the race meets the other's row.
            if error is not already and "duplicate key" in str(error):
                raise already from None
            raise
        return state

    def _insert_workspace(self, conn, state: State) -> None:
        conn.execute(
            self._query(
                "INSERT INTO {workspaces} (name, lineage, serial, instance, digest) VALUES (%s, %s, %s, %s, %s)",
                workspaces="workspaces",
            ),
            (self.workspace, state.lineage, state.serial, state.instance, state.content_digest()),
        )

    # --- the lock (pglock.py) ------------------------------------------------------------

    def lock(self, command: str, timeout: float = 0.0, warn: Warn | None = None) -> AbstractContextManager[LockInfo]:
        return self.advisory.held(command, timeout, warn)

    def force_unlock(self, lock_id: str, run: Mapping[str, object] | None = None) -> LockInfo:
        self._upgrade_schema()

        def record(conn, holder: LockInfo) -> None:
            note = Note(
                FORCE_UNLOCK,
                detail=f"lock {holder.id} of {holder.command} by {holder.user}@{holder.host}, pid {holder.pid}",
            )
            self.insert_events(conn, [seal(note, run or {}, utc_now_text(), "local", self._history_head(conn))])

        return self.advisory.force_unlock(lock_id, with_removal=record)

    # --- writing ---------------------------------------------------------------------------

    def open_writer(self) -> PostgresWriter:
        self._upgrade_schema()
        state, digest, head = self._read_with_digest()
        return PostgresWriter(self, state, digest, head=head)

    def write(self, statements: Callable[[Any], None]) -> None:
        """One transaction under the lock; a broken connection is re-opened (lock taken again) and
        the transaction retried, for as long as a database restart takes."""
        psycopg = self._psycopg
        if self._unreachable is not None:
            raise StateError(self._unreachable)
        for attempt in range(1, RECONNECT_ATTEMPTS + 1):
            try:
                with self._guard:
                    if self.conn is not self.advisory.locked_on:  # a new connection: its session lacks the lock
                        with self._transaction(retryable=True) as conn:
                            self.advisory.reclaim(conn)
                        self.advisory.locked_on = conn
                    with self._transaction(retryable=True) as conn:
                        self.advisory.check(conn)
                        statements(conn)
                return
            except psycopg.OperationalError as exc:
                if attempt == RECONNECT_ATTEMPTS:
                    self._unreachable = (
                        f"the state database {self.name} is unreachable ({self._said(exc)}); this run stopped "
                        "writing. Nothing recorded so far is lost; run the command again once the database is "
                        "back: open creates are resolved by listing."
                    )
                    raise StateError(self._unreachable) from None
                time.sleep(RECONNECT_PAUSE)
                self._drop_connection()  # the next attempt connects anew and takes the lock again

    def _drop_connection(self) -> None:
        with self._guard:
            try:
                if self._conn is not None:
                    self._conn.close()
            except self._psycopg.Error:
                pass
            self._conn = None


class PostgresWriter(StateWriter):
    def __init__(
        self,
        backend: PostgresBackend,
        state: State,
        saved_digest: str,
        checkpoint_seconds: float = CHECKPOINT_SECONDS,
        head: Head | None = None,
    ):
        self.backend = backend
        unsaved = saved_digest != state.content_digest()
        super().__init__(state, checkpoint_seconds, unsaved=unsaved, head=head)
        if unsaved:
            self.checkpoint()  # a run that was killed recorded things: they move the serial now

    @property
    def name(self) -> str:
        return self.backend.name

    def _persist(self, entry: Entry) -> None:
        store = STATEMENTS.get(type(entry))
        if store is None:
            raise StateError(f"unknown state change {entry.op!r}")
        backend = self.backend

        def statements(conn) -> None:
            store(backend, conn, entry)
            backend.insert_events(conn, list(entry.events))

        backend.write(statements)

    def confirm_lock(self) -> None:
        """The advisory lock is held by this run's live session and the holder row is still its own:
        one empty write, which checks both (a lost session is reconnected and the lock taken again
        only while the holder row is still ours and no other run holds it)."""
        self.backend.write(lambda conn: None)

    def claim_client(self, instance: str, client_id: str) -> None:
        """The client's batches on ``instance`` are this workspace's to create: the claim is recorded the
        first time, and a client another workspace of this database claimed is refused."""
        backend = self.backend
        key = client_id.lower()
        found: list[tuple] = []

        def statements(conn) -> None:
            conn.execute(
                backend._query(
                    "INSERT INTO {claims} (instance, client_id, workspace) VALUES (%s, %s, %s) "
                    "ON CONFLICT (instance, client_id) DO NOTHING",
                    claims="client_claims",
                ),
                (instance, key, backend.workspace),
            )
            found.append(
                conn.execute(
                    backend._query(
                        "SELECT workspace, claimed_at FROM {claims} WHERE instance = %s AND client_id = %s",
                        claims="client_claims",
                    ),
                    (instance, key),
                ).fetchone()
            )

        backend.write(statements)
        owner, since = found[-1]
        if owner != backend.workspace:
            raise ClientClaimed(client_claimed_message(client_id, instance, owner, since, backend))

    def release_client(self, client_id: str) -> bool:
        """Gives up this workspace's claim on a client (on any instance); False when it had none."""
        backend = self.backend
        released: list[int] = []

        def statements(conn) -> None:
            cursor = conn.execute(
                backend._query("DELETE FROM {claims} WHERE client_id = %s AND workspace = %s", claims="client_claims"),
                (client_id.lower(), backend.workspace),
            )
            released.append(cursor.rowcount)

        backend.write(statements)
        return bool(released and released[-1])

    def _save(self, state: State, changed: bool) -> None:
        if not changed:
            return
        backend = self.backend
        backend.write(
            lambda conn: conn.execute(
                backend._query(
                    "UPDATE {workspaces} SET serial = %s, digest = %s, updated_at = now() WHERE name = %s",
                    workspaces="workspaces",
                ),
                (state.serial, state.content_digest(), backend.workspace),
            )
        )

    def replace(self, state: State, events: list[dict] | None = None, note: Note | None = None) -> None:
        backend = self.backend
        workspace = backend.workspace
        pushed = self._pushed_events(events, note)

        def statements(conn) -> None:
            backend.insert_events(conn, pushed)
            for table in ("resources", "intents"):
                conn.execute(backend._query("DELETE FROM {t} WHERE workspace = %s", t=table), (workspace,))
            with conn.cursor() as cursor:
                cursor.executemany(
                    backend._query("INSERT INTO {t} (workspace, address, resource) VALUES (%s, %s, %s)", t="resources"),
                    [
                        (workspace, address, json.dumps(resource.model_dump(mode="json")))
                        for address, resource in state.resources.items()
                    ],
                )
                cursor.executemany(
                    backend._query("INSERT INTO {t} (workspace, address, intent) VALUES (%s, %s, %s)", t="intents"),
                    [
                        (workspace, address, json.dumps(intent.model_dump(mode="json", exclude_none=True)))
                        for address, intent in state.pending.items()
                    ],
                )
            conn.execute(
                backend._query(
                    "UPDATE {workspaces} SET lineage = %s, serial = %s, instance = %s, digest = %s, "
                    "updated_at = now() WHERE name = %s",
                    workspaces="workspaces",
                ),
                (state.lineage, state.serial, state.instance, state.content_digest(), workspace),
            )

        with self._guard:
            backend.write(statements)
            if pushed:
                self.head = Head.of(pushed[-1])
            self._saved_as(state.model_copy(deep=True))


# The statements that make each kind of change in one transaction (its events are inserted with it).


def _store_intent(backend: PostgresBackend, conn, entry: entries.Intent) -> None:
    conn.execute(
        backend._query(
            "INSERT INTO {intents} (workspace, address, intent) VALUES (%s, %s, %s) "
            "ON CONFLICT (workspace, address) DO UPDATE SET intent = excluded.intent",
            intents="intents",
        ),
        (backend.workspace, entry.intent["address"], json.dumps(entry.intent)),
    )


def _store_record(backend: PostgresBackend, conn, entry: entries.Record) -> None:
    conn.execute(
        backend._query(
            "INSERT INTO {resources} (workspace, address, resource) VALUES (%s, %s, %s) "
            "ON CONFLICT (workspace, address) DO UPDATE SET resource = excluded.resource",
            resources="resources",
        ),
        (backend.workspace, entry.address, json.dumps(entry.resource)),
    )
    _delete(backend, conn, "intents", entry.address)


def _store_record_all(backend: PostgresBackend, conn, entry: entries.RecordAll) -> None:
    # COPY into a table of this transaction, then one INSERT: a row at a time, 50,000 batches
    # took several times as long.
    conn.execute("CREATE TEMPORARY TABLE recorded_all (address text, resource json) ON COMMIT DROP")
    with conn.cursor() as cursor:
        with cursor.copy("COPY recorded_all (address, resource) FROM STDIN") as copy:
            for address, resource in entry.resources.items():
                copy.write_row((address, json.dumps(resource)))
    conn.execute(
        backend._query(
            "INSERT INTO {resources} (workspace, address, resource) "
            "SELECT %s, address, resource FROM recorded_all "
            "ON CONFLICT (workspace, address) DO UPDATE SET resource = excluded.resource",
            resources="resources",
        ),
        (backend.workspace,),
    )
    conn.execute(
        backend._query(
            "DELETE FROM {intents} WHERE workspace = %s AND address IN (SELECT address FROM recorded_all)",
            intents="intents",
        ),
        (backend.workspace,),
    )
    if entry.instance is not None:
        _set_instance(backend, conn, entry.instance)


def _store_clear(backend: PostgresBackend, conn, entry: entries.Clear) -> None:
    _delete(backend, conn, "intents", entry.address)


def _store_forget(backend: PostgresBackend, conn, entry: entries.Forget) -> None:
    _delete(backend, conn, "resources", entry.address)


def _store_move(backend: PostgresBackend, conn, entry: entries.Move) -> None:
    conn.execute(
        backend._query(
            "UPDATE {resources} SET address = %s WHERE workspace = %s AND address = %s",
            resources="resources",
        ),
        (entry.destination, backend.workspace, entry.source),
    )


def _store_instance(backend: PostgresBackend, conn, entry: entries.BindInstance) -> None:
    _set_instance(backend, conn, entry.name)


def _store_event(backend: PostgresBackend, conn, entry: entries.Event) -> None:
    """The event alone: inserted with every change."""


def _set_instance(backend: PostgresBackend, conn, instance: str) -> None:
    conn.execute(
        backend._query("UPDATE {workspaces} SET instance = %s WHERE name = %s", workspaces="workspaces"),
        (instance, backend.workspace),
    )


def _delete(backend: PostgresBackend, conn, table: str, address: str) -> None:
    conn.execute(
        backend._query("DELETE FROM {t} WHERE workspace = %s AND address = %s", t=table),
        (backend.workspace, address),
    )


STATEMENTS: dict[type[Entry], Callable[[PostgresBackend, Any, Any], None]] = {
    entries.Intent: _store_intent,
    entries.Record: _store_record,
    entries.RecordAll: _store_record_all,
    entries.Clear: _store_clear,
    entries.Forget: _store_forget,
    entries.Move: _store_move,
    entries.BindInstance: _store_instance,
    entries.Event: _store_event,
}


# Which workspace creates the batches of a client of an instance: one only, so that two workspaces
# pointed at one instance can never both issue a client's batches (each guard would miss the other's).
CLAIMS = """CREATE TABLE {claims} (
    instance text NOT NULL,
    client_id text NOT NULL,
    workspace text NOT NULL REFERENCES {workspaces} (name) ON DELETE CASCADE,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance, client_id))"""

# No foreign key: the history outlives its workspace. Written by INSERT only (see the docs' grants).
HISTORY_TABLE = """CREATE TABLE {history} (
        workspace text NOT NULL,
        seq bigint NOT NULL,
        event json NOT NULL,
        PRIMARY KEY (workspace, seq))"""

# Resources and intents are json, not jsonb: json keeps the text as written, so a state reads back
# with the digest it was written with (jsonb would rewrite 1e+20 as an integer, say, and every run
# would then see a change that is none and move the serial).
SCHEMA = (
    "CREATE TABLE {meta} (key text PRIMARY KEY, value text NOT NULL)",
    """CREATE TABLE {workspaces} (
        name text PRIMARY KEY,
        lineage text NOT NULL,
        serial bigint NOT NULL,
        instance text,
        digest text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE {resources} (
        workspace text NOT NULL REFERENCES {workspaces} (name) ON DELETE CASCADE,
        address text NOT NULL,
        resource json NOT NULL,
        PRIMARY KEY (workspace, address))""",
    """CREATE TABLE {intents} (
        workspace text NOT NULL REFERENCES {workspaces} (name) ON DELETE CASCADE,
        address text NOT NULL,
        intent json NOT NULL,
        PRIMARY KEY (workspace, address))""",
    """CREATE TABLE {locks} (
        workspace text PRIMARY KEY REFERENCES {workspaces} (name) ON DELETE CASCADE,
        id text NOT NULL,
        pid integer NOT NULL,
        host text NOT NULL,
        "user" text NOT NULL,
        command text NOT NULL,
        created text NOT NULL,
        session_pid integer NOT NULL)""",
    CLAIMS,
    HISTORY_TABLE,
)
UPGRADES = {1: (CLAIMS, HISTORY_TABLE)}  # from version N to N + 1


def client_claimed_message(client_id: str, instance: str, owner: str, since, backend: PostgresBackend) -> str:
    when = since.strftime("%Y-%m-%d %H:%M UTC") if since is not None else "earlier"
    return (
        f"not created: client {client_id} of {instance} belongs to workspace '{owner}' of this database (its "
        f"first create was made from there, {when}), not to '{backend.workspace}'. Two workspaces creating for "
        f"one client would each miss the other's batches and issue them twice. Apply this client's batches with "
        f"--workspace {owner}; if that workspace no longer manages it, release it there first: provisioner state "
        f"release-client {client_id} --workspace {owner}"
    )


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
