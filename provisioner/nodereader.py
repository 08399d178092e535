"""The located manifest reader: libyaml's node tree, walked by hand.

It walks the nodes instead of calling ``yaml.safe_load``: nodes carry line and column,
and they still show duplicate keys, which PyYAML's constructor silently collapses
(keeping the last one). It is the judge of what a manifest means (YAML 1.1, as PyYAML
reads it) and the source of every message: each problem becomes a ``ManifestIssue``
naming file, line, column and field path, and all of them are reported at once.

The loader (manifest.py) calls it only for files the fast reader cannot vouch for, and
to report errors; it is imported then, not at start-up.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from provisioner.fields import (
    BATCH_FIELDS,
    CLIENT_FIELDS,
    DEFAULT_GRANT_NAME,
    EXAMPLE_TIMESTAMP,
    EXAMPLE_UUID,
    GRANT_FIELDS,
    KEY,
    KEY_RULE,
    CONTROL_CHARACTER,
    MAX_NAME_LENGTH,
    MAX_WHOLE_NUMBER,
    POLICY_FIELDS,
    TOP_FIELDS,
    Kind,
    shorten,
)
from provisioner.grants import (
    check_name_length,
    check_name_template,
    check_until,
    parse_every,
    parse_expires_after,
    parse_time_zone,
)
from provisioner.manifest import (
    ManifestError,
    ManifestIssue,
    add_to_digest,
    find_files,
    read_bytes,
    saved_plan_issue,
)
from provisioner.models import BatchSpec, ClientSpec, Desired, Every, GrantSpec, Policy, Step
from provisioner.planfile import is_saved_plan_data
from provisioner.timestamps import format_timestamp, from_iso


def load(paths: Sequence[str | Path]) -> Desired:
    """Read, validate and combine the manifests; raise ManifestError listing every problem."""
    files, issues = find_files(paths)
    collector = _Collector(issues)
    digest = hashlib.sha256()
    for path in files:
        data = read_bytes(path, issues)
        if data is None:
            continue
        add_to_digest(digest, path, data)
        if is_saved_plan_data(data):
            issues.append(saved_plan_issue(str(path)))
            continue
        root = _compose(str(path), data, issues)
        _FileReader(str(path), collector).read(root)
    if issues:
        raise ManifestError(issues)
    return collector.desired(digest.hexdigest())


def read_one(file: str, data: bytes) -> dict | None:
    """One file's declarations in the fast reader's record form, or None if it has problems
    (``load`` then reports them, with those of every other file)."""
    issues: list[ManifestIssue] = []
    collector = _Collector(issues)
    _FileReader(file, collector).read(_compose(file, data, issues))
    if issues:
        return None
    return collector.record()


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose(file: str, data: bytes, issues: list[ManifestIssue]) -> yaml.Node | None:
    try:
        return yaml.compose(data, Loader=_LOADER)
    except yaml.MarkedYAMLError as error:
        issues.append(_syntax_issue(file, error, data))
    except yaml.reader.ReaderError as error:
        line, column = _line_and_column(data, error.position)
        reason = str(error).splitlines()[0]
        issues.append(ManifestIssue(file, line, column, "", f"not valid UTF-8 text: {reason}"))
    except yaml.YAMLError as error:
        issues.append(ManifestIssue(file, 0, 0, "", f"invalid YAML: {error}"))
    return None


def _syntax_issue(file: str, error: yaml.MarkedYAMLError, data: bytes) -> ManifestIssue:
    mark = error.problem_mark or error.context_mark
    message = f"invalid YAML: {error.problem or error.context}"
    if mark and _is_tab(data, mark):
        message = "invalid YAML: a tab where YAML expects indentation; indent with spaces, not tabs"
    elif error.problem and error.context and error.context_mark:
        message += f" ({error.context} started on line {error.context_mark.line + 1})"
    line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
    return ManifestIssue(file, line, column, "", message)


def _is_tab(data: bytes, mark: yaml.Mark) -> bool:
    lines = data.split(b"\n")
    return mark.line < len(lines) and lines[mark.line].lstrip(b" ")[:1] == b"\t"


def _line_and_column(data: bytes, position: int) -> tuple[int, int]:
    before = data[:position]
    return before.count(b"\n") + 1, position - (before.rfind(b"\n") + 1) + 1


# --------------------------------------------------------------------------- node helpers

_TAG = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL, TIMESTAMP, MERGE = (
    _TAG + name for name in ("str", "int", "float", "bool", "null", "timestamp", "merge")
)
# Plain decimal only: YAML 1.1 also reads 0x10, 0o20, 1:30 and (dangerously) 0500 = octal 320.
DECIMAL = re.compile(r"[-+]?(0|[1-9][0-9_]*)")
LEADING_ZERO = re.compile(r"[-+]?0[0-9_]+")
DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIMESTAMPS = yaml.constructor.SafeConstructor()
_MAX_MERGE_DEPTH = 10

Entry = tuple[str, yaml.Node, yaml.Node]  # key text, key node, value node


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == NULL


def _is_quoted(node: yaml.ScalarNode) -> bool:
    return node.style in ("'", '"')


def _describe(node: yaml.Node) -> str:
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


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# --------------------------------------------------------------------------- telling manifests from other YAML

NOT_A_MANIFEST_HINT = "pass the directory of your manifests, not a parent of other YAML files"
# Fields that only a client or a batch has: an entry holding one is a manifest's, misplaced.
ENTRY_FIELDS = (frozenset(CLIENT_FIELDS) | frozenset(BATCH_FIELDS)) - {"name"}


def _not_a_manifest(root: yaml.Node) -> str | None:
    """Why a document is no manifest at all (a CI workflow, say), or None if it is meant as one, however wrong."""
    if _is_null(root):
        return None
    if not isinstance(root, yaml.MappingNode):
        return f"its top level is {_describe(root)}, not a mapping with 'clients' or 'policy'"
    if not root.value or any(_meant_for_a_manifest(key, value) for key, value in root.value):
        return None
    return "no 'clients' or 'policy' at its top level"


def _meant_for_a_manifest(key: yaml.Node, value: yaml.Node) -> bool:
    """A top-level entry that shows its file is meant as a manifest: a manifest key or a typo of one
    ('cleints:'), a policy limit or a client written without the mapping around it, or a merge."""
    if key.tag == MERGE:
        return True
    if not isinstance(key, yaml.ScalarNode):
        return False
    if key.value in POLICY_FIELDS or difflib.get_close_matches(key.value, TOP_FIELDS, n=1):
        return True
    return isinstance(value, yaml.MappingNode) and any(
        isinstance(field, yaml.ScalarNode) and field.value in ENTRY_FIELDS for field, _ in value.value
    )


# --------------------------------------------------------------------------- collecting across files


class _Collector:
    """What all files declare so far; checks the rules that span files."""

    def __init__(self, issues: list[ManifestIssue]):
        self.issues = issues
        self.clients: dict[str, dict] = {}
        self.client_ids: dict[str, tuple[str, str]] = {}  # id -> (client key, source)
        self.batches: list[dict] = []
        self.grants: list[dict] = []
        self.policy: dict | None = None
        self.policy_source: str | None = None

    def record(self) -> dict:
        """What one file declared, as the fast reader's record (sources as line and column)."""
        policy = None
        if self.policy_source is not None:
            policy = [int(self.policy_source.rsplit(":", 1)[1]), self.policy]
        clients = [[c["key"], c["id"], *_line_column(c["source"])] for c in self.clients.values()]
        batches = [
            [b["client_key"], b["batch_key"], b["name"], b["starting_balance"], b["expires_on"],
             b["credit_account_id"], *_line_column(b["source"])]
            for b in self.batches
        ]
        grants = [
            [g["client_key"], g["grant_key"], g["every"].text, g["from_date"].isoformat(),
             None if g["until"] is None else g["until"].isoformat(), g["time_zone"], g["starting_balance"],
             g["name"], None if g["expires_after"] is None else g["expires_after"].text, g["credit_account_id"],
             g["catch_up"], *_line_column(g["source"])]
            for g in self.grants
        ]
        return {"policy": policy, "clients": clients, "batches": batches, "grants": grants}

    def desired(self, digest: str) -> Desired:
        clients = {key: ClientSpec(**fields) for key, fields in sorted(self.clients.items())}
        specs = sorted((BatchSpec(**fields) for fields in self.batches), key=lambda spec: spec.address)
        grants = sorted((GrantSpec(**fields) for fields in self.grants), key=lambda grant: grant.address)
        return Desired(
            clients=clients,
            batches={spec.address: spec for spec in specs},
            grants={grant.address: grant for grant in grants},
            policy=Policy(**self.policy) if self.policy is not None else Policy(),
            policy_source=self.policy_source,
            digest=digest,
        )


