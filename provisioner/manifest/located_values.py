"""What a manifest's values mean, kind by kind (fields.Kind), with what to write instead when they are wrong.

The located reader's (nodereader.py) counterpart of the fast reader's (fastvalues.py): ``READERS``
maps each kind of value to a function of one node of libyaml's tree (YAML 1.1, as PyYAML reads it)
that gives ``(value, None)``, or ``(None, message)`` naming what was written and what is expected.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import yaml

from provisioner.core.models import DEFAULT_GRANT_NAME
from provisioner.core.timestamps import format_timestamp, from_iso
from provisioner.manifest.fields import (
    CONTROL_CHARACTER,
    EXAMPLE_TIMESTAMP,
    EXAMPLE_UUID,
    MAX_NAME_LENGTH,
    MAX_WHOLE_NUMBER,
    Kind,
    shorten,
)
from provisioner.manifest.grant_rules import check_name_template, parse_every, parse_expires_after, parse_time_zone

Read = tuple[Any, str | None]  # (the value, None) or (None, why not)

_TAG = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL, TIMESTAMP, MERGE = (
    _TAG + name for name in ("str", "int", "float", "bool", "null", "timestamp", "merge")
)
# Plain decimal only: YAML 1.1 also reads 0x10, 0o20, 1:30 and (dangerously) 0500 = octal 320.
DECIMAL = re.compile(r"[-+]?(0|[1-9][0-9_]*)")
LEADING_ZERO = re.compile(r"[-+]?0[0-9_]+")
DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIMESTAMPS = yaml.constructor.SafeConstructor()


def is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == NULL


def is_quoted(node: yaml.ScalarNode) -> bool:
    return node.style in ("'", '"')


def describe(node: yaml.Node) -> str:
    """What the user wrote, in words: "a list", "a number (5000.5)", "text ('5000')"."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    text = shorten(node.value)
    kinds = {
        NULL: "an empty value",
        BOOL: f"a boolean ({text})",
        INT: f"a number ({text})",
        FLOAT: f"a number ({text})",
        TIMESTAMP: f"a date ({text})",
        STR: f"text ('{text}')",
    }
    return kinds.get(node.tag, f"a value tagged {node.tag} ({text})")


# --------------------------------------------------------------------------- the readers, by kind


def whole_number(node: yaml.Node) -> Read:
    problem = _whole_number_problem(node)
    if problem:
        return None, problem
    value = _bounded_int(node.value)
    if value < 0:
        return None, f"must be 0 or more, got {shorten(node.value)}"
    if value > MAX_WHOLE_NUMBER:
        return None, _too_large_message(node.value)
    return value, None


def line_of_text(node: yaml.Node) -> Read:
    problem = _name_problem(node, empty_allowed=True)
    return (None, problem) if problem else (node.value, None)


def template(node: yaml.Node) -> Read:
    problem = _name_problem(node, default=f'"{DEFAULT_GRANT_NAME}"')
    if problem:
        return None, problem
    try:
        check_name_template(node.value)
    except ValueError as error:
        return None, str(error)
    return node.value, None


def uuid_value(node: yaml.Node) -> Read:
    # Ids are opaque text: any scalar's text is tried (a digits-only UUID would read as an int).
    if isinstance(node, yaml.ScalarNode) and not is_null(node):
        try:
            return str(uuid.UUID(node.value)), None
        except ValueError:
            return None, f"'{shorten(node.value)}' is not a UUID; expected e.g. {EXAMPLE_UUID}"
    return None, f"expected a UUID, e.g. {EXAMPLE_UUID}, got {describe(node)}"


def timestamp(node: yaml.Node) -> Read:
    """(UTC "YYYY-MM-DDTHH:MM:SS.mmmZ", None) or (None, why not)."""
    fix = f"write it with a time zone, e.g. {EXAMPLE_TIMESTAMP}"
    if not isinstance(node, yaml.ScalarNode) or node.tag not in (TIMESTAMP, STR):
        return None, f"expected an ISO 8601 timestamp, got {describe(node)}; {fix}"
    text = node.value
    moment = _parse_timestamp(node)
    if moment is None:
        return None, f"'{shorten(text)}' is not a valid ISO 8601 timestamp; {fix}"
    if not isinstance(moment, datetime):
        example = f"{moment.isoformat()}T23:59:59Z"
        return None, f"'{text}' is a date without a time and time zone; write it with a time zone, e.g. {example}"
    if moment.utcoffset() is None:
        example = f"{moment.isoformat()}Z"
        return None, f"'{text}' has no time zone; write it with a time zone, e.g. {example}"
    try:
        return format_timestamp(moment), None  # milliseconds, as the API shows timestamps
    except OverflowError:
        return None, f"'{text}' is out of range; {fix}"


def calendar_date(node: yaml.Node) -> Read:
    """(the date, None) or (None, why not): YYYY-MM-DD, plain (a YAML 1.1 date) or quoted."""
    example = "write it as YYYY-MM-DD, e.g. 2026-01-01"
    if not isinstance(node, yaml.ScalarNode) or node.tag not in (TIMESTAMP, STR):
        return None, f"expected a date, got {describe(node)}; {example}"
    text = node.value
    if DATE_ONLY.fullmatch(text):
        try:
            return date.fromisoformat(text), None
        except ValueError:
            return None, f"'{text}' is not a day of the calendar; {example}"
    moment = _parse_timestamp(node) if text[:1].isdigit() else None
    if isinstance(moment, datetime):
        return None, (
            f"'{shorten(text)}' is a time, not a date: periods start at local midnight in the grant's timeZone; "
            f"write the day only, e.g. {moment.date().isoformat()}"
        )
    return None, f"'{shorten(text)}' is not a date; {example}"


