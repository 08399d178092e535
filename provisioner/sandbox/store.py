"""Credit batches in SQLite, and a stored batch as the API shows it."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from provisioner.sandbox.timestamps import now_text


class BatchStore:
    """Credit batches in SQLite: one connection, one lock, every write committed at once."""

    # Column names mirror the API's field names so a row is a CreditBatch minus `status`.
    # The balance columns have no declared type on purpose: SQLite then keeps
    # ints as ints and floats as floats, as the client sent them.
    _SCHEMA = """
        CREATE TABLE IF NOT EXISTS creditBatches (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            expiresOn TEXT,
            startingBalance NOT NULL,
            currentBalance NOT NULL,
            allocatedCredits NOT NULL,
            clientId TEXT NOT NULL,
            creditAccountId TEXT,
            createdAt TEXT NOT NULL,
            updatedAt TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS creditBatchesByClient
            ON creditBatches (clientId, createdAt, id);
    """
    _ORDER = "ORDER BY createdAt, id"

    def __init__(self, data_path: str | Path | None) -> None:
        self._path = Path(data_path) if data_path is not None else None
        self._lock = threading.Lock()
        with self._lock:
            self._connection: sqlite3.Connection | None = self._open()

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: each statement commits on its own, so a 201 is
        # only ever sent for a batch that is already on disk.
        if self._path is None:
            connection = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        else:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
        connection.row_factory = sqlite3.Row
        connection.executescript(self._SCHEMA)
        return connection

    def _db(self) -> sqlite3.Connection:
        """The open connection (caller holds the lock); reopened after close()."""
        if self._connection is None:
            self._connection = self._open()
        return self._connection

    def close(self) -> None:
        # An in-memory database would vanish with its connection, so only a file is closed.
        if self._path is None:
            return
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def insert(self, batch: dict) -> None:
        columns = ", ".join(batch)
        placeholders = ", ".join("?" for _ in batch)
        with self._lock:
            self._db().execute(f"INSERT INTO creditBatches ({columns}) VALUES ({placeholders})", tuple(batch.values()))

    def get(self, batch_id: str) -> dict | None:
        with self._lock:
            return self._get(batch_id)

    def _get(self, batch_id: str) -> dict | None:
        row = self._db().execute("SELECT * FROM creditBatches WHERE id = ?", (batch_id,)).fetchone()
        return dict(row) if row is not None else None

    def update(self, batch_id: str, changes: dict) -> dict | None:
        # Column names come from the validators' fixed field lists, never from the request.
        assignments = ", ".join(f"{column} = ?" for column in changes)
        with self._lock:
            self._db().execute(f"UPDATE creditBatches SET {assignments} WHERE id = ?", (*changes.values(), batch_id))
            return self._get(batch_id)

    def page(self, client_id: str, credit_account_id: str | None, offset: int, limit: int) -> tuple[list[dict], int]:
        where = "clientId = ? AND (? IS NULL OR lower(creditAccountId) = lower(?))"
        arguments = (client_id, credit_account_id, credit_account_id)
        with self._lock:
            db = self._db()
            total = db.execute(f"SELECT count(*) FROM creditBatches WHERE {where}", arguments).fetchone()[0]
            rows = db.execute(
                f"SELECT * FROM creditBatches WHERE {where} {self._ORDER} LIMIT ? OFFSET ?", (*arguments, limit, offset)
            ).fetchall()
        return [dict(row) for row in rows], total

    def all(self, client_id: str | None = None) -> list[dict]:
        with self._lock:
            rows = (
                self._db()
                .execute(
                    f"SELECT * FROM creditBatches WHERE (? IS NULL OR clientId = ?) {self._ORDER}",
                    (client_id, client_id),
                )
                .fetchall()
            )
        return [dict(row) for row in rows]


def present(batch: dict, now: str | None = None) -> dict:
    """A stored batch as the API shows it, in the vendor's field order, with its status as of now."""
    now = now or now_text()
    expired = batch["expiresOn"] is not None and batch["expiresOn"] <= now
    return {
        "id": batch["id"],
        "name": batch["name"],
        "expiresOn": batch["expiresOn"],
        "startingBalance": batch["startingBalance"],
        "currentBalance": batch["currentBalance"],
        "clientId": batch["clientId"],
        "status": "expired" if expired else "active",
        "createdAt": batch["createdAt"],
        "updatedAt": batch["updatedAt"],
        "creditAccountId": batch["creditAccountId"],
        "allocatedCredits": batch["allocatedCredits"],
    }
