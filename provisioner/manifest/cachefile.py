"""A cache file: entries written in segments, one after another, read back whole.

The manifest cache and the plan memo keep their entries this way, so that a command which
learnt a few new entries appends them (a few kilobytes) instead of writing tens of megabytes
again. Each segment is

- a JSON header line: the format, the identity of the code that wrote it, the lengths of
  the index and of the blob, and the sha256 of both;
- its index: JSON, one entry per item, each naming its part of the blob by length;
- its blob: bytes (the entries' larger texts, one after the other).

Safety: it is JSON and bytes (never pickle: a cache file cannot run code); a segment whose
header, length or digest is wrong ends the reading (what follows it is ignored, and the
file is written again whole); a file of another identity is ignored and replaced; a new
whole file is written atomically (a temporary file, then a rename), and segments are
appended with one write each (a torn one fails its digest). A cache that cannot be written
is skipped: it never fails a command. When more than half of the entries read are no longer
used, the file is written again with the used ones only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from provisioner.core.atomic_files import write_atomically

FORMAT = 3
MOST_SEGMENTS = 32


def default_directory() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "provisioner" if xdg else Path(".provisioner") / "cache"


def code_identity(header: str, modules: Iterable[str] | None = None) -> str:
    """The sha256 of ``header`` and of the source of these modules of the package (paths relative to it;
    None: every one), so that a change of the code is a new cache. Installed without sources: the header
    and the names alone."""
    identity = hashlib.sha256(header.encode())
    package = Path(__file__).parent.parent
    if modules is None:
        modules = sorted(module.relative_to(package).as_posix() for module in package.rglob("*.py"))
    for name in modules:
        identity.update(name.encode() + b"\0")
        try:
            identity.update((package / name).read_bytes())
        except OSError:
            pass
    return identity.hexdigest()


def tree_key(files: Sequence[str | Path]) -> str:
    """Which tree (the files given, from the working directory) a cache file is for."""
    tree = hashlib.sha256(os.getcwd().encode("utf-8", "surrogateescape") + b"\0")
    tree.update("\n".join(os.fspath(file) for file in files).encode("utf-8", "surrogateescape"))
    return tree.hexdigest()[:16]


class Segment:
    """One segment read back: its index, and its blob from which each entry takes its length."""

    __slots__ = ("index", "blob")

    def __init__(self, index: list, blob: memoryview):
        self.index = index
        self.blob = blob


class CacheFile:
    """``kind-<identity>-<tree>.cache`` in ``directory``."""

    def __init__(self, directory: Path, kind: str, identity: str, files: Sequence[str | Path]):
        self.identity = identity
        self.path = Path(directory) / f"{kind}-{identity[:16]}-{tree_key(files)}.cache"
        self.segments = 0  # read back
        self.damaged = False  # a segment could not be read: write the file again whole

    def read(self) -> list[Segment]:
        """Every segment that reads back intact, in order; [] when the file is missing or not ours."""
        self.segments, self.damaged = 0, False
        try:
            raw = self.path.read_bytes()
        except OSError:
            return []
        segments: list[Segment] = []
        position = 0
        view = memoryview(raw)  # the blobs are parts of it, not copies
        while position < len(raw):
            try:
                header_end = raw.index(b"\n", position)
                header = json.loads(raw[position:header_end])
                start = header_end + 1
                middle = start + header["index"]
                end = middle + header["blob"]
                index, blob = raw[start:middle], view[middle:end]
                if end > len(raw) or header != self._header(index, (blob,)):
                    raise ValueError("torn or altered")
                segments.append(Segment(json.loads(index), blob))
            except (ValueError, TypeError, KeyError):  # torn, altered, not ours
                self.damaged = True
                break
            position = end
        self.segments = len(segments)
        return segments

    def must_rewrite(self, read_entries: int, used_entries: int) -> bool:
        """Whether the next write is a whole new file rather than a segment appended."""
        stale = read_entries - used_entries
        return self.damaged or self.segments >= MOST_SEGMENTS or stale > used_entries

    def write(self, index: list, blob: Sequence[bytes | memoryview], append: bool) -> None:
        """Append one segment, or replace the file with it (atomically). ``blob``: its pieces, in order
        (a blob of tens of megabytes is not joined). Silently skipped on failure."""
        encoded = json.dumps(index, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
        header = json.dumps(self._header(encoded, blob), sort_keys=True).encode() + b"\n"
        if append and self.path.exists():
            try:
                with open(self.path, "ab") as out:
                    out.write(b"".join([header, encoded, *blob]))  # one write: a torn one fails its digest
            except OSError:
                pass
            return
        self._replace([header, encoded, *blob])

    def discard(self) -> None:
        try:
            self.path.unlink()
        except OSError:
            pass

    def _header(self, index: bytes, blob: Sequence) -> dict:
        digest = hashlib.sha256(index)
        for piece in blob:
            digest.update(piece)
        return {
            "format": FORMAT,
            "identity": self.identity,
            "index": len(index),
            "blob": sum(map(len, blob)),
            "sha256": digest.hexdigest(),
        }

    def _replace(self, chunks: list[bytes | memoryview]) -> None:
        """Write the file atomically, and remove the files it replaces: the same tree's of another identity."""
        path = self.path
        try:
            _prepare_directory(path.parent)
            write_atomically(path, chunks)
            kind, _, tree = path.name.split("-", 2)
            for other in path.parent.glob(f"{kind}-*-{tree}"):
                if other != path:
                    other.unlink(missing_ok=True)
        except OSError:
            pass


class TreeCache:
    """A cache kept in one cache file per tree (the paths a command was given), which a command reads and
    then writes again with the entries it used: the file of the tree last asked about, and what its last
    read found (``known``, in the form of the subclass) until the next write."""

    kind = "cache"  # the first word of the file's name

    def __init__(self, directory: Path | None, identity: str):
        self.directory = default_directory() if directory is None else Path(directory)
        self.identity = identity
        self.known: Any = None
        self._files: Sequence[str | Path] | None = None
        self._file: CacheFile | None = None

    def file_for(self, files: Sequence[str | Path]) -> CacheFile:
        if files is not self._files:  # a command asks for the same list again: one tree digest
            self._files, self.known = files, None
            self._file = CacheFile(self.directory, self.kind, self.identity, files)
        assert self._file is not None
        return self._file

    def appends(self, files: Sequence[str | Path], read_entries: int, used_entries: int) -> bool:
        """Whether this write appends a segment to the file as read (else it writes the file again whole,
        with the entries used alone); what was read is forgotten."""
        cache, was_read = self.file_for(files), self.known is not None
        self.known = None
        return was_read and not cache.must_rewrite(read_entries, used_entries)


def _prepare_directory(directory: Path) -> None:
    if directory.is_dir():
        return
    directory.mkdir(parents=True, exist_ok=True)
    # Whoever runs provisioner inside a git repository: the cache stays out of commits.
    (directory / ".gitignore").write_text("# provisioner's manifest cache: never commit it\n*\n")