def boolean(node: yaml.Node) -> Read:
    if isinstance(node, yaml.ScalarNode) and node.tag == BOOL:
        return _TIMESTAMPS.construct_yaml_bool(node), None
    if isinstance(node, yaml.ScalarNode) and node.tag == STR and node.value.strip().lower() in ("true", "false"):
        return None, f"expected true or false, got text ('{node.value}'); remove the quotes"
    return None, f"expected true or false, got {describe(node)}"


def _parsed_text(parse: Callable[[str], Any], kind: Kind) -> Callable[[yaml.Node], Read]:
    """A reader of text that grants.py parses; its ValueError says what is wrong and what is expected."""

    def read(node: yaml.Node) -> Read:
        if not isinstance(node, yaml.ScalarNode) or node.tag != STR:
            return None, f"expected {kind.value}, got {describe(node)}"
        try:
            return parse(node.value), None
        except ValueError as error:
            return None, str(error)

    return read


def time_zone(node: yaml.Node) -> Read:
    zone, problem = _parsed_text(parse_time_zone, Kind.TIME_ZONE)(node)
    return (None, problem) if zone is None else (node.value, None)


READERS: dict[Kind, Callable[[yaml.Node], Read]] = {
    Kind.WHOLE: whole_number,
    Kind.TEXT: line_of_text,
    Kind.UUID: uuid_value,
    Kind.TIMESTAMP: timestamp,
    Kind.EVERY: _parsed_text(parse_every, Kind.EVERY),
    Kind.DURATION: _parsed_text(parse_expires_after, Kind.DURATION),
    Kind.TIME_ZONE: time_zone,
    Kind.TEMPLATE: template,
    Kind.DATE: calendar_date,
    Kind.BOOLEAN: boolean,
}


# --------------------------------------------------------------------------- why not, in detail


def _whole_number_problem(node: yaml.Node) -> str | None:
    """Why ``node`` is not a plain decimal integer, or None if it is one."""
    expected = "expected a whole number, e.g. 5000"
    if not isinstance(node, yaml.ScalarNode):
        return f"{expected}, got {describe(node)}"
    text = node.value
    if node.tag == INT:
        if DECIMAL.fullmatch(text):
            return None
        if LEADING_ZERO.fullmatch(text):
            return f"'{text}' has a leading zero, which YAML reads as an octal number; write it without the zero"
        return f"'{text}' is not a plain decimal number; write it like 5000"
    if node.tag == FLOAT and _is_whole_float(text):
        return f"{expected}, got {text}; whole numbers are written without a decimal point"
    if node.tag == STR and is_quoted(node) and DECIMAL.fullmatch(text.strip()):
        return f"{expected}, got text ('{text}'); remove the quotes"
    return f"{expected}, got {describe(node)}"


def _bounded_int(text: str) -> int:
    """A plain decimal's value; past the bound, with its sign, when it has more digits than the
    bound (int() refuses thousands of digits, and no such number is allowed anyway)."""
    digits = text.replace("_", "")
    if len(digits.lstrip("+-")) > len(str(MAX_WHOLE_NUMBER)):
        beyond = MAX_WHOLE_NUMBER + 1
        return -beyond if digits.startswith("-") else beyond
    return int(digits)


def _too_large_message(text: str) -> str:
    return (
        f"too large: {shorten(text)}; at most {MAX_WHOLE_NUMBER:,} (2^53-1), "
        "the largest whole number JSON tools such as jq hold exactly"
    )


def _is_whole_float(text: str) -> bool:
    try:
        number = float(text.replace("_", ""))
    except ValueError:  # .nan, .inf, 1:30.5 and the like
        return False
    return math.isfinite(number) and number.is_integer()


def _name_problem(node: yaml.Node, default: str = "the batch key", empty_allowed: bool = False) -> str | None:
    """``empty_allowed``: a quoted empty name (``name: ""``) is a name, as batches made by hand may have."""
    if not isinstance(node, yaml.ScalarNode):
        return f"expected text, got {describe(node)}"
    if node.tag == NULL:
        return f"empty; write a name or remove the line (the default is {default})"
    if node.tag != STR:
        return f'expected text, got {describe(node)}; quote it: name: "{shorten(node.value)}"'
    name = node.value
    if name == "" and empty_allowed:
        return None
    if not name.strip() and empty_allowed:
        return f'blank; write a name, "" for no name at all, or remove the line (the default is {default})'
    if not name.strip():
        return f"must not be empty; write a name or remove the line (the default is {default})"
    if "\n" in name or "\r" in name:
        return "must be a single line"
    if name != name.strip():
        # A server may store the name trimmed: a create whose answer is lost could not be recognised.
        return f"starts or ends with spaces ({name!r}); remove them, the API may store the name without them"
    if CONTROL_CHARACTER.search(name):
        return "contains a control character (a tab or another invisible one); remove it"
    if len(name) > MAX_NAME_LENGTH:
        return f"too long: {len(name)} characters, at most {MAX_NAME_LENGTH}"
    return None


def _parse_timestamp(node: yaml.ScalarNode) -> date | datetime | None:
    text = node.value.strip()
    try:
        if DATE_ONLY.fullmatch(text):
            return date.fromisoformat(text)
        return from_iso(text)  # fast, and covers the usual forms
    except ValueError:
        pass
    try:
        # YAML's own timestamp forms, e.g. "2026-1-5 23:59:59 +1" (plain scalars only).
        return _TIMESTAMPS.construct_yaml_timestamp(node) if node.tag == TIMESTAMP else None
    except (ValueError, OverflowError):
        return None
