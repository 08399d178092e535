"""The fast path of the manifest loader: yaml-rs (a compiled YAML parser) and a few checks.

It never reports an error. It returns a file's declarations only when it is sure the
located loader (provisioner.manifest.located_reader, PyYAML) would return exactly the same, and None
otherwise: the loader then reads that file the located way, which is the judge and the
source of every message. So the good path pays nothing for error quality.

"Sure" means:

- the file is plain block YAML: every line is blank, a comment, ``---``, or one
  ``key: value`` on one line, whose value is absent, a plain scalar, or a quoted one that
  closes on the same line (no tags, anchors, aliases, flow or block scalars, no escapes);
- each value is written in a form YAML 1.1 and yaml-rs read alike *for its field*: a
  whole number is plain decimal (``0500``, ``0x10``, ``1e3`` are not), text that YAML 1.1
  would read as another type (``yes``, ``2026``, ``2026-01-01``) is quoted, a timestamp
  is quoted or one YAML 1.1 reads as a timestamp or text; these forms are one pattern
  (``_lines_pattern``), built from the field table (fields.py);
- yaml-rs parses the file (so it is valid YAML, without duplicate keys), every key is
  text to it (``2026:`` is a number to yaml-rs and the key "2026" to the located reader:
  left to the latter), and the keys it finds, in document order, are one per key line;
- every value passes the field's rule (fastvalues.py), as the located loader would pass
  it (a grant's ``every``, ``expiresAfter``, ``timeZone`` and ``name`` through the same
  grant_rules.py checks; its dates written YYYY-MM-DD, its ``catchUp`` as plain ``true`` or
  ``false``), no two clients of the file share an id, and no grant key is also a batch key
  of its client.

Positions (for ``source``) come from the key lines: the n-th key of the document in
pre-order is on the n-th key line.
"""

from __future__ import annotations

import functools
import re

try:
    import yaml_rs
except ImportError:  # a default dependency; without it (a platform with no wheel) the located reader reads every file
    yaml_rs = None  # type: ignore[assignment]

from provisioner.core.addresses import KEY
from provisioner.core.models import DEFAULT_GRANT_NAME
from provisioner.manifest import grant_rules, yaml11
from provisioner.manifest.fast_values import UNKNOWN, Unsure, readers
from provisioner.manifest.fields import (
    BATCH_RULES,
    CLIENT_RULES,
    GRANT_RULES,
    MAX_NAME_LENGTH,
    POLICY_RULES,
    Kind,
)

# A file's declarations, as plain data (it is what the cache stores):
# {"policy": None | [line, {attribute: value}],
#  "clients": [[key, id, line, column], ...],
#  "batches": [[client key, batch key, name, startingBalance, expiresOn, creditAccountId, line, column], ...],
#  "grants": [[client key, grant key, every, from, until, timeZone, startingBalance, name, expiresAfter,
#              creditAccountId, catchUp, line, column], ...]}
# (every and expiresAfter as grant_rules.py writes them back, dates as YYYY-MM-DD, defaults filled in)
Record = dict

# The compiled parser this reader uses, as the caches name it (what they hold depends on it).
PARSER = f"yaml-rs {yaml_rs.__version__}" if yaml_rs is not None else "no yaml-rs"


# --------------------------------------------------------------------------- line shapes

_COMMENT = r"(?:[ \t]+#[^\n]*)?[ \t]*"
_END = _COMMENT + r"(?:\n|\Z)"
_QUOTED = r"(?:\"[^\"\\\n]*\"|'[^'\n]*')"
# A plain scalar that starts with no indicator; it ends before " #" or trailing blanks.
_PLAIN = r"[^\s#'\"!&*|>{}\[\]%@`,?:\-]\S*+(?:[ \t]+[^\s#]\S*+)*+"


def _plain_not(tags: tuple[str, ...]) -> str:
    """A plain scalar that YAML 1.1 reads as none of ``tags``. Most text starts with a
    character none of them can start with: that is checked first, as it is cheap."""
    return rf"(?:(?=[^yYnNtTfFoO~<=.+\-0-9]){_PLAIN}|(?!{yaml11.pattern_of(*tags)}{_END}){_PLAIN})"


