"""Manifest loader: YAML files -> a validated ``Desired``.

Two readers, one meaning:

- the fast reader (fastreader.py) parses with yaml-rs, a compiled YAML parser, and
  returns a file's declarations only when it is sure they are exactly what the located
  reader would return;
- the located reader (nodereader.py) walks libyaml's node tree with positions. It judges
  every file the fast reader is unsure of, and reports every problem of every file at
  once, naming file, line, column and field path.

A file's declarations are kept in a content-addressed cache (manifestcache.py), so that
a second plan re-reads only the files that changed. ``read_declarations`` checks every
file and the rules across files (its errors are ``load``'s) and keeps each file's batch
rows until they are needed: ``desired()`` makes the models, or the plan memo
(planmemo.py) makes those of the clients it must plan again. New files are parsed in two
processes when that pays (parallel.py). Fields are described once, in fields.py; the
JSON Schema of ``provisioner schema`` comes from schema.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from provisioner import parallel
from provisioner.bulk import constructor, paused_gc
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
from provisioner.planfile import is_saved_plan_data

if TYPE_CHECKING:
    from provisioner.manifestcache import Entry, ManifestCache

__all__ = [
    "Declarations",
    "ManifestIssue",
    "ManifestError",
    "load",
    "read_declarations",
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



# --------------------------------------------------------------------------- finding files


def find_files(paths: Sequence[str | Path]) -> tuple[list[Path], list[ManifestIssue]]:
    """Files are taken as given; directories give every *.yaml / *.yml below them, sorted."""
    names, issues = _find_names(paths)
    return [Path(name) for name in names], issues


def _find_names(paths: Sequence[str | Path]) -> tuple[list[str], list[ManifestIssue]]:
    """``find_files`` as the strings ``str(Path)`` would give (a Path per file costs more than reading it)."""
    files: list[str] = []
    issues: list[ManifestIssue] = []
    seen: set[str] = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            candidates = _yaml_files_below(path)
        elif path.exists():
            candidates = [(str(path), os.path.realpath(path))]
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


def _yaml_files_below(directory: Path) -> list[tuple[str, str]]:
    """(file, its real path) for each manifest below, sorted as paths sort. Hidden files and
    directories (.git, .github, .pre-commit-config.yaml...) are not manifests; symlinked
    directories are not followed (as os.walk does). A file is named as ``str(Path)`` names it:
    the directory as given, normalised, then the names below it."""
    found: list[tuple[list[str], str]] = []  # (relative parts, real path)

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
                found.append(([*parts, name], real))

    base = str(directory)  # a Path's string: normalised ("manifests", "/abs/dir", ".")
    walk(base, os.path.realpath(directory), [])
    found.sort(key=lambda item: item[0])
    prefix = "" if base == "." else base.rstrip("/") + "/"
    return [(prefix + "/".join(parts), real) for parts, real in found]


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
    timings = LoadTimings() if timings is None else timings
    declarations = read_declarations(paths, cache, timings)
    started = time.perf_counter()
    desired = declarations.desired()
    timings.add("build Desired", time.perf_counter() - started)
    return desired


def read_declarations(
    paths: Sequence[str | Path], cache: ManifestCache | None = None, timings: LoadTimings | None = None
) -> Declarations:
    """What each file declares, checked as ``load`` checks it (and raising the same errors), before
    the batches become models: the plan memo (planmemo.py) needs them only for the files that changed."""
    with paused_gc():
        return _read(paths, cache, LoadTimings() if timings is None else timings)


def _read(paths: Sequence[str | Path], cache: ManifestCache | None, timings: LoadTimings) -> Declarations:
    clock = time.perf_counter
    started = clock()
    files, issues = _find_names(paths)
    if issues:
        return _read_located(paths)
    known = cache.read(files) if cache is not None else {}
    timings.add("cache read", clock() - started)
    started = clock()
    digest = hashlib.sha256()
    contents: list[str] = []  # each file's content digest
    fresh: dict[str, bytes] = {}  # the bytes of each content the cache does not know
    for path in files:
        data = read_bytes(path, issues)
        if data is None or is_saved_plan_data(data):
            return _read_located(paths)
        add_to_digest(digest, path, data)
        content = hashlib.sha256(data).hexdigest()
        contents.append(content)
        if content not in known:
            fresh[content] = data
    timings.add("read + digest", clock() - started)
    started = clock()
    if cache is None:
        records = dict(zip(fresh, parallel.in_two(_fast_reads, list(fresh.values()))))
    else:  # a child sends its records' rows as the cache keeps them (JSON) only: decoded where they are needed
        records = dict(zip(fresh, parallel.in_two(_fast_reads_kept, list(fresh.values()), sent=_without_rows)))
    timings.add("fast read (yaml-rs + checks)", clock() - started)
    combined = _Combined()
    declared: list[DeclaredFile] = []
    used: dict[str, Entry] = {}  # content digest -> (head, batch rows as JSON): what the cache keeps
    for path, content in zip(files, contents):
        entry = used.get(content) or known.get(content)
        if entry is None:
            record, rows_json = records[content]
            if record is None:
                started = clock()
                record = _read_one_located(str(path), fresh[content])
                timings.add("located read (PyYAML)", clock() - started)
                if record is None:
                    return _read_located(paths)
            record = dict(record)  # a copy: two files may have the same content
            rows = record.pop("batches", None)  # None: sent as JSON only
            file = DeclaredFile(path, content, record, rows=rows, text=None if rows is not None else rows_json)
            if cache is not None:
                entry = (record, rows_json if rows_json is not None else _rows_json(rows))
        else:
            try:
                file = DeclaredFile(path, content, entry[0], text=entry[1], cache=cache, files=files)
            except (ValueError, TypeError):  # a damaged entry (what is written was checked): drop the cache
                cache.discard(files)
                return _read(paths, cache, timings)
        if entry is not None:
            used[content] = entry
        try:
            added = combined.add_head(file.name, file.head)
        except (ValueError, TypeError, KeyError, AttributeError):  # pydantic's ValidationError is a ValueError
            if not known:
                raise
            cache.discard(files)
            return _read(paths, cache, timings)
        if not added:
            return _read_located(paths)
        declared.append(file)
    if cache is not None and used.keys() != known.keys():
        started = clock()
        cache.write(files, used)
        timings.add("cache write", clock() - started)
    return Declarations(declared, combined, digest.hexdigest(), paths=files)


def _fast_reads(contents: list[bytes]) -> list[tuple[dict | None, None]]:
    """Each file's record (None: only the located reader may judge it). Pure: parallel.in_two may
    give half of the files to a child process."""
    from provisioner import fastreader

    return [(fastreader.read(data), None) for data in contents]


def _fast_reads_kept(contents: list[bytes]) -> list[tuple[dict | None, bytes | None]]:
    """The same, with each record's rows as the cache keeps them (JSON), made in the same process."""
    from provisioner import fastreader

    records = [fastreader.read(data) for data in contents]
    return [(record, None if record is None else _rows_json(record["batches"])) for record in records]