def _line_column(source: str) -> list[int]:
    _, line, column = source.rsplit(":", 2)
    return [int(line), int(column)]


# --------------------------------------------------------------------------- reading one file


class _FileReader:
    """Walks one file's node tree; reports problems and hands results to the collector."""

    def __init__(self, file: str, collector: _Collector):
        self.file = file
        self.collector = collector
        # Paths of fields an unknown field was taken for a typo of ("did you mean ...?"):
        # reporting such a field as missing as well would say the same thing twice.
        self.suggested: set[str] = set()

    # -- reporting

    def report(self, node: yaml.Node, field: str, message: str) -> None:
        mark = node.start_mark
        self.collector.issues.append(ManifestIssue(self.file, mark.line + 1, mark.column + 1, field, message))

    def source(self, node: yaml.Node) -> str:
        mark = node.start_mark
        return f"{self.file}:{mark.line + 1}:{mark.column + 1}"

    # -- structure

    def read(self, root: yaml.Node | None) -> None:
        if root is None:
            return
        reason = _not_a_manifest(root)
        if reason:
            message = f"not a provisioner manifest ({reason}); {NOT_A_MANIFEST_HINT}"
            self.collector.issues.append(ManifestIssue(self.file, 1, 1, "", message))
            return
        fields = self.fields(root, "", TOP_FIELDS, "a mapping with 'policy' and/or 'clients'", nests="clients")
        if fields is None:
            return
        if "policy" in fields:
            self.read_policy(*fields["policy"])
        if "clients" in fields:
            self.read_clients(fields["clients"][1])

    def read_policy(self, key_node: yaml.Node, node: yaml.Node) -> None:
        previous = self.collector.policy_source
        if previous is not None:
            self.report(key_node, "policy", f"policy is already declared at {previous}; declare it in one file only")
        fields = self.fields(node, "policy", POLICY_FIELDS, "a mapping of policy limits")
        if fields is None:
            return
        values = {}
        for alias, (_, value_node) in fields.items():
            values[POLICY_FIELDS[alias]] = self.whole_number(value_node, f"policy.{alias}")
        if previous is not None:
            return
        mark = key_node.start_mark
        self.collector.policy = values
        self.collector.policy_source = f"{self.file}:{mark.line + 1}"

    def read_clients(self, node: yaml.Node) -> None:
        entries = self.entries(node, "clients", "a mapping of client keys to clients")
        for key, key_node, value_node in entries or ():
            self.read_client(key, key_node, value_node)

    def read_client(self, key: str, key_node: yaml.Node, node: yaml.Node) -> None:
        path = f"clients.{key}"
        self.check_key(key_node, key, "client", path)
        expected = "a mapping with 'id' (and optionally 'creditAccountId', 'batches', 'grants')"
        fields = self.fields(node, path, CLIENT_FIELDS, expected, nests="batches")
        if fields is None:
            return
        client_id = self.required(fields, "id", key_node, path, self.uuid_value, f"id: {EXAMPLE_UUID}")
        account = self.optional(fields, "creditAccountId", path, self.uuid_value)
        self.register_client(key, key_node, client_id, fields.get("id"))
        owner = {"client_key": key, "client_id": client_id, "credit_account_id": account}
        batch_keys: dict[str, yaml.Node] = {}
        if "batches" in fields:
            batches = self.entries(fields["batches"][1], f"{path}.batches", Kind.BATCHES.value)
            for batch_key, batch_key_node, batch_node in batches or ():
                batch_keys[batch_key] = batch_key_node
                self.read_batch(owner, batch_key, batch_key_node, batch_node)
        if "grants" in fields:
            grants = self.entries(fields["grants"][1], f"{path}.grants", Kind.GRANTS.value)
            for grant_key, grant_key_node, grant_node in grants or ():
                self.read_grant(owner, grant_key, grant_key_node, grant_node, batch_keys)

    def register_client(self, key: str, key_node: yaml.Node, client_id: str | None, id_field: Any) -> None:
        """Check the rules that span files: one file per client key, one key per client id."""
        clients, ids = self.collector.clients, self.collector.client_ids
        if key in clients:
            where = clients[key]["source"]
            message = f"client '{key}' is also declared at {where}; declare each client in one file only"
            self.report(key_node, f"clients.{key}", message)
            return
        here = self.source(key_node)
        clients[key] = {"key": key, "id": client_id, "source": here}
        if client_id is None:
            return
        if client_id in ids:
            other_key, where = ids[client_id]
            message = f"client id {client_id} is also used by client '{other_key}' at {where}"
            self.report(id_field[1], f"clients.{key}.id", message + "; give each client one key only")
            return
        ids[client_id] = (key, here)

    def read_batch(self, owner: dict, key: str, key_node: yaml.Node, node: yaml.Node) -> None:
        path = f"clients.{owner['client_key']}.batches.{key}"
        self.check_key(key_node, key, "batch", path)
        expected = "a mapping with 'startingBalance' (and optionally 'name', 'expiresOn', 'creditAccountId')"
        fields = self.fields(node, path, BATCH_FIELDS, expected, hints=_BATCH_HINTS)
        if fields is None:
            return
        starting_balance = self.required(
            fields, "startingBalance", key_node, path, self.whole_number, "startingBalance: 5000"
        )
        name = self.optional(fields, "name", path, self.name_value)
        expires_on = self.optional(fields, "expiresOn", path, self.timestamp_value)
        account = self.optional(fields, "creditAccountId", path, self.uuid_value)
        self.collector.batches.append(
            {
                **owner,
                "batch_key": key,
                "name": key if name is None else name,
                "starting_balance": starting_balance,
                "expires_on": expires_on,
                "credit_account_id": owner["credit_account_id"] if account is None else account,
                "source": self.source(key_node),
            }
        )

    def read_grant(
        self, owner: dict, key: str, key_node: yaml.Node, node: yaml.Node, batch_keys: dict[str, yaml.Node]
    ) -> None:
        client = owner["client_key"]
        path = f"clients.{client}.grants.{key}"
        self.check_key(key_node, key, "grant", path)
        if key in batch_keys:
            line = batch_keys[key].start_mark.line + 1
            self.report(
                key_node, path,
                f"'{shorten(key)}' is also a batch key of client {client} (line {line}); give the grant "
                f"another key, so that {client}/{shorten(key)} names one thing",
            )
        expected = "a mapping with 'every', 'from' and 'startingBalance' (and optionally 'until', 'timeZone', " \
            "'name', 'expiresAfter', 'creditAccountId', 'catchUp')"
        fields = self.fields(node, path, GRANT_FIELDS, expected, hints=_GRANT_HINTS)
        if fields is None:
            return
        every = self.required(fields, "every", key_node, path, self.every_value, "every: quarter")
        from_date = self.required(fields, "from", key_node, path, self.date_value, "from: 2026-01-01")
        until = self.optional(fields, "until", path, self.date_value)
        if from_date is not None and until is not None:
            self.check(lambda: check_until(from_date, until), fields["until"][1], f"{path}.until")
        time_zone = self.optional(fields, "timeZone", path, self.time_zone_value)
        starting_balance = self.required(
            fields, "startingBalance", key_node, path, self.whole_number, "startingBalance: 5000"
        )
        name = self.optional(fields, "name", path, self.template_value)
        if name is not None and every is not None:
            self.check(lambda: check_name_length(name, key, every, MAX_NAME_LENGTH), fields["name"][1], f"{path}.name")
        expires_after = self.optional(fields, "expiresAfter", path, self.expires_after_value)
        account = self.optional(fields, "creditAccountId", path, self.uuid_value)
        catch_up = self.optional(fields, "catchUp", path, self.boolean_value)
        self.collector.grants.append(
            {
                "client_key": client,
                "grant_key": key,
                "client_id": owner["client_id"],
                "every": every,
                "from_date": from_date,
                "until": until,
                "time_zone": "UTC" if time_zone is None else time_zone,
                "starting_balance": starting_balance,
                "name": DEFAULT_GRANT_NAME if name is None else name,
                "expires_after": expires_after,
                "credit_account_id": owner["credit_account_id"] if account is None else account,
                "catch_up": True if catch_up is None else catch_up,
                "source": self.source(key_node),
            }
        )

    def check(self, rule: Callable[[], Any], node: yaml.Node, field: str) -> bool:
        """Runs a rule of grants.py, whose ValueError says what is wrong and what is expected."""
        try:
            rule()
        except ValueError as error:
            self.report(node, field, str(error))
            return False
        return True

    def check_key(self, key_node: yaml.Node, key: str, kind: str, path: str) -> None:
        if not KEY.fullmatch(key):
            self.report(key_node, path, f"invalid {kind} key '{shorten(key)}'; use {KEY_RULE}")

    # -- mappings

    def fields(
        self, node: yaml.Node, path: str, known: dict[str, str], expected: str, nests: str | None = None,
        hints: dict[str, str] | None = None,
    ) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
        """The known fields of a mapping by name; unknown ones are reported.

        ``nests`` names the field under which a misplaced entry probably belongs
        (a batch written straight under its client, say), for a better hint; ``hints``
        says more about an unknown field that is a known mistake.
        """
        entries = self.entries(node, path, expected)
        if entries is None:
            return None
        found = {}
        for name, key_node, value_node in entries:
            if name in known:
                found[name] = (key_node, value_node)
            elif hints and name in hints:
                meant = re.match(r"did you mean '(\w+)'", hints[name])
                if meant:
                    self.suggested.add(_join(path, meant[1]))
                self.report(key_node, _join(path, name), f"unknown field; {hints[name]}")
            else:
                hint = self.unknown_field_hint(name, value_node, known, path, nests)
                self.report(key_node, _join(path, name), f"unknown field; {hint}")
        return found

    def unknown_field_hint(
        self, name: str, value_node: yaml.Node, known: dict[str, str], path: str, nests: str | None
    ) -> str:
        close = difflib.get_close_matches(name, known, n=1)
        if close:
            self.suggested.add(_join(path, close[0]))
            return f"did you mean '{close[0]}'?"
        if nests and isinstance(value_node, yaml.MappingNode) and KEY.fullmatch(name):
            return f"expected one of: {', '.join(known)} (if '{name}' is meant as an entry, put it under '{nests}:')"
        return f"expected one of: {', '.join(known)}"

    def entries(self, node: yaml.Node, path: str, expected: str) -> list[Entry] | None:
        """A mapping's entries, duplicates reported; None (reported) if it is not a mapping.

        An empty value (``clients:`` with everything commented out) counts as an empty mapping.
        """
        if _is_null(node):
            return []
        if not isinstance(node, yaml.MappingNode):
            self.report(node, path, f"expected {expected}, got {_describe(node)}")
            return None
        return self.mapping_entries(node, path, depth=0)

    def mapping_entries(self, node: yaml.MappingNode, path: str, depth: int) -> list[Entry]:
        first_seen: dict[str, yaml.Node] = {}
        entries: list[Entry] = []
        merged: list[Entry] = []
        for key_node, value_node in node.value:
            if key_node.tag == MERGE:
                merged.extend(self.merged_entries(value_node, path, depth))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.report(key_node, path, f"expected a plain key, got {_describe(key_node)}")
                continue
            # Keys are taken as written: `2026:` or `2026-01-01:` are keys "2026" and "2026-01-01".
            key = key_node.value
            first = first_seen.get(key)
            if first is not None:
                first_line = first.start_mark.line + 1
                message = f"duplicate key '{shorten(key)}' (first on line {first_line}); remove one of them"
                message += " (YAML alone would silently keep the last)"
                self.report(key_node, _join(path, key), message)
                continue
            first_seen[key] = key_node
            entries.append((key, key_node, value_node))
        # YAML merge keys (`<<: *defaults`): explicit keys win, then earlier merged mappings.
        for entry in merged:
            if entry[0] not in first_seen:
                first_seen[entry[0]] = entry[1]
                entries.append(entry)
        return entries

    def merged_entries(self, node: yaml.Node, path: str, depth: int) -> list[Entry]:
        if depth >= _MAX_MERGE_DEPTH:
            self.report(node, path, "merge keys ('<<') nested too deeply; is an alias referring to itself?")
            return []
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        entries: list[Entry] = []
        for source in sources:
            if isinstance(source, yaml.MappingNode):
                entries.extend(self.mapping_entries(source, path, depth + 1))
            else:
                self.report(source, path, f"'<<' merges mappings only, got {_describe(source)}")
        return entries

    # -- values

    def required(self, fields: dict, name: str, owner: yaml.Node, path: str, parse: Callable, example: str) -> Any:
        if name not in fields:
            if _join(path, name) not in self.suggested:
                self.report(owner, _join(path, name), f"required field missing; add e.g. '{example}'")
            return None
        return parse(fields[name][1], _join(path, name))

    def optional(self, fields: dict, name: str, path: str, parse: Callable) -> Any:
        if name not in fields:
            return None
        return parse(fields[name][1], _join(path, name))

    def whole_number(self, node: yaml.Node, field: str) -> int | None:
        problem = _whole_number_problem(node)
        if problem:
            self.report(node, field, problem)
            return None
        value = _bounded_int(node.value)
        if value < 0:
            self.report(node, field, f"must be 0 or more, got {shorten(node.value)}")
            return None
        if value > MAX_WHOLE_NUMBER:
            self.report(node, field, _too_large_message(node.value))
            return None
        return value

    def template_value(self, node: yaml.Node, field: str) -> str | None:
        problem = _name_problem(node, default=f'"{DEFAULT_GRANT_NAME}"')
        if problem:
            self.report(node, field, problem)
            return None
        return node.value if self.check(lambda: check_name_template(node.value), node, field) else None

    def every_value(self, node: yaml.Node, field: str) -> Every | None:
        return self.parsed_text(node, field, parse_every, Kind.EVERY)

    def expires_after_value(self, node: yaml.Node, field: str) -> Step | None:
        return self.parsed_text(node, field, parse_expires_after, Kind.DURATION)

    def time_zone_value(self, node: yaml.Node, field: str) -> str | None:
        zone = self.parsed_text(node, field, parse_time_zone, Kind.TIME_ZONE)
        return None if zone is None else node.value

    def parsed_text(self, node: yaml.Node, field: str, parse: Callable[[str], Any], kind: Kind) -> Any:
        if not isinstance(node, yaml.ScalarNode) or node.tag != STR:
            self.report(node, field, f"expected {kind.value}, got {_describe(node)}")
            return None
        try:
            return parse(node.value)
        except ValueError as error:
            self.report(node, field, str(error))
            return None

    def date_value(self, node: yaml.Node, field: str) -> date | None:
        value, problem = _date(node)
        if problem:
            self.report(node, field, problem)
        return value

    def boolean_value(self, node: yaml.Node, field: str) -> bool | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == BOOL:
            return _TIMESTAMPS.construct_yaml_bool(node)
        if isinstance(node, yaml.ScalarNode) and node.tag == STR and node.value.strip().lower() in ("true", "false"):
            self.report(node, field, f"expected true or false, got text ('{node.value}'); remove the quotes")
        else:
            self.report(node, field, f"expected true or false, got {_describe(node)}")
        return None

    def name_value(self, node: yaml.Node, field: str) -> str | None:
        problem = _name_problem(node)
        if problem:
            self.report(node, field, problem)
            return None
        return node.value

    def uuid_value(self, node: yaml.Node, field: str) -> str | None:
        # Ids are opaque text: any scalar's text is tried (a digits-only UUID would read as an int).
        if isinstance(node, yaml.ScalarNode) and not _is_null(node):
            try:
                return str(uuid.UUID(node.value))
            except ValueError:
                self.report(node, field, f"'{shorten(node.value)}' is not a UUID; expected e.g. {EXAMPLE_UUID}")
                return None
        self.report(node, field, f"expected a UUID, e.g. {EXAMPLE_UUID}, got {_describe(node)}")
        return None

    def timestamp_value(self, node: yaml.Node, field: str) -> str | None:
        value, problem = _timestamp(node)
        if problem:
            self.report(node, field, problem)
            return None
        return value


