"""What the manifests declare, file by file, checked across files, and made into ``Desired``.

The loader (manifest.py) reads each file's declarations (from the cache, the fast or the
located reader) into a ``DeclaredFile``: its head (policy, clients, grants) and its batch
rows. ``Declarations`` holds them together; the rules that span files are checked as each
head is added, and ``desired()`` makes the models, or the plan memo (planmemo.py) makes those
of the clients it must plan again (``batch_specs``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.core.bulk import constructor
from provisioner.core.models import BatchSpec, ClientSpec, Desired, GrantSpec, Policy
from provisioner.manifest.files import read_whole
from provisioner.manifest.issues import ManifestError, ManifestIssue

if TYPE_CHECKING:
    from provisioner.manifest.cache import ManifestCache


class DeclaredFile:
    """One manifest file's declarations: its head (policy, clients: read with every file) and its
    batch rows (read when they are needed: from the cache, only then decoded)."""

    __slots__ = ("path", "name", "content", "head", "_rows", "_text", "_cache", "_files")

    def __init__(
        self,
        path: str,
        content: str,
        head: dict,
        rows: list | None = None,
        text: bytes | memoryview | None = None,
        cache: ManifestCache | None = None,
        files: Sequence[str | Path] = (),
    ):
        if type(head) is not dict or not isinstance(head.get("clients"), list) or "policy" not in head:
            raise ValueError("not a file's declarations")
        self.path = path
        self.name = str(path)  # as messages and sources name it
        self.content = content  # sha256 of the file's bytes
        self.head = head
        self._rows = rows
        self._text = text  # the rows as JSON, from the cache
        self._cache, self._files = cache, files

    def rows(self) -> list:
        """The batch rows; a cache entry that does not decode is read from the file again (and the
        cache dropped: it is rebuilt by the next command)."""
        if self._rows is None:
            try:
                rows = json.loads(bytes(self._text or b""))  # b"": not JSON, read again
                if type(rows) is not list or not all(type(row) is list and len(row) == 8 for row in rows):
                    raise ValueError("not batch rows")
                self._rows = rows
            except (ValueError, TypeError):
                self._rows = self._read_again()
        return self._rows

    def _read_again(self) -> list:
        # The readers, imported here: only a damaged cache entry needs them.
        from provisioner.manifest import fast_reader, located_reader

        if self._cache is not None:
            self._cache.discard(self._files)
        data = read_whole(self.path)
        if hashlib.sha256(data).hexdigest() != self.content:
            raise ManifestError([ManifestIssue(self.name, 0, 0, "", "changed while being read; run the command again")])
        record = fast_reader.read(data) or located_reader.read_one(self.name, data)
        if record is None:  # it was read before: only a changed file can fail now, and its digest says it did not
            raise ManifestError([ManifestIssue(self.name, 0, 0, "", "could not be read again; run the command again")])
        return record["batches"]


class Declarations:
    """What the manifests declare, file by file, checked across files; ``desired()`` makes the models."""

    def __init__(
        self,
        files: list[DeclaredFile],
        combined: Combined | None,
        digest: str,
        ready: Desired | None = None,
        paths: list[str] | None = None,
    ):
        self.files = files
        self.paths = [file.path for file in files] if paths is None else paths  # as found (the caches' tree)
        self.digest = digest  # sha256 over the files' names and bytes
        self._combined = combined
        self._ready = ready

    @property
    def policy(self) -> Policy:
        if self._ready is not None:
            return self._ready.policy
        assert self._combined is not None  # declarations are either ready or combined
        return self._combined.policy_model()

    @property
    def batches_only(self) -> bool:
        """Every file declares only a policy, clients and batches (the plan memo knows nothing else)."""
        if self._ready is not None:
            return False
        return all(
            not value for file in self.files for key, value in file.head.items() if key not in ("policy", "clients")
        )

    def desired(self) -> Desired:
        if self._ready is None:
            combined = self._combined
            assert combined is not None  # declarations are either ready or combined
            for file in self.files:
                try:
                    combined.add_batches(file.name, file.head, file.rows())
                except (ValueError, TypeError, KeyError):
                    # A cache entry of the wrong types (what is written was checked): read the file again.
                    file._rows = file._read_again()
                    combined.add_batches(file.name, file.head, file.rows())
            self._ready = combined.desired(self.digest)
        return self._ready


class Combined:
    """Every file's declarations together, checked against the rules that span files.

    The batches of each file become models as the file's rows are added, so that no second
    copy of 100,000 batches is held in memory. Their values were checked by the reader that
    made the record (or, read back from the cache, are checked for their types here), so
    the models are made without validating them again.
    """

    def __init__(self):
        self.clients: dict[str, ClientSpec] = {}
        self.client_ids: set[str] = set()
        self.batches: dict[str, BatchSpec] = {}
        self.grants: dict[str, GrantSpec] = {}
        self.policy: dict | None = None
        self.policy_source: str | None = None
        self.shared: dict = {}

    def add_head(self, file: str, head: dict) -> bool:
        """False when a rule that spans files is broken: the located reader then says where."""
        if head["policy"] is not None:
            if self.policy_source is not None:
                return False
            line, self.policy = head["policy"]
            self.policy_source = f"{file}:{line}"
        ids = {}
        for key, client_id, line, column in head["clients"]:
            if not (type(key) is str and type(client_id) is str and type(line) is int and type(column) is int):
                raise ValueError(f"{file}: a client of the wrong types: {key!r}")
            if key in self.clients or client_id in self.client_ids:
                return False
            self.client_ids.add(client_id)
            ids[key] = client_id
            self.clients[key] = _client_spec({"key": key, "id": client_id, "source": f"{file}:{line}:{column}"})
        for row in head.get("grants", ()):  # few: made (and checked) with the head
            grant = _grant_spec(file, row, ids)
            self.grants[grant.address] = grant
        return True

    def add_batches(self, file: str, head: dict, rows: list) -> None:
        ids = {key: client_id for key, client_id, _, _ in head["clients"]}
        specs = list(batch_specs(file, rows, ids, self.shared))  # all checked before any is added
        batches = self.batches
        for spec in specs:
            batches[f"{spec.client_key}/{spec.batch_key}"] = spec

    def policy_model(self) -> Policy:
        return Policy(**self.policy) if self.policy is not None else Policy()

    def desired(self, digest: str) -> Desired:
        return Desired(
            clients=dict(sorted(self.clients.items())),
            batches=dict(sorted(self.batches.items())),
            grants=dict(sorted(self.grants.items())),
            policy=self.policy_model(),
            policy_source=self.policy_source,
            digest=digest,
        )


_batch_spec = constructor(BatchSpec)
_client_spec = constructor(ClientSpec)


def batch_specs(file: str, rows: list, ids: dict[str, str], shared: dict) -> Iterator[BatchSpec]:
    """The models of a record's batch rows. ``ids``: the client ids by key; ``shared``: values
    that repeat across batches (client keys, expiries, accounts), kept once. A row of the
    wrong shape or types (a cache entry that is not what the readers wrote) is a ValueError."""
    shared_value = shared.setdefault
    for client_key, batch_key, name, balance, expires_on, account, line, column in rows:
        if not (
            type(client_key) is str
            and type(batch_key) is str
            and type(name) is str
            and type(balance) is int
            and (expires_on is None or type(expires_on) is str)
            and (account is None or type(account) is str)
            and type(line) is int
            and type(column) is int
        ):
            raise ValueError(f"{file}: a batch row of the wrong types: {client_key!r}/{batch_key!r}")
        yield _batch_spec(
            {
                "client_key": shared_value(client_key, client_key),
                "batch_key": batch_key,
                "client_id": ids[client_key],
                "name": name,
                "starting_balance": balance,
                "expires_on": shared_value(expires_on, expires_on),
                "credit_account_id": shared_value(account, account),
                "source": f"{file}:{line}:{column}",
                "grant": None,
                "period": None,
            }
        )


def _grant_spec(file: str, row: list, ids: dict[str, str]) -> GrantSpec:
    """A grant from a file's record: its rules were checked when the file was read."""
    from provisioner.manifest.grant_rules import parse_every, parse_expires_after

    (
        client_key,
        grant_key,
        every,
        from_date,
        until,
        time_zone,
        balance,
        name,
        expires_after,
        account,
        catch_up,
        line,
        column,
    ) = row
    return GrantSpec(
        client_key=client_key,
        grant_key=grant_key,
        client_id=ids[client_key],
        every=parse_every(every),
        from_date=date.fromisoformat(from_date),
        until=None if until is None else date.fromisoformat(until),
        time_zone=time_zone,
        starting_balance=balance,
        name=name,
        expires_after=None if expires_after is None else parse_expires_after(expires_after),
        credit_account_id=account,
        catch_up=catch_up,
        source=f"{file}:{line}:{column}",
    )
