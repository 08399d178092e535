"""Local simulator of the Thought Industries credits API.

A real HTTP server backed by SQLite, with injectable faults, used for demos,
integration tests and chaos benchmarks. It follows docs/credits-api.md (the contract
the client follows too); where the vendor's reference is silent, the behaviour chosen here is marked
"Sandbox choice:" so it is not mistaken for documented vendor behaviour.

    with Sandbox(page_size=10, faults=Faults(error_rate=0.1, seed=1)) as sandbox:
        requests.post(f"{sandbox.url}/incoming/v2/clients/{client_id}/creditBatches", ...)

Standard library only.
"""

from __future__ import annotations

import hmac
import json
import math
import random
import re
import socket
import sqlite3
import threading
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["Faults", "Quirks", "Sandbox"]


@dataclass
class Faults:
    """Failures the sandbox injects; every rate is a probability in [0, 1]."""

    latency: float = 0.0  # seconds added before every response (for creates: after the commit)
    error_rate: float = 0.0  # answer 500/502/503 without doing anything
    error_after_commit_rate: float = 0.0  # create commits, then answers 500
    drop_after_commit_rate: float = 0.0  # create commits, then closes the socket unanswered
    burst_429_rate: float = 0.0  # chance that a request starts a storm of 429s
    burst_429_length: int = 5  # 429s per storm, the triggering request included
    retry_after: float = 1.0  # seconds sent in Retry-After for injected 429/503
    seed: int | None = None  # makes the fault sequence repeatable
    # Seconds a create is held before it is committed, as a busy server still working on it; the
    # work goes on when the client hangs up meanwhile, and the answer follows the commit.
    commit_delay: float = 0.0


@dataclass(frozen=True)
class Quirks:
    """Ways a real server may store or list a batch otherwise than it was sent: none is an error, and
    recovery must not take such a batch for another one (nor send its create again).

    Sandbox choice: off by default; the contract does not say the vendor does any of these.
    """

    trim_names: bool = False  # names are stored trimmed, each run of whitespace inside made one space
    list_client_id_null: bool = False  # listed batches carry "clientId": null
    list_expiry_as_date: bool = False  # listed batches carry expiresOn as a bare date ("2030-03-31")

    NAMES = ("trim-names", "list-client-id-null", "list-expiry-as-date")

    @classmethod
    def named(cls, names) -> Quirks:
        """From the names of the CLI's --quirk options (see NAMES); "all" turns every one on."""
        names = set(names)
        if "all" in names:
            names = set(cls.NAMES)
        unknown = names - set(cls.NAMES)
        if unknown:
            raise ValueError(f"unknown quirk(s): {', '.join(sorted(unknown))}; known: {', '.join(cls.NAMES)}")
        return cls(**{name.replace("-", "_"): True for name in names})

    def listed(self, batch: dict) -> dict:
        """A presented batch as a listing shows it."""
        if self.list_client_id_null:
            batch = {**batch, "clientId": None}
        if self.list_expiry_as_date and batch.get("expiresOn"):
            batch = {**batch, "expiresOn": batch["expiresOn"][:10]}
        return batch


_UUID_SHAPE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_DIGITS = re.compile(r"^[0-9]+$")
_INT64_MAX = 2**63 - 1
_MAX_PAGE = 10**9
_MAX_BODY_BYTES = 1 << 20
_UNLIMITED_RATE = 1_000_000
_INJECTED_ERROR_STATUSES = (500, 502, 503)
_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    422: "validation_error",
    429: "rate_limit_exceeded",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
}


# ---------------------------------------------------------------- requests and responses


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    authorization: str | None
    body: bytes | None  # None: unreadable (chunked, bad or too large Content-Length)


@dataclass
class _Response:
    status: int
    payload: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop_connection: bool = False


