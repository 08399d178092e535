"""The located manifest reader: libyaml's node tree, walked by hand.

It walks the nodes instead of calling ``yaml.safe_load``: nodes carry line and column,
and they still show duplicate keys, which PyYAML's constructor silently collapses
(keeping the last one). It is the judge of what a manifest means (YAML 1.1, as PyYAML
reads it) and the source of every message: each problem becomes a ``ManifestIssue``
naming file, line, column and field path, and all of them are reported at once. What each
kind of value means, and the messages when it is wrong, are values.py's; the document itself
(syntax, and whether it is a manifest at all) is documents.py's.

The loader (manifest.py) calls it only for files the fast reader cannot vouch for, and
to report errors; it is imported then, not at start-up.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from provisioner.core.addresses import KEY, KEY_RULE
from provisioner.core.file_marks import is_saved_plan_data
from provisioner.core.models import DEFAULT_GRANT_NAME, BatchSpec, ClientSpec, Desired, GrantSpec, Policy
from provisioner.manifest.documents import NOT_A_MANIFEST_HINT, compose, not_a_manifest
from provisioner.manifest.fields import (
    BATCH_FIELDS,
    BATCH_RULES,
    CLIENT_FIELDS,
    CLIENT_RULES,
    GRANT_FIELDS,
    GRANT_RULES,
    MAX_NAME_LENGTH,
    POLICY_FIELDS,
    TOP_FIELDS,
    Kind,
    Rule,
    shorten,
)
from provisioner.manifest.files import add_to_digest, find_files, read_bytes, saved_plan_issue
from provisioner.manifest.grant_rules import check_name_length, check_until
from provisioner.manifest.issues import ManifestError, ManifestIssue
from provisioner.manifest.located_values import MERGE, READERS, describe, is_null


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
        root = compose(str(path), data, issues)
        _FileReader(str(path), collector).read(root)
    if issues:
        raise ManifestError(issues)
    return collector.desired(digest.hexdigest())


def read_one(file: str, data: bytes) -> dict | None:
    """One file's declarations in the fast reader's record form, or None if it has problems
    (``load`` then reports them, with those of every other file)."""
    issues: list[ManifestIssue] = []
    collector = _Collector(issues)
    _FileReader(file, collector).read(compose(file, data, issues))
    if issues:
        return None
    return collector.record()


# --------------------------------------------------------------------------- node helpers

_MAX_MERGE_DEPTH = 10

Entry = tuple[str, yaml.Node, yaml.Node]  # key text, key node, value node


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


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
            [
                b["client_key"],
                b["batch_key"],
                b["name"],
                b["starting_balance"],
                b["expires_on"],
                b["credit_account_id"],
                *_line_column(b["source"]),
            ]
            for b in self.batches
        ]
        grants = [
            [
                g["client_key"],
                g["grant_key"],
                g["every"].text,
                g["from_date"].isoformat(),
                None if g["until"] is None else g["until"].isoformat(),
                g["time_zone"],
                g["starting_balance"],
                g["name"],
                None if g["expires_after"] is None else g["expires_after"].text,
                g["credit_account_id"],
                g["catch_up"],
                *_line_column(g["source"]),
            ]
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
        reason = not_a_manifest(root)
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
            values[POLICY_FIELDS[alias]] = self.value(value_node, f"policy.{alias}", Kind.WHOLE)
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
        values = self.values(fields, CLIENT_RULES, key_node, path)
        client_id = values["id"]
        self.register_client(key, key_node, client_id, fields.get("id"))
        owner = {"client_key": key, "client_id": client_id, "credit_account_id": values["credit_account_id"]}
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
        values = self.values(fields, BATCH_RULES, key_node, path)
        name, account = values["name"], values["credit_account_id"]
        self.collector.batches.append(
            {
                **owner,
                "batch_key": key,
                **values,
                "name": key if name is None else name,
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
                key_node,
                path,
                f"'{shorten(key)}' is also a batch key of client {client} (line {line}); give the grant "
                f"another key, so that {client}/{shorten(key)} names one thing",
            )
        expected = (
            "a mapping with 'every', 'from' and 'startingBalance' (and optionally 'until', 'timeZone', "
            "'name', 'expiresAfter', 'creditAccountId', 'catchUp')"
        )
        fields = self.fields(node, path, GRANT_FIELDS, expected, hints=_GRANT_HINTS)
        if fields is None:
            return
        values = self.values(fields, GRANT_RULES, key_node, path)
        every, from_date, until, name = values["every"], values["from_date"], values["until"], values["name"]
        if from_date is not None and until is not None:
            self.check(lambda: check_until(from_date, until), fields["until"][1], f"{path}.until")
        if name is not None and every is not None:
            self.check(lambda: check_name_length(name, key, every, MAX_NAME_LENGTH), fields["name"][1], f"{path}.name")
        time_zone, account, catch_up = values["time_zone"], values["credit_account_id"], values["catch_up"]
        self.collector.grants.append(
            {
                "client_key": client,
                "grant_key": key,
                "client_id": owner["client_id"],
                **values,
                "time_zone": "UTC" if time_zone is None else time_zone,
                "name": DEFAULT_GRANT_NAME if name is None else name,
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
        self,
        node: yaml.Node,
        path: str,
        known: dict[str, str],
        expected: str,
        nests: str | None = None,
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
        if is_null(node):
            return []
        if not isinstance(node, yaml.MappingNode):
            self.report(node, path, f"expected {expected}, got {describe(node)}")
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
                self.report(key_node, path, f"expected a plain key, got {describe(key_node)}")
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
                self.report(source, path, f"'<<' merges mappings only, got {describe(source)}")
        return entries

    # -- values

    def values(self, fields: dict, rules: dict[str, Rule], owner: yaml.Node, path: str) -> dict[str, Any]:
        """Each value rule's attribute -> its field's value; None when the field is absent (a required one is
        reported missing, unless a typo of it was) or its value is wrong (reported)."""
        values: dict[str, Any] = {}
        for name, rule in rules.items():
            if rule.kind not in READERS:  # a mapping: read on its own
                continue
            values[rule.attribute] = None
            if name in fields:
                values[rule.attribute] = self.value(fields[name][1], _join(path, name), rule.kind)
            elif rule.required and _join(path, name) not in self.suggested:
                self.report(owner, _join(path, name), f"required field missing; add e.g. '{rule.example}'")
        return values

    def value(self, node: yaml.Node, field: str, kind: Kind) -> Any:
        """The value of ``node`` as a ``kind`` (values.py); None, reported, if it is not one."""
        value, problem = READERS[kind](node)
        if problem:
            self.report(node, field, problem)
        return value


# Unknown fields that are known mistakes: what to write instead.
_GRANT_HINTS = {
    "expiresOn": "a grant's batches expire a fixed time after their period starts: write e.g. 'expiresAfter: 12 months' "
    "(one fixed expiresOn would come before later periods start)",
    "batches": "a grant declares no batches: each period that begins is one (address client/grant@period)",
    **dict.fromkeys(
        ("start", "starts", "startsOn", "startDate", "since"), "did you mean 'from'? (the day the first period starts)"
    ),
    **dict.fromkeys(
        ("end", "ends", "endsOn", "endDate", "to", "till"), "did you mean 'until'? (no period starts after it)"
    ),
}
_BATCH_HINTS = {
    name: f"'{name}' belongs to a recurring grant: declare it under the client's 'grants:', not 'batches:'"
    for name in GRANT_FIELDS
    if name not in BATCH_FIELDS
}
