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
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from provisioner.manifest import parallel
from provisioner.core.bulk import paused_gc
from provisioner.manifest.declarations import Combined, Declarations, DeclaredFile
from provisioner.core.models import Desired
from provisioner.core.file_marks import is_saved_plan_data

if TYPE_CHECKING:
    from provisioner.manifest.cache import Entry, ManifestCache

__all__ = [
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
    combined = Combined()
    declared: list[DeclaredFile] = []
    used: dict[str, Entry] = {}  # content digest -> (head, batch rows as JSON): what the cache keeps
    for path, content in zip(files, contents):
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


def read_bytes(path: Path, issues: list[ManifestIssue]) -> bytes | None:
    try:
        return read_whole(path)
    except OSError as error:
        issues.append(ManifestIssue(str(path), 0, 0, "", f"cannot read: {error.strerror or error}"))
        return None


def read_whole(path: Path) -> bytes:
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