class ApiError(Exception):
    """An error answer: becomes `{"error": ..., "message": ...}` with its status."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None,
                 extra: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}

    def to_response(self) -> _Response:
        payload = {"error": _ERROR_CODES[self.status], "message": self.message, **self.extra}
        return _Response(self.status, payload, dict(self.headers))


def _invalid(field_name: str, problem: str) -> ApiError:
    return ApiError(422, f"{field_name}: {problem}")


# ---------------------------------------------------------------- timestamps


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _format_timestamp(moment: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC, the vendor's format.

    Fixed width, so these strings sort and compare like the instants they name.
    """
    m = moment.astimezone(timezone.utc)
    return (f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"
            f".{m.microsecond // 1000:03d}Z")


def _now_text() -> str:
    return _format_timestamp(_utc_now())


# ---------------------------------------------------------------- body validation


def _parse_json_object(body: bytes | None) -> dict:
    if body is None:
        raise ApiError(400, "request body could not be read (send it with a Content-Length)")
    if not body.strip():
        raise ApiError(400, "request body is empty; a JSON object is required")
    try:
        payload = json.loads(body.decode("utf-8"), parse_constant=_reject_json_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ApiError(400, "request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "request body must be a JSON object")
    return payload


def _reject_json_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _require_number(name: str, value: object) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(name, "must be a number")
    if isinstance(value, float) and not math.isfinite(value):  # e.g. 1e400 parses as inf
        raise _invalid(name, "must be a finite number")
    if value < 0:
        raise _invalid(name, "must be >= 0")
    if value > _INT64_MAX:  # SQLite cannot store a larger integer
        raise _invalid(name, "is too large")
    return value


def _require_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(name, "must be an integer")
    return _require_number(name, value)


def _require_string(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise _invalid(name, "must be a string")
    return value


def _require_uuid(name: str, value: object) -> str:
    if not isinstance(value, str) or not _UUID_SHAPE.match(value):
        raise _invalid(name, "must be a UUID string")
    return value


def _require_timestamp(name: str, value: object) -> str:
    """Accept ISO 8601 with a time zone; return it normalised to the vendor's UTC format."""
    if not isinstance(value, str):
        raise _invalid(name, "must be an ISO 8601 timestamp string")
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _invalid(name, "must be an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        raise _invalid(name, "must include a time zone (e.g. Z or +02:00)")
    try:
        return _format_timestamp(moment)
    except OverflowError:
        raise _invalid(name, "is out of range") from None


_Validator = Callable[[str, object], object]

_CREATE_FIELDS: dict[str, _Validator] = {
    "startingBalance": _require_number,
    "clientId": _require_uuid,
    "creditAccountId": _require_uuid,
    "name": _require_string,
    "expiresOn": _require_timestamp,
}
_UPDATE_FIELDS: dict[str, _Validator] = {
    "name": _require_string,
    "expiresOn": _require_timestamp,
    "currentBalance": _require_count,
}
_FIELDS_FIXED_AT_CREATION = ("startingBalance", "clientId", "creditAccountId")


def _validated_fields(payload: dict, rules: dict[str, _Validator],
                      fixed: tuple[str, ...] = ()) -> dict:
    """Check names first, then values; the first problem found is the one reported.

    Sandbox choice: null is a wrong type, not "absent" (the reference types every
    field and says nothing of null), so clients learn to omit what they do not set.
    """
    for name in payload:
        if name in fixed:
            raise _invalid(name, "cannot be changed after creation")
        if name not in rules:
            raise _invalid(name, "unknown field")
    return {name: rules[name](name, value) for name, value in payload.items()}


def _is_uuid_shaped(text: str) -> bool:
    return bool(_UUID_SHAPE.match(text))


def _same_client(first: str, second: str) -> bool:
    if _is_uuid_shaped(first) and _is_uuid_shaped(second):
        return uuid.UUID(first) == uuid.UUID(second)
    return first == second


# ---------------------------------------------------------------- storage


class _BatchStore:
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
            self._connection = self._open()

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
            self._db().execute(f"INSERT INTO creditBatches ({columns}) VALUES ({placeholders})",
                               tuple(batch.values()))

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
            self._db().execute(f"UPDATE creditBatches SET {assignments} WHERE id = ?",
                               (*changes.values(), batch_id))
            return self._get(batch_id)

    def page(self, client_id: str, credit_account_id: str | None,
             offset: int, limit: int) -> tuple[list[dict], int]:
        where = "clientId = ? AND (? IS NULL OR lower(creditAccountId) = lower(?))"
        arguments = (client_id, credit_account_id, credit_account_id)
        with self._lock:
            db = self._db()
            total = db.execute(f"SELECT count(*) FROM creditBatches WHERE {where}", arguments).fetchone()[0]
            rows = db.execute(f"SELECT * FROM creditBatches WHERE {where} {self._ORDER} LIMIT ? OFFSET ?",
                              (*arguments, limit, offset)).fetchall()
        return [dict(row) for row in rows], total

    def all(self, client_id: str | None = None) -> list[dict]:
        with self._lock:
            rows = self._db().execute(
                f"SELECT * FROM creditBatches WHERE (? IS NULL OR clientId = ?) {self._ORDER}",
                (client_id, client_id)).fetchall()
        return [dict(row) for row in rows]


def _present(batch: dict, now_text: str | None = None) -> dict:
    """A stored batch as the API shows it, in the vendor's field order, with its status as of now."""
    now_text = now_text or _now_text()
    expired = batch["expiresOn"] is not None and batch["expiresOn"] <= now_text
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


# ---------------------------------------------------------------- rate limiting


@dataclass(frozen=True)
class _RateVerdict:
    allowed: bool
    limit: int
    remaining: int
    reset_at: int  # unix seconds when the bucket is full again
    retry_after: int  # whole seconds until one request is allowed (0 when allowed)

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }


class _RateLimiter:
    """A token bucket per API key: `burst` requests at once, refilled at `per_minute`/60 a second."""

    def __init__(self, per_minute: int | None, burst: int | None) -> None:
        if per_minute is not None and per_minute < 1:
            raise ValueError("rate_limit must be at least 1 request per minute")
        self._per_minute = per_minute
        self._capacity = burst if burst is not None else max(1, (per_minute or 0) // 6)
        if self._capacity < 1:
            raise ValueError("burst must be at least 1")
        self._refill_per_second = (per_minute or 0) / 60
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, monotonic time)
        self._lock = threading.Lock()

    def take(self, api_key: str) -> _RateVerdict:
        if self._per_minute is None:
            return self.full_bucket()
        with self._lock:
            now = time.monotonic()
            tokens, updated = self._buckets.get(api_key, (self._capacity, now))
            tokens = min(self._capacity, tokens + (now - updated) * self._refill_per_second)
            allowed = tokens >= 1
            if allowed:
                tokens -= 1
            self._buckets[api_key] = (tokens, now)
        return self._verdict(allowed, tokens)

    def full_bucket(self) -> _RateVerdict:
        """Headers for answers that touch no bucket (no usable key, or no limit)."""
        if self._per_minute is None:
            return _RateVerdict(True, _UNLIMITED_RATE, _UNLIMITED_RATE, int(time.time()), 0)
        return self._verdict(True, self._capacity)

    def _verdict(self, allowed: bool, tokens: float) -> _RateVerdict:
        seconds_until_full = (self._capacity - tokens) / self._refill_per_second
        retry_after = 0 if allowed else max(1, math.ceil((1 - tokens) / self._refill_per_second))
        return _RateVerdict(allowed, self._per_minute, int(tokens),
                            math.ceil(time.time() + seconds_until_full), retry_after)


# ---------------------------------------------------------------- fault injection


@dataclass(frozen=True)
class _FaultPlan:
    """The fate of one request, decided before it is handled."""

    faults: Faults
    in_429_storm: bool
    error_status: int | None
    drop_after_commit: bool
    error_after_commit: bool


class _FaultInjector:
    def __init__(self, faults: Faults) -> None:
        self._lock = threading.Lock()
        self.replace(faults)

    def replace(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults
            self._random = random.Random(faults.seed)
            self._storm_requests_left = 0

    @property
    def current(self) -> Faults:
        return self._faults

    def plan(self) -> _FaultPlan:
        with self._lock:
            faults = self._faults
            # The same five draws for every request, whatever its kind or fate: with a
            # seed, the n-th request meets the same faults as in any other run.
            storm, error, status, drop, after = (self._random.random() for _ in range(5))
            return _FaultPlan(
                faults=faults,
                in_429_storm=self._advance_storm(storm < faults.burst_429_rate, faults),
                error_status=(_INJECTED_ERROR_STATUSES[int(status * len(_INJECTED_ERROR_STATUSES))]
                              if error < faults.error_rate else None),
                drop_after_commit=drop < faults.drop_after_commit_rate,
                error_after_commit=after < faults.error_after_commit_rate,
            )

    def _advance_storm(self, starts_storm: bool, faults: Faults) -> bool:
        if self._storm_requests_left > 0:
            self._storm_requests_left -= 1
            return True
        if starts_storm:
            self._storm_requests_left = max(1, faults.burst_429_length) - 1
            return True
        return False


def _format_seconds(seconds: float) -> str:
    """1.0 -> "1", 0.25 -> "0.25": Retry-After as short as it can be."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def _json_seconds(seconds: float) -> int | float:
    return int(seconds) if float(seconds).is_integer() else seconds


# ---------------------------------------------------------------- the API itself


_BATCHES_OF_CLIENT = re.compile(r"^/incoming/v2/clients/(?P<client_id>[^/]+)/creditBatches$")
_ONE_BATCH = re.compile(r"^/incoming/v2/clients/creditBatches/(?P<batch_id>[^/]+)$")


class _SandboxApp:
    """Turns a request into a response: auth, then rate limit, then faults, then routing."""

    def __init__(self, *, store: _BatchStore, api_key: str | None, limiter: _RateLimiter,
                 faults: _FaultInjector, page_size: int, known_clients: set[str] | None,
                 verbose: bool, quirks: Quirks | None = None) -> None:
        self._store = store
        self._quirks = quirks or Quirks()
        self._api_key = api_key
        self._limiter = limiter
        self._faults = faults
        self._page_size = page_size
        self._known_clients = set(known_clients) if known_clients is not None else None
        self._verbose = verbose
        self._routes = [  # the literal path first: it would also match `{client_id}`
            (_ONE_BATCH, {"PUT": self._update_batch}),
            (_BATCHES_OF_CLIENT, {"POST": self._create_batch, "GET": self._list_batches}),
        ]
        self.request_log: list[tuple[str, str, int]] = []
        self._stats: Counter = Counter()
        self._log_lock = threading.Lock()

    # -- bookkeeping

    def stats(self) -> Counter:
        with self._log_lock:
            return Counter(self._stats)

    def _count(self, event: str) -> None:
        with self._log_lock:
            self._stats[event] += 1

    def _record(self, request: _Request, response: _Response) -> None:
        # A dropped connection has no status: it is logged as 0.
        status = 0 if response.drop_connection else response.status
        with self._log_lock:
            self.request_log.append((request.method, request.path, status))
            self._stats["requests"] += 1
            if status:
                self._stats[str(status)] += 1

    # -- the pipeline

    def handle(self, request: _Request) -> _Response:
        response = self._respond(request)
        self._record(request, response)
        return response

    def _respond(self, request: _Request) -> _Response:
        latency = self._faults.current.latency
        try:
            api_key = self._authenticate(request.authorization)
        except ApiError as error:
            return self._finish(error.to_response(), self._limiter.full_bucket(), latency)
        verdict = self._limiter.take(api_key)
        if not verdict.allowed:
            return self._finish(self._rate_limited(verdict), verdict, latency)
        plan = self._faults.plan()
        response = self._injected_failure(plan) or self._routed(request)
        if response.status == 201:
            response = self._after_commit(response, plan)
        return self._finish(response, verdict, plan.faults.latency)

    @staticmethod
    def _finish(response: _Response, verdict: _RateVerdict, latency: float) -> _Response:
        response.headers.update(verdict.headers())
        response.delay = latency
        return response

    def _authenticate(self, authorization: str | None) -> str:
        scheme, _, key = (authorization or "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise self._unauthorized("missing API key: send Authorization: Bearer <key>")
        if self._api_key is not None:
            accepted = hmac.compare_digest(key.encode(), self._api_key.encode())
        else:
            accepted = key.startswith("ti_test_")
        if not accepted:
            raise self._unauthorized("invalid API key")  # never echo the key back
        return key

    @staticmethod
    def _unauthorized(message: str) -> ApiError:
        return ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})

    def _rate_limited(self, verdict: _RateVerdict) -> _Response:
        return ApiError(429, f"rate limit of {verdict.limit} requests per minute exceeded",
                        headers={"Retry-After": str(verdict.retry_after)},
                        extra={"retryAfter": verdict.retry_after}).to_response()

    def _injected_failure(self, plan: _FaultPlan) -> _Response | None:
        retry_after = plan.faults.retry_after
        if plan.in_429_storm:
            self._count("injected_429")
            return ApiError(429, "too many requests (injected by the sandbox)",
                            headers={"Retry-After": _format_seconds(retry_after)},
                            extra={"retryAfter": _json_seconds(retry_after)}).to_response()
        if plan.error_status is not None:
            self._count("injected_errors")
            headers = {"Retry-After": _format_seconds(retry_after)} if plan.error_status == 503 else {}
            return ApiError(plan.error_status, "server error (injected by the sandbox)",
                            headers=headers).to_response()
        return None

    def _after_commit(self, response: _Response, plan: _FaultPlan) -> _Response:
        # The batch is already committed: these faults leave the client unsure whether it exists.
        if plan.drop_after_commit:
            self._count("drops")
            return _Response(0, drop_connection=True)
        if plan.error_after_commit:
            self._count("errors_after_commit")
            return ApiError(500, "server error after the batch was saved (injected by the sandbox)"
                            ).to_response()
        return response

    def _routed(self, request: _Request) -> _Response:
        try:
            handler, path_values = self._route(request)
            return handler(request, **path_values)
        except ApiError as error:
            return error.to_response()
        except Exception:
            if self._verbose:
                traceback.print_exc()
            return ApiError(500, "unexpected sandbox error").to_response()

    def _route(self, request: _Request):
        for pattern, handlers in self._routes:
            match = pattern.match(request.path)
            if match is None:
                continue
            handler = handlers.get(request.method)
            if handler is None:
                raise ApiError(405, f"{request.method} is not allowed here",
                               headers={"Allow": ", ".join(sorted(handlers))})
            return handler, {name: unquote(value) for name, value in match.groupdict().items()}
        raise ApiError(404, f"no endpoint at {request.path}")

    def _require_known_client(self, client_id: str) -> None:
        if self._known_clients is not None:
            known = client_id in self._known_clients
        else:
            known = _is_uuid_shaped(client_id)
        if not known:
            raise ApiError(404, "client not found")

    # -- endpoints

    def _create_batch(self, request: _Request, client_id: str) -> _Response:
        self._require_known_client(client_id)
        fields = _validated_fields(_parse_json_object(request.body), _CREATE_FIELDS)
        if "startingBalance" not in fields:
            raise _invalid("startingBalance", "is required")
        if "clientId" in fields and not _same_client(fields["clientId"], client_id):
            raise _invalid("clientId", "must match the client id in the path")
        commit_delay = self._faults.current.commit_delay
        if commit_delay > 0:
            self._count("delayed_commits")
            time.sleep(commit_delay)  # no lock is held here; a client that hung up does not stop it
        now = _now_text()
        name = fields.get("name", "")
        batch = {
            "id": str(uuid.uuid4()),
            "name": " ".join(name.split()) if self._quirks.trim_names else name,
            "expiresOn": fields.get("expiresOn"),
            "startingBalance": fields["startingBalance"],
            "currentBalance": fields["startingBalance"],
            "allocatedCredits": 0,
            "clientId": client_id,
            "creditAccountId": fields.get("creditAccountId"),
            "createdAt": now,
            "updatedAt": now,
        }
        self._store.insert(batch)
        self._count("creates")
        return _Response(201, {"data": {"CreateCreditBatch": _present(batch)}})

    def _list_batches(self, request: _Request, client_id: str) -> _Response:
        self._require_known_client(client_id)
        query_client = _query_value(request.query, "clientId")
        if not query_client:
            raise ApiError(400, "clientId: query parameter is required")
        if not _same_client(query_client, client_id):
            raise _invalid("clientId", "must match the client id in the path")
        account = _query_value(request.query, "creditAccountId")
        if account is not None and not _is_uuid_shaped(account):
            raise ApiError(400, "creditAccountId: must be a UUID")
        page = _page_number(_query_value(request.query, "page"))

        offset = (page - 1) * self._page_size
        batches, total = self._store.page(client_id, account, offset, self._page_size)
        has_more = offset + len(batches) < total
        now = _now_text()
        return _Response(200, {"data": {"APICreditBatchesByClientAndCreditAccount": {
            "clientId": client_id,
            "creditAccountId": account,
            "creditBatches": [self._quirks.listed(_present(batch, now)) for batch in batches],
            "pageInfo": {
                "perPage": self._page_size,
                "cursor": str(page + 1) if has_more else None,
                "total": total,
                "hasMore": has_more,
            },
        }}})

    def _update_batch(self, request: _Request, batch_id: str) -> _Response:
        batch = self._store.get(batch_id)
        if batch is None:
            raise ApiError(404, "credit batch not found")
        changes = _validated_fields(_parse_json_object(request.body), _UPDATE_FIELDS,
                                    fixed=_FIELDS_FIXED_AT_CREATION)
        if "currentBalance" in changes:
            # Sandbox choice: a batch cannot hold more than it started with, which
            # keeps allocatedCredits (= starting - current) from going negative.
            if changes["currentBalance"] > batch["startingBalance"]:
                raise _invalid("currentBalance", "must not exceed startingBalance")
            changes["allocatedCredits"] = batch["startingBalance"] - changes["currentBalance"]
        changes["updatedAt"] = _now_text()
        updated = self._store.update(batch_id, changes)
        self._count("updates")
        return _Response(200, {"data": {"UpdateCreditBatch": _present(updated)}})


def _query_value(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _page_number(text: str | None) -> int:
    if text is None:
        return 1
    if not _DIGITS.match(text) or not 1 <= int(text) <= _MAX_PAGE:
        raise ApiError(400, "page: must be an integer from 1 (the first page)")
    return int(text)


# ---------------------------------------------------------------- HTTP plumbing


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
        request = _Request(
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
        if self.headers.get("Transfer-Encoding") or not _DIGITS.match(length) \
                or int(length) > _MAX_BODY_BYTES:
            self.close_connection = True  # the unread body would corrupt the next request
            return None
        return self.rfile.read(int(length))

    def _deliver(self, response: _Response) -> None:
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

    def __init__(self, address: tuple[str, int], app: _SandboxApp, verbose: bool) -> None:
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

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 data_path: str | Path | None = None, api_key: str | None = None,
                 rate_limit: int | None = None, burst: int | None = None,
                 faults: Faults | None = None, page_size: int = 25,
                 known_clients: set[str] | None = None, verbose: bool = False,
                 quirks: Quirks | None = None) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self._address = (host, port)
        self._verbose = verbose
        self._store = _BatchStore(data_path)
        self._faults = _FaultInjector(faults or Faults())
        self._app = _SandboxApp(
            store=self._store, api_key=api_key, limiter=_RateLimiter(rate_limit, burst),
            faults=self._faults, page_size=page_size, known_clients=known_clients,
            verbose=verbose, quirks=quirks,
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
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"sandbox {self.url}", daemon=True)
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
        now = _now_text()
        return [_present(batch, now) for batch in self._store.all(client_id)]

    def _bind(self) -> _SandboxHTTPServer:
        if self._server is not None:
            raise RuntimeError("the sandbox is already running")
        self._server = _SandboxHTTPServer(self._address, self._app, self._verbose)
        host, port = self._server.server_address[:2]
        self._url = f"http://{host}:{port}"
        return self._server

    def _close(self, server: _SandboxHTTPServer) -> None:
        server.server_close()
        server.close_open_connections()
        self._server = None
        self._store.close()