def _without_rows(read: tuple[dict | None, bytes | None]) -> tuple[dict | None, bytes | None]:
    record, rows_json = read
    if record is None:
        return read
    return {name: value for name, value in record.items() if name != "batches"}, rows_json


def _rows_json(rows: list) -> bytes:
    return _ROWS_JSON(rows).encode("utf-8", "surrogatepass")


_ROWS_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # one encoder for every file


def _read_located(paths: Sequence[str | Path]) -> Declarations:
    """The located reader's verdict: every problem of every file (it raises ManifestError); should
    it find none, its Desired as it is."""
    from provisioner import nodereader

    return Declarations([], None, "", ready=nodereader.load(paths))


def _read_one_located(file: str, data: bytes) -> dict | None:
    from provisioner import nodereader

    return nodereader.read_one(file, data)


class DeclaredFile:
    """One manifest file's declarations: its head (policy, clients: read with every file) and its
    batch rows (read when they are needed: from the cache, only then decoded)."""

    __slots__ = ("path", "name", "content", "head", "_rows", "_text", "_cache", "_files")

    def __init__(self, path: str, content: str, head: dict, rows: list | None = None, text: bytes | None = None,
                 cache: ManifestCache | None = None, files: Sequence[str] = ()):
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
                rows = json.loads(bytes(self._text))
                if type(rows) is not list or not all(type(row) is list and len(row) == 8 for row in rows):
                    raise ValueError("not batch rows")
                self._rows = rows
            except (ValueError, TypeError):
                self._rows = self._read_again()
        return self._rows

    def _read_again(self) -> list:
        from provisioner import fastreader

        if self._cache is not None:
            self._cache.discard(self._files)
        data = _read_whole(self.path)
        if hashlib.sha256(data).hexdigest() != self.content:
            raise ManifestError([ManifestIssue(self.name, 0, 0, "", "changed while being read; run the command again")])
        record = fastreader.read(data) or _read_one_located(self.name, data)
        if record is None:  # it was read before: only a changed file can fail now, and its digest says it did not
            raise ManifestError([ManifestIssue(self.name, 0, 0, "", "could not be read again; run the command again")])
        return record["batches"]