ALL_TYPES = tuple(yaml11.IMPLICIT)
# How a value may be written, by the kind of its field.
_TEXT_FORM = rf"(?:{_QUOTED}|{_plain_not(ALL_TYPES)})"
_VALUE_FORMS = {
    Kind.WHOLE: r"[-+]?(?:0|[1-9][0-9_]*)",
    Kind.TEXT: _TEXT_FORM,
    Kind.TIMESTAMP: rf"(?:{_QUOTED}|{_plain_not(tuple(t for t in ALL_TYPES if t != 'timestamp'))})",
    Kind.UUID: rf"(?:{_QUOTED}|{_PLAIN})",
    Kind.EVERY: _TEXT_FORM,
    Kind.DURATION: _TEXT_FORM,
    Kind.TIME_ZONE: _TEXT_FORM,
    Kind.TEMPLATE: _TEXT_FORM,
    # A plain date is a date to YAML 1.1 and text to yaml-rs: both read as that day.
    Kind.DATE: rf"(?:{_QUOTED}|[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}})",
    # YAML 1.1 also reads yes, on, True... as booleans, YAML 1.2 not all of them: left to the judge.
    Kind.BOOLEAN: r"(?:true|false)",
}
_OTHER_VALUE = rf"(?:{_QUOTED}|{_PLAIN})"  # keys that hold mappings: the tree checks the rest


@functools.cache  # compiled when a file is first read: a plan of cached files never needs it
def _lines_pattern() -> re.Pattern:
    by_kind: dict[Kind, set[str]] = {}
    for rules in (POLICY_RULES, CLIENT_RULES, BATCH_RULES, GRANT_RULES):
        for name, rule in rules.items():
            if rule.kind in _VALUE_FORMS:
                by_kind.setdefault(rule.kind, set()).add(name)
    special = sorted(name for names in by_kind.values() for name in names)
    key_lines = [rf"(?:{'|'.join(sorted(names))}):(?:[ \t]+{_VALUE_FORMS[kind]})?" for kind, names in by_kind.items()]
    key_lines.append(rf"(?!(?:{'|'.join(special)}):)[A-Za-z0-9_][A-Za-z0-9_.\-]*:(?:[ \t]+{_OTHER_VALUE})?")
    line = rf" *(?:(?:{'|'.join(key_lines)}){_COMMENT}|[ \t]*(?:#[^\n]*)?)|---{_COMMENT}"
    return re.compile(rf"(?>(?:{line})(?:\n|\Z))*+")


# Characters on which YAML 1.1 (PyYAML) and yaml-rs may disagree: controls, line breaks
# other than \n (\r, NEL, LS, PS), the byte order mark, surrogates' neighbours.
_UNSAFE_TEXT = re.compile("[^\t\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")
_SAFE_ASCII = bytes(range(0x20, 0x7F)) + b"\t\n"


def _decode(data: bytes) -> str:
    if data.isascii():
        if data.translate(None, _SAFE_ASCII):
            raise Unsure
        return data.decode("ascii")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Unsure from None
    if _UNSAFE_TEXT.search(text):
        raise Unsure
    return text


# --------------------------------------------------------------------------- reading


def read(data: bytes) -> Record | None:
    """The file's declarations, or None when only the located loader may judge it."""
    if yaml_rs is None:
        return None
    try:
        text = _decode(data)
        plain = _all_plain(data, text)
        if not plain and _lines_pattern().fullmatch(text) is None:
            return None
        try:
            tree = yaml_rs.loads(text, parse_datetime=False)
        except Exception:  # any parse problem: the located loader explains it
            return None
        if plain and not _plain_values_fit(tree) and _lines_pattern().fullmatch(text) is None:
            return None
        return _FileWalk(text).record(tree)
    except Unsure:
        return None


# --------------------------------------------------------------------------- plain files
#
# Most files are written plainly: keys, plain values, comments. For those, what the line
# pattern makes sure of is made sure of more cheaply: the text holds none of the characters
# that start quoting, tags, anchors, aliases, flow or block collections, block scalars,
# directives or complex keys, no tab, no second document, no value starting with an indicator
# or a number written with a leading zero (0500, 0o17, 0x10); and in the parsed tree every
# field is one of the kinds below, and no text value is one YAML 1.1 reads as another type
# (yes, 2026, 2026-01-01, ~). A file that is not plain, or has another field (a kind added
# later), is checked by the line pattern as before.

_NOT_PLAIN = "\"'!&*|>{}[]%@`?\t"
_PLAIN_ASCII = bytes(byte for byte in _SAFE_ASCII if chr(byte) not in _NOT_PLAIN)
_NOT_PLAIN_TEXT = re.compile(f"[{re.escape(_NOT_PLAIN)}]")
_LEADING_ZERO = re.compile(r":[ \t]+[-+]?0[0-9oOxXbB_]")
_INDICATOR_VALUE = re.compile(r":[ \t]+[-,?:]")  # a value starting with an indicator (the pattern refuses them)
_PLAIN_KINDS = (Kind.WHOLE, Kind.TEXT, Kind.UUID, Kind.TIMESTAMP, Kind.BATCHES)