def _whole_number_problem(node: yaml.Node) -> str | None:
    """Why ``node`` is not a plain decimal integer, or None if it is one."""
    expected = "expected a whole number, e.g. 5000"
    if not isinstance(node, yaml.ScalarNode):
        return f"{expected}, got {_describe(node)}"
    text = node.value
    if node.tag == INT:
        if DECIMAL.fullmatch(text):
            return None
        if LEADING_ZERO.fullmatch(text):
            return f"'{text}' has a leading zero, which YAML reads as an octal number; write it without the zero"
        return f"'{text}' is not a plain decimal number; write it like 5000"
    if node.tag == FLOAT and _is_whole_float(text):
        return f"{expected}, got {text}; whole numbers are written without a decimal point"
    if node.tag == STR and _is_quoted(node) and DECIMAL.fullmatch(text.strip()):
        return f"{expected}, got text ('{text}'); remove the quotes"
    return f"{expected}, got {_describe(node)}"


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


def _name_problem(node: yaml.Node, default: str = "the batch key") -> str | None:
    if not isinstance(node, yaml.ScalarNode):
        return f"expected text, got {_describe(node)}"
    if node.tag == NULL:
        return f"empty; write a name or remove the line (the default is {default})"
    if node.tag != STR:
        return f"expected text, got {_describe(node)}; quote it: name: \"{shorten(node.value)}\""
    name = node.value
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


