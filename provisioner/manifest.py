"""Manifest loader: YAML files -> a validated ``Desired``.

Two readers, one meaning:

- the fast reader (fastreader.py) parses with yaml-rs, a compiled YAML parser, and
  returns a file's declarations only when it is sure they are exactly what the located
  reader would return;
- the located reader (nodereader.py) walks libyaml's node tree with positions. It judges
  every file the fast reader is unsure of, and reports every problem of every file at
  once, naming file, line, column and field path.

A file's declarations are kept in a content-addressed cache (manifestcache.py), so that
a second plan re-reads only the files that changed. Fields are described once, in
fields.py; the JSON Schema of ``provisioner schema`` comes from schema.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from provisioner.bulk import paused_gc, share_fields_set
from provisioner.fields import (  # noqa: F401  (re-exported: the names other modules know)
    BATCH_FIELDS,
    CLIENT_FIELDS,
    EXAMPLE_TIMESTAMP,
    EXAMPLE_UUID,
    GRANT_FIELDS,
    KEY_PATTERN,
    KEY_RULE,
    MAX_NAME_LENGTH,
    MAX_WHOLE_NUMBER,
    POLICY_FIELDS,
    TOP_FIELDS,
)
from provisioner.models import BatchSpec, ClientSpec, Desired, GrantSpec, Policy
from provisioner.planfile import MARKER as SAVED_PLAN_MARKER

if TYPE_CHECKING:
    from provisioner.manifestcache import ManifestCache

__all__ = [
    "ManifestIssue",
    "ManifestError",
    "find_manifest_files",
    "load",
    "manifest_schema",
]

MANIFEST_SUFFIXES = (".yaml", ".yml")


# --------------------------------------------------------------------------- issues


class ManifestIssue(NamedTuple):
    """One problem in one place. ``line`` and ``column`` are 1-based; 0 means "the whole file"."""

    file: str
    line: int
    column: int
    field: str  # dotted path, e.g. "clients.acme.batches.2026-q1.startingBalance"
    message: str

    def __str__(self) -> str:
        place = self.file
        if self.line:
            place = f"{place}:{self.line}:{self.column}"
        parts = [part for part in (place, self.field, self.message) if part]
        return ": ".join(parts)


class ManifestError(Exception):
    """The manifests cannot be used; ``issues`` lists every problem found, sorted by place."""

    def __init__(self, issues: Sequence[ManifestIssue]):
        self.issues: list[ManifestIssue] = sorted(set(issues))
        super().__init__("\n".join(str(issue) for issue in self.issues))



def manifest_schema() -> dict:
    """JSON Schema (draft 2020-12) of one manifest file."""
    from provisioner.schema import manifest_schema as schema

    return schema()


# --------------------------------------------------------------------------- finding files


def find_manifest_files(paths: Sequence[str | Path]) -> list[Path]:
    """Files are taken as given; directories give every *.yaml / *.yml below them, sorted."""
    files, issues = find_files(paths)
    if issues:
        raise ManifestError(issues)
    return files


def find_files(paths: Sequence[str | Path]) -> tuple[list[Path], list[ManifestIssue]]:
    files: list[Path] = []
    issues: list[ManifestIssue] = []
    seen: set[str] = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            candidates = _yaml_files_below(path)
        elif path.exists():
            candidates = [(path, os.path.realpath(path))]
        else:
            issues.append(ManifestIssue(str(path), 0, 0, "", "no such file or directory"))
            continue
        for candidate, identity in candidates:
            # A file named directly and also found in a given directory is read once.
            if identity not in seen:
                seen.add(identity)
                files.append(candidate)
    if not files and not issues:
        where = ", ".join(str(Path(p)) for p in paths) or "(no paths given)"
        issues.append(ManifestIssue("", 0, 0, "", f"no *.yaml or *.yml files found in {where}"))
    return files, issues


def _yaml_files_below(directory: Path) -> list[tuple[Path, str]]:
    """(file, its real path) for each manifest below, sorted as paths sort. Hidden files and
    directories (.git, .github, .pre-commit-config.yaml...) are not manifests; symlinked
    directories are not followed (as os.walk does)."""
    found: list[tuple[list[str], str, str]] = []  # (relative parts, path, real path)

    def walk(folder: str, real_folder: str, parts: list[str]) -> None:
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError:
            return
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            try:
                if entry.is_dir():
                    if not entry.is_symlink():
                        walk(entry.path, os.path.join(real_folder, name), [*parts, name])
                    continue
                symlink = entry.is_symlink()
            except OSError:
                continue
            if name.endswith(MANIFEST_SUFFIXES):
                # Without a symlink on the way, the real path is the real folder's plus the name:
                # no system call per file.
                real = os.path.realpath(entry.path) if symlink else os.path.join(real_folder, name)
                found.append(([*parts, name], entry.path, real))

    walk(str(directory), os.path.realpath(directory), [])
    found.sort(key=lambda item: item[0])
    return [(Path(path), real) for _, path, real in found]


# --------------------------------------------------------------------------- loading


class LoadTimings(dict):
    """Seconds spent per step of a load, for bench/plan: pass one to ``load``."""

    def add(self, step: str, seconds: float) -> None:
        self[step] = self.get(step, 0.0) + seconds


def load(
    paths: Sequence[str | Path], cache: ManifestCache | None = None, timings: LoadTimings | None = None
) -> Desired:
    """Read, validate and combine the manifests; raise ManifestError listing every problem.

    Every file is read and hashed; those whose content the cache knows are not parsed
    again, the others go through the fast reader, or the located one when the fast reader
    is unsure. At the first problem of any kind the located reader reads everything again,
    so that every issue of every file is reported, exactly as without the fast path.
    """
    with paused_gc():
        return _load(paths, cache, LoadTimings() if timings is None else timings)


def _load(paths: Sequence[str | Path], cache: ManifestCache | None, timings: LoadTimings) -> Desired:
    from provisioner import fastreader

    clock = time.perf_counter
    started = clock()
    files, issues = find_files(paths)
    if issues:
        return _load_located(paths)
    known = cache.read(files) if cache is not None else {}
    timings.add("cache read", clock() - started)
    digest = hashlib.sha256()
    combined = _Combined()
    used: dict[str, str] = {}  # content digest -> the file's record, as JSON text (what the cache keeps)
    for path in files:
        started = clock()
        data = read_bytes(path, issues)
        if data is None or is_saved_plan(data):
            return _load_located(paths)
        add_to_digest(digest, path, data)
        content = hashlib.sha256(data).hexdigest()
        timings.add("read + digest", clock() - started)
        text = used.get(content) or known.get(content)
        if text is None:
            started = clock()
            record = fastreader.read(data)
            timings.add("fast read (yaml-rs + checks)", clock() - started)
            if record is None:
                started = clock()
                record = _read_located(str(path), data)
                timings.add("located read (PyYAML)", clock() - started)
                if record is None:
                    return _load_located(paths)
            text = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
        else:
            started = clock()
            try:
                record = json.loads(text)
            except (ValueError, TypeError):
                record = None
            timings.add("cache entries", clock() - started)
        used[content] = text
        started = clock()
        try:
            added = combined.add(str(path), record)
        except (ValueError, TypeError, KeyError, AttributeError):  # pydantic's ValidationError is a ValueError
            if not known:
                raise
            # Only a damaged cache gets here (what is written was validated): drop it, start over.
            cache.discard(files)
            return _load(paths, cache, timings)
        timings.add("build Desired", clock() - started)
        if not added:
            return _load_located(paths)
    started = clock()
    desired = combined.desired(digest.hexdigest())
    timings.add("build Desired", clock() - started)
    if cache is not None and used.keys() != known.keys():
        started = clock()
        cache.write(files, used)
        timings.add("cache write", clock() - started)
    return desired


def _load_located(paths: Sequence[str | Path]) -> Desired:
    from provisioner import nodereader

    return nodereader.load(paths)


def _read_located(file: str, data: bytes) -> dict | None:
    from provisioner import nodereader

    return nodereader.read_one(file, data)


class _Combined:
    """Every file's declarations together, checked against the rules that span files.

    Each file's batches become models as soon as the file is read (pydantic's compiled
    core validates a file's list in one call), so that no second copy of 100,000 batches
    is ever held in memory.
    """

    def __init__(self):
        from pydantic import TypeAdapter

        self.batch_list = TypeAdapter(list[BatchSpec])
        self.clients: dict[str, ClientSpec] = {}
        self.client_ids: set[str] = set()
        self.batches: dict[str, BatchSpec] = {}
        self.grants: dict[str, GrantSpec] = {}
        self.policy: dict | None = None
        self.policy_source: str | None = None
        self.shared: dict = {}

    def add(self, file: str, record: dict) -> bool:
        """False when a rule that spans files is broken: the located reader then says where."""
        if record["policy"] is not None:
            if self.policy_source is not None:
                return False
            line, self.policy = record["policy"]
            self.policy_source = f"{file}:{line}"
        ids = {}
        for key, client_id, line, column in record["clients"]:
            if key in self.clients or client_id in self.client_ids:
                return False
            self.client_ids.add(client_id)
            ids[key] = client_id
            self.clients[key] = ClientSpec(key=key, id=client_id, source=f"{file}:{line}:{column}")
        # Values that repeat across batches (client keys, expiries, accounts) are kept once.
        shared = self.shared.setdefault
        specs = self.batch_list.validate_python([
            {
                "client_key": shared(client_key, client_key),
                "batch_key": batch_key,
                "client_id": ids[client_key],
                "name": name,
                "starting_balance": balance,
                "expires_on": shared(expires_on, expires_on),
                "credit_account_id": shared(account, account),
                "source": f"{file}:{line}:{column}",
            }
            for client_key, batch_key, name, balance, expires_on, account, line, column in record["batches"]
        ])
        share_fields_set(specs)
        batches = self.batches
        for spec in specs:
            batches[f"{spec.client_key}/{spec.batch_key}"] = spec
        for row in record["grants"]:
            grant = _grant_spec(file, row, ids)
            self.grants[grant.address] = grant
        return True

    def desired(self, digest: str) -> Desired:
        return Desired(
            clients=dict(sorted(self.clients.items())),
            batches=dict(sorted(self.batches.items())),
            grants=dict(sorted(self.grants.items())),
            policy=Policy(**self.policy) if self.policy is not None else Policy(),
            policy_source=self.policy_source,
            digest=digest,
        )


def _grant_spec(file: str, row: list, ids: dict[str, str]) -> GrantSpec:
    """A grant from a file's record: its rules were checked when the file was read."""
    from provisioner.grants import parse_every, parse_expires_after

    (client_key, grant_key, every, from_date, until, time_zone, balance, name, expires_after, account, catch_up,
     line, column) = row
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


