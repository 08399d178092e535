"""Checking what a request sends: its JSON body, each field's value, and the query parameters."""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable
from datetime import datetime

from provisioner.sandbox.messages import ApiError
from provisioner.sandbox.timestamps import format_timestamp

UUID_SHAPE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
DIGITS = re.compile(r"^[0-9]+$")
_INT64_MAX = 2**63 - 1
_MAX_PAGE = 10**9


def invalid(field_name: str, problem: str) -> ApiError:
    return ApiError(422, f"{field_name}: {problem}")


# ---------------------------------------------------------------- the body


def parse_json_object(body: bytes | None) -> dict:
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
        raise invalid(name, "must be a number")
    if isinstance(value, float) and not math.isfinite(value):  # e.g. 1e400 parses as inf
        raise invalid(name, "must be a finite number")
    if value < 0:
        raise invalid(name, "must be >= 0")
    if value > _INT64_MAX:  # SQLite cannot store a larger integer
        raise invalid(name, "is too large")
    return value


def _require_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(name, "must be an integer")
    _require_number(name, value)
    return value


def _require_string(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise invalid(name, "must be a string")
    return value


def _require_uuid(name: str, value: object) -> str:
    if not isinstance(value, str) or not UUID_SHAPE.match(value):
        raise invalid(name, "must be a UUID string")
    return value


def _require_timestamp(name: str, value: object) -> str:
    """Accept ISO 8601 with a time zone; return it normalised to the vendor's UTC format."""
    if not isinstance(value, str):
        raise invalid(name, "must be an ISO 8601 timestamp string")
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise invalid(name, "must be an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        raise invalid(name, "must include a time zone (e.g. Z or +02:00)")
    try:
        return format_timestamp(moment)
    except OverflowError:
        raise invalid(name, "is out of range") from None


_Validator = Callable[[str, object], object]

CREATE_FIELDS: dict[str, _Validator] = {
    "startingBalance": _require_number,
    "clientId": _require_uuid,
    "creditAccountId": _require_uuid,
    "name": _require_string,
    "expiresOn": _require_timestamp,
}
UPDATE_FIELDS: dict[str, _Validator] = {
    "name": _require_string,
    "expiresOn": _require_timestamp,
    "currentBalance": _require_count,
}
FIELDS_FIXED_AT_CREATION = ("startingBalance", "clientId", "creditAccountId")


def validated_fields(payload: dict, rules: dict[str, _Validator], fixed: tuple[str, ...] = ()) -> dict:
    """Check names first, then values; the first problem found is the one reported.

    Sandbox choice: null is a wrong type, not "absent" (the reference types every
    field and says nothing of null), so clients learn to omit what they do not set.
    """
    for name in payload:
        if name in fixed:
            raise invalid(name, "cannot be changed after creation")
        if name not in rules:
            raise invalid(name, "unknown field")
    return {name: rules[name](name, value) for name, value in payload.items()}


# ---------------------------------------------------------------- ids and the query


def is_uuid_shaped(text: str) -> bool:
    return bool(UUID_SHAPE.match(text))


def same_client(first: str, second: str) -> bool:
    if is_uuid_shaped(first) and is_uuid_shaped(second):
        return uuid.UUID(first) == uuid.UUID(second)
    return first == second


def query_value(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def page_number(text: str | None) -> int:
    if text is None:
        return 1
    if not DIGITS.match(text) or not 1 <= int(text) <= _MAX_PAGE:
        raise ApiError(400, "page: must be an integer from 1 (the first page)")
    return int(text)