class Declarations:
    """What the manifests declare, file by file, checked across files; ``desired()`` makes the models."""

    def __init__(self, files: list[DeclaredFile], combined: _Combined | None, digest: str, ready: Desired | None = None,
                 paths: list[str] | None = None):
        self.files = files
        self.paths = [file.path for file in files] if paths is None else paths  # as found (the caches' tree)
        self.digest = digest  # sha256 over the files' names and bytes
        self._combined = combined
        self._ready = ready

    @property
    def policy(self) -> Policy:
        return self._ready.policy if self._ready is not None else self._combined.policy_model()

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
            for file in self.files:
                try:
                    combined.add_batches(file.name, file.head, file.rows())
                except (ValueError, TypeError, KeyError):
                    # A cache entry of the wrong types (what is written was checked): read the file again.
                    file._rows = file._read_again()
                    combined.add_batches(file.name, file.head, file.rows())
            self._ready = combined.desired(self.digest)
        return self._ready


class _Combined:
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
            type(client_key) is str and type(batch_key) is str and type(name) is str and type(balance) is int
            and (expires_on is None or type(expires_on) is str) and (account is None or type(account) is str)
            and type(line) is int and type(column) is int
        ):
            raise ValueError(f"{file}: a batch row of the wrong types: {client_key!r}/{batch_key!r}")
        yield _batch_spec({
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
        })


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
        size = os.fstat(descriptor).st_size + 1
        data = os.read(descriptor, size)
        if len(data) < size:  # a short read of a regular file is its end
            return data
        chunks = [data]
        while chunks[-1]:  # a file that grew since the fstat, or one that reports no size
            chunks.append(os.read(descriptor, 1 << 20))
    finally:
        os.close(descriptor)
    return b"".join(chunks)


def add_to_digest(digest: Any, path: Path, data: bytes) -> None:
    # The name is hashed (not the whole path) so that the digest does not depend on the
    # directory plan and apply run from; lengths keep name/content boundaries unambiguous.
    name = os.path.basename(path).encode("utf-8", "surrogateescape")
    digest.update(b"%d:%s%d:" % (len(name), name, len(data)))
    digest.update(data)


def saved_plan_issue(file: str) -> ManifestIssue:
    message = (
        f"this is a saved plan, not a manifest: apply it with 'provisioner apply {file}', "
        "and keep it out of the manifests directory"
    )
    return ManifestIssue(file, 0, 0, "", message)

