"""The PostgreSQL backend's lock: one writer per workspace, across every machine that reaches the database.

- A session advisory lock per workspace, held for the whole run, plus a holder row
  naming who holds it. PostgreSQL releases the advisory lock when the holding session
  ends (process killed, machine gone once TCP keepalive notices), so a dead run never
  blocks the next one for long; the stale holder row is then taken over with a warning.
- Every write checks, inside its own transaction, that this run still holds the lock
  (``check``). After a reconnect the lock is taken again on the new session
  (``reclaim``), or the run stops writing.
- ``force_unlock`` removes the holder row of a run whose session has ended.

As ``filelock.py`` is for a state file; the backend keeps the connection and the tables.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from provisioner.backends.base import LockError, LockInfo, LockLost, Warn
from provisioner.backends.filelock import current_user
from provisioner.backends.lockwait import LockWait

if TYPE_CHECKING:
    from provisioner.backends.postgres import PostgresBackend

# How long a run refused the lock waits for the winner to write its holder row, so the refusal can name it.
NAMING_GRACE = 2.0


class AdvisoryLock:
    """The lock on one workspace, taken and checked through its backend's connection."""

    def __init__(self, backend: PostgresBackend):
        self.backend = backend
        self.name = backend.name
        self.schema = backend.schema
        self.workspace = backend.workspace
        self._guard = backend._guard
        self._psycopg = backend._psycopg
        self._transaction = backend._transaction
        self._query = backend._query
        self._workspace_row = backend._workspace_row
        self.missing_error = backend.missing_error
        self.holding: LockInfo | None = None
        self.locked_on: Any = None  # the connection whose session holds the advisory lock

    def _lock_key(self) -> str:
        return f"provisioner lock {self.schema} {self.workspace}"

    def _call(self, function: str, retryable: bool = False) -> bool:
        """pg_try_advisory_lock / pg_advisory_unlock on this workspace's key. Session-level advisory
        locks ignore transaction boundaries, so running them in one only maps the errors."""
        with self._transaction(retryable=retryable) as conn:
            return conn.execute(f"SELECT {function}(hashtextextended(%s, 0))", (self._lock_key(),)).fetchone()[0]

    def _holder(self, conn) -> LockInfo | None:
        row = conn.execute(
            self._query(
                'SELECT id, pid, host, "user", command, created FROM {locks} WHERE workspace = %s', locks="locks"
            ),
            (self.workspace,),
        ).fetchone()
        return LockInfo(*row) if row else None

    def _named_holder(self, conn) -> LockInfo | None:
        """The holder row of the run that holds the advisory lock now; None while that run has not
        written its row yet (a row left by a run before it names someone else)."""
        row = conn.execute(
            self._query(
                'SELECT id, pid, host, "user", command, created, session_pid FROM {locks} WHERE workspace = %s',
                locks="locks",
            ),
            (self.workspace,),
        ).fetchone()
        if row is None or row[6] != self._advisory_holder(conn):
            return None
        return LockInfo(*row[:6])

    def _holder_session(self, conn) -> int | None:
        row = conn.execute(
            self._query("SELECT session_pid FROM {locks} WHERE workspace = %s", locks="locks"), (self.workspace,)
        ).fetchone()
        return row[0] if row else None

    @contextmanager
    def held(self, command: str, timeout: float = 0.0, warn: Warn | None = None) -> Iterator[LockInfo]:
        info = self.acquire(command, timeout, warn or (lambda message: None))
        try:
            yield info
        finally:
            self.release()

    def acquire(self, command: str, timeout: float, warn: Warn) -> LockInfo:
        deadline = time.monotonic() + timeout
        info = LockInfo(
            id=str(uuid.uuid4()),
            pid=os.getpid(),
            host=socket.gethostname(),
            user=current_user(),
            command=command,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        waiting = LockWait(self.name, timeout, warn)
        while True:
            with self._transaction() as conn:
                if self._workspace_row(conn) is None:
                    raise self.missing_error()
            with self._guard:
                if self._call("pg_try_advisory_lock"):
                    self.locked_on = self.backend._conn
                    self._take_holder_row(info, warn)
                    self.holding = info
                    waiting.acquired()
                    return info
                with self._transaction() as conn:
                    holder = self._named_holder(conn)
            if time.monotonic() >= deadline:
                if holder is None and time.monotonic() < deadline + NAMING_GRACE:
                    time.sleep(0.05)  # the winner writes its row just after taking the lock
                    continue
                described = holder.describe() if holder else "(a session that has not named itself yet)"
                raise LockError(
                    f"the state {self.name} is locked by another run:\n  {described}\n"
                    "Wait for it to finish, or pass --lock-timeout SECONDS to wait. The lock is held by that run's "
                    "database session and is released when it ends, even if the run is killed."
                )
            if holder is not None or time.monotonic() - waiting.since >= NAMING_GRACE:
                waiting.blocked(holder)
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def _take_holder_row(self, info: LockInfo, warn: Warn) -> None:
        with self._transaction() as conn:
            previous = self._holder(conn)
            if previous is not None and previous.id != info.id:
                warn(
                    f"Warning: taking over the lock of a run whose database session has ended "
                    f"({previous.command} by {previous.user}@{previous.host}, pid {previous.pid}, since {previous.created})."
                )
            conn.execute(
                self._query(
                    'INSERT INTO {locks} (workspace, id, pid, host, "user", command, created, session_pid) '
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, pg_backend_pid()) ON CONFLICT (workspace) DO UPDATE SET "
                    'id = excluded.id, pid = excluded.pid, host = excluded.host, "user" = excluded."user", '
                    "command = excluded.command, created = excluded.created, session_pid = excluded.session_pid",
                    locks="locks",
                ),
                (self.workspace, info.id, info.pid, info.host, info.user, info.command, info.created),
            )

    def release(self) -> None:
        with self._guard:
            info, self.holding = self.holding, None
            self.locked_on = None
            if info is None or self.backend._conn is None or self.backend._conn.closed:
                return
            try:
                with self._transaction(retryable=True) as conn:
                    conn.execute(
                        self._query("DELETE FROM {locks} WHERE workspace = %s AND id = %s", locks="locks"),
                        (self.workspace, info.id),
                    )
                self._call("pg_advisory_unlock", retryable=True)
            except self._psycopg.OperationalError:
                pass  # the session is gone, and its advisory lock with it

    def check(self, conn) -> None:
        """Inside a write transaction: this run still holds the lock, on this very session.

        The holder row is locked until the write commits, so a force-unlock comes before it or
        after it. (After a reconnect, ``write`` has taken the lock again on the new session.)"""
        info = self.holding
        if info is None or conn is not self.locked_on:
            raise self._lock_lost()
        row = conn.execute(
            self._query("SELECT id FROM {locks} WHERE workspace = %s FOR UPDATE", locks="locks"), (self.workspace,)
        ).fetchone()
        if row is None or row[0] != info.id:
            raise self._lock_lost()

    def _lock_lost(self) -> LockLost:
        return LockLost(
            f"this run no longer holds the lock on {self.name} (force-unlocked?); it stopped writing. "
            "Run the command again: open creates are resolved by listing."
        )

    def reclaim(self, conn) -> None:
        """After a reconnect: the holder row is still ours, but the advisory lock went with the old
        session, or will once the server notices that session is gone. Taken again, or refused."""
        info = self.holding
        # Read without locking the row first: after a network cut our old session may still hold
        # it (idle in its unfinished transaction), and FOR UPDATE would wait for the server's
        # keepalive to end that session, a minute or more.
        row = conn.execute(
            self._query("SELECT id, session_pid FROM {locks} WHERE workspace = %s", locks="locks"), (self.workspace,)
        ).fetchone()
        if info is None or row is None or row[0] != info.id:
            raise self._lock_lost()
        self._take_again(conn, previous_session=row[1])

    def _take_again(self, conn, previous_session: int) -> None:
        """After a reconnect: the advisory lock on this new session, and the holder row pointing at it."""
        key = self._lock_key()
        taken = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()[0]
        if not taken and self._advisory_holder(conn) == previous_session:
            # Our own previous session, cut off from us but alive on the server until its keepalive
            # notices (the holder row names it, and it holds this lock: no other run can be it).
            # Ending it frees the lock, and any row it had locked in its unfinished transaction.
            conn.execute("SELECT pg_terminate_backend(%s)", (previous_session,))
            deadline = time.monotonic() + 10
            while not taken and time.monotonic() < deadline:
                time.sleep(0.05)
                taken = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()[0]
        if not taken:
            raise LockLost(
                f"the connection to {self.name} broke, and another run has taken the lock since; this run "
                "stopped writing. Run the command again after that run: open creates are resolved by listing."
            )
        conn.execute(
            self._query("UPDATE {locks} SET session_pid = pg_backend_pid() WHERE workspace = %s", locks="locks"),
            (self.workspace,),
        )

    def _advisory_holder(self, conn) -> int | None:
        """The database session holding this workspace's advisory lock, if any. A bigint key shows
        in pg_locks as its high half (classid) and low half (objid), objsubid 1."""
        row = conn.execute(
            "SELECT l.pid FROM pg_locks l, (SELECT hashtextextended(%s, 0) AS key) k "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND l.classid::text::bigint = (k.key >> 32) & 4294967295 "
            "AND l.objid::text::bigint = k.key & 4294967295",
            (self._lock_key(),),
        ).fetchone()
        return row[0] if row else None

    def force_unlock(self, lock_id: str, with_removal=None) -> LockInfo:
        """``with_removal(conn, holder)``: run in the transaction that removes the lock (its event)."""
        with self._transaction() as conn:
            if self._workspace_row(conn) is None:
                raise self.missing_error()
            holder = self._holder(conn)
            session = self._holder_session(conn)
        if holder is None:
            raise LockError(f"the state {self.name} is not locked; nothing to unlock.")
        if holder.id != lock_id:
            raise LockError(
                f"the lock on {self.name} has ID {holder.id}, not {lock_id}; nothing was changed.\n  {holder.describe()}"
            )
        with self._guard:
            if not self._call("pg_try_advisory_lock"):
                raise LockError(
                    f"the run holding the lock is still connected to the database ({holder.command} by "
                    f"{holder.user}@{holder.host}, pid {holder.pid}, database session {session}); nothing was "
                    "changed. Stop it or wait for it. If its machine is gone but the session lingers, PostgreSQL "
                    "ends it once TCP keepalive notices (about a minute), or an administrator can run: "
                    f"SELECT pg_terminate_backend({session});"
                )
            try:
                with self._transaction() as conn:
                    conn.execute(
                        self._query("DELETE FROM {locks} WHERE workspace = %s AND id = %s", locks="locks"),
                        (self.workspace, lock_id),
                    )
                    if with_removal is not None:
                        with_removal(conn, holder)
            finally:
                self._call("pg_advisory_unlock")
        return holder