def read_bytes(path: Path, issues: list[ManifestIssue]) -> bytes | None:
    try:
        return _read_whole(path)
    except OSError as error:
        issues.append(ManifestIssue(str(path), 0, 0, "", f"cannot read: {error.strerror or error}"))
        return None


def _read_whole(path: Path) -> bytes:
    """The file's bytes with the fewest system calls: thousands of files are read per plan."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        chunks = [os.read(descriptor, os.fstat(descriptor).st_size + 1)]
        while chunks[-1]:  # a file that grew since the fstat, or one that reports no size
            chunks.append(os.read(descriptor, 1 << 20))
    finally:
        os.close(descriptor)
    return b"".join(chunks)


def add_to_digest(digest: Any, path: Path, data: bytes) -> None:
    # The name is hashed (not the whole path) so that the digest does not depend on the
    # directory plan and apply run from; lengths keep name/content boundaries unambiguous.
    name = path.name.encode("utf-8", "surrogateescape")
    digest.update(b"%d:%s%d:" % (len(name), name, len(data)))
    digest.update(data)


def is_saved_plan(data: bytes) -> bool:
    # The test planfile.is_saved_plan applies, so that the advice to apply it holds.
    return data[:64].lstrip().startswith(b"{") and SAVED_PLAN_MARKER.encode() in data


def saved_plan_issue(file: str) -> ManifestIssue:
    message = (
        f"this is a saved plan, not a manifest: apply it with 'provisioner apply {file}', "
        "and keep it out of the manifests directory"
    )
    return ManifestIssue(file, 0, 0, "", message)

