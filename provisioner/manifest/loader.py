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
rows until they are needed (declarations.py): ``desired()`` makes the models, or the plan
memo (planmemo.py) makes those of the clients it must plan again. New files are parsed in
two processes when that pays (parallel.py). Fields are described once, in fields.py; the
JSON Schema of ``provisioner schema`` comes from schema.py.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.core.bulk import paused_gc
from provisioner.core.file_marks import is_saved_plan_data
from provisioner.core.models import Desired
from provisioner.manifest import parallel
from provisioner.manifest.declarations import Combined, Declarations, DeclaredFile
from provisioner.manifest.files import add_to_digest, find_names, read_bytes

if TYPE_CHECKING:
    from provisioner.manifest.cache import Entry, ManifestCache

__all__ = [
    "load",
    "read_declarations",
]


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
    files, issues = find_names(paths)
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
    records: dict[str, tuple[dict | None, bytes | None]]
    if cache is None:
        records = dict(zip(fresh, parallel.in_two(_fast_reads, list(fresh.values())), strict=True))
    else:  # a child sends its records' rows as the cache keeps them (JSON) only: decoded where they are needed
        records = dict(
            zip(fresh, parallel.in_two(_fast_reads_kept, list(fresh.values()), sent=_without_rows), strict=True)
        )
    timings.add("fast read (yaml-rs + checks)", clock() - started)
    combined = Combined()
    declared: list[DeclaredFile] = []
    used: dict[str, Entry] = {}  # content digest -> (head, batch rows as JSON): what the cache keeps
    for path, content in zip(files, contents, strict=True):
        entry = used.get(content) or known.get(content)
        if entry is None:
            record, rows_json = records[content]
            if record is None:
                started = clock()
                record = read_one_located(str(path), fresh[content])
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
                assert cache is not None  # the entry came from it
                cache.discard(files)
                return _read(paths, cache, timings)
        if entry is not None:
            used[content] = entry
        try:
            added = combined.add_head(file.name, file.head)
        except (ValueError, TypeError, KeyError, AttributeError):  # pydantic's ValidationError is a ValueError
            if not known or cache is None:
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


def _fast_reads(contents: list[bytes]) -> list[tuple[dict | None, bytes | None]]:
    """Each file's record (None: only the located reader may judge it). Pure: parallel.in_two may
    give half of the files to a child process."""
    from provisioner.manifest import fast_reader

    return [(fast_reader.read(data), None) for data in contents]


def _fast_reads_kept(contents: list[bytes]) -> list[tuple[dict | None, bytes | None]]:
    """The same, with each record's rows as the cache keeps them (JSON), made in the same process."""
    from provisioner.manifest import fast_reader

    records = [fast_reader.read(data) for data in contents]
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
    from provisioner.manifest import located_reader

    return Declarations([], None, "", ready=located_reader.load(paths))


def read_one_located(file: str, data: bytes) -> dict | None:
    from provisioner.manifest import located_reader

    return located_reader.read_one(file, data)