def _date(node: yaml.Node) -> tuple[date | None, str | None]:
    """(the date, None) or (None, why not): YYYY-MM-DD, plain (a YAML 1.1 date) or quoted."""
    example = "write it as YYYY-MM-DD, e.g. 2026-01-01"
    if not isinstance(node, yaml.ScalarNode) or node.tag not in (TIMESTAMP, STR):
        return None, f"expected a date, got {_describe(node)}; {example}"
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


# Unknown fields that are known mistakes: what to write instead.
_GRANT_HINTS = {
    "expiresOn": "a grant's batches expire a fixed time after their period starts: write e.g. 'expiresAfter: 12 months' "
    "(one fixed expiresOn would come before later periods start)",
    "batches": "a grant declares no batches: each period that begins is one (address client/grant@period)",
    **dict.fromkeys(("start", "starts", "startsOn", "startDate", "since"), "did you mean 'from'? (the day the first period starts)"),
    **dict.fromkeys(("end", "ends", "endsOn", "endDate", "to", "till"), "did you mean 'until'? (no period starts after it)"),
}
_BATCH_HINTS = {
    name: f"'{name}' belongs to a recurring grant: declare it under the client's 'grants:', not 'batches:'"
    for name in GRANT_FIELDS
    if name not in BATCH_FIELDS
}


def _timestamp(node: yaml.Node) -> tuple[str | None, str | None]:
    """(UTC "YYYY-MM-DDTHH:MM:SS.mmmZ", None) or (None, why not)."""
    fix = f"write it with a time zone, e.g. {EXAMPLE_TIMESTAMP}"
    if not isinstance(node, yaml.ScalarNode) or node.tag not in (TIMESTAMP, STR):
        return None, f"expected an ISO 8601 timestamp, got {_describe(node)}; {fix}"
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