def _all_plain(data: bytes, text: str) -> bool:
    if data.isascii():
        if data.translate(None, _PLAIN_ASCII):
            return False
    elif _NOT_PLAIN_TEXT.search(text):
        return False
    if "\n---" in text or "\n..." in text or _LEADING_ZERO.search(text) or _INDICATOR_VALUE.search(text):
        return False
    return not text.startswith(("---", "...")) or text.split("\n", 1)[0].rstrip(" ") == "---"


def _plain_fields(rules: dict) -> tuple[frozenset[str], tuple[str, ...]]:
    """(the fields of these kinds, those holding text)."""
    fields = frozenset(name for name, rule in rules.items() if rule.kind in _PLAIN_KINDS)
    return fields, tuple(name for name in fields if rules[name].kind is Kind.TEXT)


_PLAIN_POLICY, _PLAIN_CLIENT, _PLAIN_BATCH = map(_plain_fields, (POLICY_RULES, CLIENT_RULES, BATCH_RULES))
_PLAIN_TOP = frozenset(("policy", "clients"))
# Text YAML 1.1 reads as another type starts with one of these.
_TYPED_START = frozenset("yYnNtTfFoO~<=.+-0123456789")
_TYPED = re.compile(yaml11.pattern_of(*(tag for tag in yaml11.IMPLICIT)))


def _plain_values_fit(tree) -> bool:
    """Whether a plain file's fields are all of the plain kinds and its text values mean text to YAML 1.1."""
    if type(tree) is not dict or not tree.keys() <= _PLAIN_TOP:
        return tree is None
    policy, clients = tree.get("policy"), tree.get("clients")
    if type(policy) is dict and not _fits(policy, _PLAIN_POLICY):
        return False
    if type(clients) is not dict:
        return True  # null, or what the walk refuses
    for client in clients.values():
        if type(client) is not dict:
            continue
        if not _fits(client, _PLAIN_CLIENT):
            return False
        batches = client.get("batches")
        if type(batches) is dict:
            for batch in batches.values():
                if type(batch) is dict and not _fits(batch, _PLAIN_BATCH):
                    return False
    return True


def _fits(mapping: dict, fields: tuple[frozenset[str], tuple[str, ...]]) -> bool:
    names, texts = fields
    if not mapping.keys() <= names:
        return False
    for name in texts:
        value = mapping.get(name)
        if type(value) is str and value[:1] in _TYPED_START and _TYPED.fullmatch(value):
            return False
    return True


