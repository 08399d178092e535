"""Start from an existing instance: write manifests for the batches clients already have, and record them.

``provisioner import --generate-config-out DIR --client KEY=ID`` (Terraform's ``plan
-generate-config-out``, octoDNS's ``octodns-dump``): each client's batches are listed (every page,
paced like any run), one manifest per client is written under DIR, and every batch written is
recorded in the state in one write, so that the next plan says "No changes". Nothing is written
when anything is refused; a batch some address already records is left out and named, so that a
second run over the same clients changes nothing.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from provisioner.api.client import CreditsApi
from provisioner.applying.listings import ClientListings
from provisioner.applying.refresh import observe
from provisioner.backends.base import StateWriter
from provisioner.backends.journal import fsync_directory
from provisioner.core.addresses import KEY, KEY_RULE
from provisioner.core.models import Desired, Resource, batch_key
from provisioner.core.timestamps import format_timestamp
from provisioner.render.manifest_yaml import (
    Declaration,
    canonical_uuid,
    declaration,
    in_key_order,
    render_manifest,
    unique_keys,
)
from provisioner.render.progress import Progress

SCHEMA_FILE = "manifest.schema.json"
STAGING_THREADS = 8


class GenerateError(Exception):
    """The generation was refused; nothing was written (no file, nothing in state)."""


@dataclass(frozen=True)
class ClientToImport:
    key: str  # the client key the manifest declares
    id: str  # the client's id, canonical (lower case)
    given: str = ""  # where it was given, for messages: "--client" or "clients.csv:3"


@dataclass(frozen=True)
class Skipped:
    client_key: str
    batch_id: str
    reason: str
    address: str | None = None  # the address that records it already, if that is why


@dataclass
class Generated:
    """What a generation wrote: the manifest files, the batches recorded (per client key), what was left out."""

    files: list[Path] = field(default_factory=list)
    recorded: dict[str, int] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    schema_file: Path | None = None  # written beside the manifests (there was none)

    @property
    def total(self) -> int:
        return sum(self.recorded.values())


# --- the clients given ------------------------------------------------------------------------


def parse_client(text: str, given: str = "--client") -> ClientToImport:
    """KEY=CLIENT_ID, as --client gives it."""
    key, equals, client_id = text.partition("=")
    key, client_id = key.strip(), client_id.strip()
    if not equals or not key or not client_id:
        raise GenerateError(
            f"{given} {text!r}: expected KEY=CLIENT_ID, e.g. acme=6a0c1d7e-3b2f-4c1a-9e8d-7f6a5b4c3d21."
        )
    if not KEY.fullmatch(key):
        raise GenerateError(f"{given} {text!r}: the client key {key!r} is not a key; a key is {KEY_RULE}.")
    canonical = canonical_uuid(client_id)
    if canonical is None:
        raise GenerateError(f"{given} {text!r}: {client_id!r} is not a client id (a UUID).")
    return ClientToImport(key=key, id=canonical, given=given)


def read_clients_file(path: Path) -> list[ClientToImport]:
    """A CSV of key,id, one client a line; a first line "key,id" is a header; blank lines and lines
    starting with '#' are skipped."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise GenerateError(f"--clients {path}: no such file; it is a CSV of key,id (one client a line).") from None
    except UnicodeDecodeError:
        raise GenerateError(f"--clients {path}: not UTF-8 text; it is a CSV of key,id (one client a line).") from None
    clients = []
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [cell.strip() for cell in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if number == 1 and [cell.lower() for cell in cells] == ["key", "id"]:
            continue
        where = f"{path}:{number}"
        if len(cells) != 2:
            raise GenerateError(
                f"{where}: expected two columns, key and id (e.g. acme,6a0c1d7e-...), got {len(cells)}."
            )
        clients.append(parse_client(f"{cells[0]}={cells[1]}", given=where))
    if not clients:
        raise GenerateError(f"--clients {path}: no clients in it; write one key,id a line.")
    return clients


def check_clients(clients: Sequence[ClientToImport], desired: Desired) -> None:
    """Each client once, and none that the manifests given with it declare already."""
    if not clients:
        raise GenerateError("no clients to import: give --client KEY=CLIENT_ID (again for more), or --clients FILE.")
    keys: dict[str, ClientToImport] = {}
    ids: dict[str, ClientToImport] = {}
    for client in clients:
        for seen, value, what in ((keys, client.key, "key"), (ids, client.id, "id")):
            earlier = seen.get(value)
            if earlier is not None:
                raise GenerateError(
                    f"{client.given}: the client {what} {value} is given twice (also at {earlier.given}); "
                    "each client once. Nothing was written."
                )
            seen[value] = client
    declared_ids = {spec.id.lower(): spec for spec in desired.clients.values()}
    for client in clients:
        spec = desired.clients.get(client.key) or declared_ids.get(client.id)
        if spec is not None:
            raise GenerateError(
                f"{client.given}: client {client.key} ({client.id}) is declared already, as {spec.key} ({spec.id}) "
                f"at {spec.source}. Its batches are managed from there: import one with 'provisioner import "
                f"{spec.key}/BATCH_KEY BATCH_ID PATHS...' after declaring it, or leave the client out. Nothing was "
                "written."
            )


def manifest_path(out_dir: Path, client_key: str) -> Path:
    return out_dir / f"{client_key}.yaml"


def check_out_dir(out_dir: Path, clients: Iterable[ClientToImport]) -> None:
    """DIR may exist, but none of the files to write may: a generated file never replaces one."""
    if out_dir.exists() and not out_dir.is_dir():
        raise GenerateError(f"--generate-config-out {out_dir}: a file, not a directory. Nothing was written.")
    existing = [str(path) for path in (manifest_path(out_dir, client.key) for client in clients) if path.exists()]
    if existing:
        shown = ", ".join(existing[:5]) + (f" and {len(existing) - 5} more" if len(existing) > 5 else "")
        raise GenerateError(
            f"{shown} exist{'s' if len(existing) == 1 else ''} already: a generated manifest never replaces "
            "a file. Nothing was written. Choose another --generate-config-out directory, or move the file aside."
        )


# --- the run ---------------------------------------------------------------------------------------


def generate_config(
    writer: StateWriter,
    api: CreditsApi,
    clients: Sequence[ClientToImport],
    out_dir: Path,
    desired: Desired,
    now: datetime,
    *,
    parallelism: int = 10,
    reporter: Progress | None = None,
) -> Generated:
    """Lists the clients' batches, writes one manifest per client under ``out_dir`` and records every
    batch written, in one state write. The caller holds the state's lock (``writer``)."""
    check_clients(clients, desired)
    check_out_dir(out_dir, clients)
    _check_open_creates(writer, clients)
    listed_at = format_timestamp(now)
    recorded_at = _recorded_addresses(writer)
    taken = _taken_keys(writer)
    by_id = {client.id: client for client in clients}

    def manifest(client_id: str, listing: Sequence[Mapping]) -> _ClientManifest:
        client = by_id[client_id.lower()]
        return _client_manifest(client, listing, recorded_at, taken.get(client.key, set()), now, listed_at)

    listings = _ListingsMadeInto(api, manifest)
    observe(api, [client.id for client in clients], parallelism=parallelism, reporter=reporter, listings=listings)
    result = Generated()
    texts: dict[Path, str] = {}
    resources: dict[str, Resource] = {}
    for client in clients:
        made = listings.made.get(client.id) or manifest(client.id, listings.current(client.id))
        result.skipped += made.skipped
        if made.text is None:
            continue
        texts[manifest_path(out_dir, client.key)] = made.text
        resources.update(made.resources)
        result.recorded[client.key] = len(made.resources)
    if texts:
        result.schema_file = _write_all(
            out_dir, texts, lambda: writer.record_all(resources, instance=api.instance), clients
        )
    result.files = sorted(texts)
    return result


@dataclass
class _ClientManifest:
    text: str | None  # None: no file for this client
    resources: dict[str, Resource]
    skipped: list[Skipped]


class _ListingsMadeInto(ClientListings):
    """Each client's manifest is made as soon as its listing arrives, in the listing's worker: the
    work overlaps the waits of the rate limit instead of following them."""

    def __init__(self, api: CreditsApi, make):
        super().__init__(api)
        self._make = make
        self.made: dict[str, _ClientManifest] = {}

    def current(self, client_id: str):
        listing = super().current(client_id)
        if client_id.lower() not in self.made:
            self.made[client_id.lower()] = self._make(client_id, listing)
        return listing


def _client_manifest(
    client: ClientToImport,
    listing: Sequence[Mapping],
    recorded_at: Mapping[str, str],
    taken: set[str],
    now: datetime,
    listed_at: str,
) -> _ClientManifest:
    skipped: list[Skipped] = []
    written, remote = _declarations(client, listing, recorded_at, now, skipped)
    if not written and len(listing) > 0:
        # Every batch recorded already (or one a manifest cannot hold): no second declaration of the client.
        return _ClientManifest(None, {}, skipped)
    ordered = in_key_order(written)
    pairs = list(zip(unique_keys([item.name for item in ordered], taken), ordered, strict=True))
    resources = {
        f"{client.key}/{key}": Resource(
            batch_id=item.batch_id,
            client_id=client.id,
            attributes=item.attributes(client.id),
            remote=remote[item.batch_id],
        )
        for key, item in pairs
    }
    return _ClientManifest(render_manifest(client.key, client.id, pairs, listed_at), resources, skipped)


def _check_open_creates(writer: StateWriter, clients: Sequence[ClientToImport]) -> None:
    """An interrupted create for one of these clients may have made one of the batches listed:
    adopting it under a new address would leave that create to be made again."""
    ids = {client.id for client in clients}
    for intent in writer.open_intents():
        if intent.client_id.lower() in ids:
            raise GenerateError(
                f"an interrupted apply was creating {intent.address} for client {intent.client_id}, and the batch "
                "it may have made would be adopted under another address (and made again). Run 'provisioner "
                "apply' first: it records that batch or settles the create. Nothing was written."
            )


def _recorded_addresses(writer: StateWriter) -> dict[str, str]:
    """Batch key -> the address recording it."""
    return {batch_key(resource.batch_id): address for address, resource in writer.state.resources.items()}


def _taken_keys(writer: StateWriter) -> dict[str, set[str]]:
    """By client key, the batch keys its addresses record or are creating: never given to another batch."""
    taken: dict[str, set[str]] = {}
    for address in [*writer.state.resources, *writer.state.pending]:
        client_key, _, key = address.partition("/")
        taken.setdefault(client_key, set()).add(key)
    return taken


def _declarations(
    client: ClientToImport,
    listing: Sequence[Mapping],
    recorded_at: Mapping[str, str],
    now: datetime,
    skipped: list[Skipped],
) -> tuple[list[Declaration], dict[str, dict]]:
    written: list[Declaration] = []
    remote: dict[str, dict] = {}
    for batch in listing:
        batch_id = batch.get("id")
        if batch_id in (None, "") or isinstance(batch_id, (dict, list, bool)):
            skipped.append(Skipped(client.key, "(none)", "it is listed without an id"))
            continue
        address = recorded_at.get(batch_key(batch_id))
        if address is not None:
            skipped.append(Skipped(client.key, str(batch_id), f"recorded already as {address}", address))
            continue
        made = declaration(batch, client.id, now)
        if isinstance(made, str):
            skipped.append(
                Skipped(
                    client.key,
                    str(batch_id),
                    f"{made}, which a manifest cannot declare; declare it by hand (another name is changed at the next "
                    f"apply), then 'provisioner import {client.key}/BATCH_KEY {batch_id} PATHS...'",
                )
            )
            continue
        written.append(made)
        remote[made.batch_id] = dict(batch)
    return written, remote


def _write_durably(path: Path, text: str) -> None:
    with open(path, "x", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _write_all(out_dir: Path, texts: Mapping[Path, str], record, clients: Iterable[ClientToImport]) -> Path | None:
    """Every manifest written beside its place first, then the state write, then each put in place:
    a failure before the state write leaves nothing; the state write is all or nothing."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staged = {path: path.with_name(f".{path.name}.{os.getpid()}.tmp") for path in texts}
    try:
        # Several at once: each file's fsync waits for the disk, and a thousand of them one by one add seconds.
        with ThreadPoolExecutor(max_workers=STAGING_THREADS) as pool:
            for _ in pool.map(lambda path: _write_durably(staged[path], texts[path]), texts):
                pass
        check_out_dir(out_dir, clients)  # one made meanwhile is still refused
        record()
    except BaseException:
        for temporary in staged.values():
            temporary.unlink(missing_ok=True)
        raise
    for path, temporary in staged.items():
        os.replace(temporary, path)
    schema = out_dir / SCHEMA_FILE
    written = None
    if not schema.exists():
        from provisioner.manifest.schema import (
            manifest_schema,  # here: only a generation that writes files needs it
        )

        schema.write_text(json.dumps(manifest_schema(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written = schema
    fsync_directory(out_dir)
    return written