class _FileWalk:
    """Checks one parsed file against the field rules, numbering its keys in document order."""

    def __init__(self, text: str):
        self.lines = text.split("\n")
        if self.lines[-1] == "":
            self.lines.pop()
        self.keys = 0  # keys met so far in pre-order: the index of the next key's line
        self.key_lines: list[int] | None = None  # line numbers of the key lines; None: every line
        self.client_ids: set[str] = set()  # two clients sharing an id: the located reader says where

    def record(self, tree) -> Record:
        record: Record = {"policy": None, "clients": [], "batches": [], "grants": []}
        if tree is not None and type(tree) is not dict:
            raise Unsure
        policy_index = None
        for name, value in (tree or {}).items():
            index = self.keys
            self.keys += 1
            if name == "policy":
                policy_index, policy = index, self.policy(value)
            elif name == "clients":
                self.clients(value, record)
            else:
                raise Unsure
        self.number_key_lines()
        if policy_index is not None:
            record["policy"] = [self.line_of(policy_index), policy]
        self.place(record["clients"])
        self.place(record["batches"])
        self.place(record["grants"])
        return record

    # -- sections

    def policy(self, value) -> dict:
        if value is None:
            return {}
        if type(value) is not dict:
            raise Unsure
        self.keys += len(value)
        values = {}
        for name, written in value.items():
            attribute, reader = _POLICY.get(name, UNKNOWN)
            values[attribute] = reader(written)
        return values

    def clients(self, value, record: Record) -> None:
        if value is None:
            return
        if type(value) is not dict:
            raise Unsure
        for key, client in value.items():
            if type(key) is not str or not KEY.fullmatch(key) or type(client) is not dict:
                raise Unsure
            index = self.keys
            self.keys += 1
            fields = {}
            batch_rows = grant_rows = None
            for name, written in client.items():
                self.keys += 1
                attribute, reader = _CLIENT.get(name, UNKNOWN)
                if attribute == "batches":  # their keys come next
                    batch_rows = self.batches(written)
                elif attribute == "grants":
                    grant_rows = self.grants(written)
                else:
                    fields[attribute] = reader(written)
            if "id" not in fields or fields["id"] in self.client_ids:
                raise Unsure
            self.client_ids.add(fields["id"])
            record["clients"].append([key, fields["id"], index])
            account = fields.get("credit_account_id")
            if batch_rows:
                for row in batch_rows:
                    row[0] = key
                    if row[5] is None:
                        row[5] = account
                record["batches"].extend(batch_rows)
            if grant_rows:
                if batch_rows and {row[1] for row in grant_rows} & {row[1] for row in batch_rows}:
                    raise Unsure  # a grant key that is also a batch key
                for row in grant_rows:
                    row[0] = key
                    if row[9] is None:
                        row[9] = account
                record["grants"].extend(grant_rows)

    def batches(self, value) -> list:
        if value is None:
            return []
        if type(value) is not dict:
            raise Unsure
        rows = []
        full_match = KEY.fullmatch
        for key, batch in value.items():
            if type(key) is not str or type(batch) is not dict or not full_match(key):
                raise Unsure
            index = self.keys
            self.keys += 1 + len(batch)
            values = {}
            for name, written in batch.items():
                attribute, reader = _BATCH.get(name, UNKNOWN)
                values[attribute] = reader(written)
            if "starting_balance" not in values:
                raise Unsure
            rows.append(
                [
                    None,  # the client key, filled in by the caller
                    key,
                    values.get("name", key),
                    values["starting_balance"],
                    values.get("expires_on"),
                    values.get("credit_account_id"),
                    index,
                ]
            )
        return rows

    def grants(self, value) -> list:
        if value is None:
            return []
        if type(value) is not dict:
            raise Unsure
        rows = []
        for key, grant in value.items():
            if type(key) is not str or type(grant) is not dict or not KEY.fullmatch(key):
                raise Unsure
            index = self.keys
            self.keys += 1 + len(grant)
            values = {}
            for name, written in grant.items():
                attribute, reader = _GRANT.get(name, UNKNOWN)
                values[attribute] = reader(written)
            if "every" not in values or "from_date" not in values or "starting_balance" not in values:
                raise Unsure
            every, until = values["every"], values.get("until")
            if until is not None and until < values["from_date"]:  # YYYY-MM-DD: text order is date order
                raise Unsure
            name = values.get("name", DEFAULT_GRANT_NAME)
            expires_after = values.get("expires_after")
            try:
                grant_rules.check_name_length(name, key, every, MAX_NAME_LENGTH)
            except ValueError:
                raise Unsure from None
            rows.append(
                [
                    None,  # the client key, filled in by the caller
                    key,
                    every.text,
                    values["from_date"],
                    until,
                    values.get("time_zone", "UTC"),
                    values["starting_balance"],
                    name,
                    None if expires_after is None else expires_after.text,
                    values.get("credit_account_id"),
                    values.get("catch_up", True),
                    index,
                ]
            )
        return rows

    # -- positions

    def number_key_lines(self) -> None:
        """Checks that there is one key line per key, and where they are."""
        if len(self.lines) == self.keys:
            return  # every line is a key line
        self.key_lines = [number for number, line in enumerate(self.lines, 1) if _is_key_line(line)]
        if len(self.key_lines) != self.keys:
            raise Unsure

    def line_of(self, key_index: int) -> int:
        return key_index + 1 if self.key_lines is None else self.key_lines[key_index]

    def place(self, rows: list) -> None:
        """Replaces each row's key index (its last item) by the key's line and column."""
        lines = self.lines
        for row in rows:
            line = self.line_of(row[-1])
            text = lines[line - 1]
            row[-1] = line
            row.append(len(text) - len(text.lstrip(" ")) + 1)


def _is_key_line(line: str) -> bool:
    stripped = line.lstrip(" \t")
    return bool(stripped) and stripped[0] != "#" and not line.startswith("---")


# Field name -> (attribute, value reader), by section.
_POLICY = readers(POLICY_RULES)
_CLIENT = readers(CLIENT_RULES)
_BATCH = readers(BATCH_RULES)
_GRANT = readers(GRANT_RULES)
