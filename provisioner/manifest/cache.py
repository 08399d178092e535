"""The manifest cache: each file's declarations, by the sha256 of its content.

A second plan of a large tree reads every file (to hash it) but parses and checks only
the files whose content it has not seen. Safety:

- an entry is found by the digest of the file's bytes, never by name or time: the same
  bytes always mean the same declarations;
- the whole cache belongs to one identity: this tool's version, the source of the
  modules that read manifests (a code change is a new cache), the parser's version,
  the Python version (``datetime.fromisoformat`` reads more from 3.11 on) and the time
  zone database's (a grant's timeZone must name a zone it has); another identity's cache
  is ignored and replaced;
- it is a cache file (cachefile.py): JSON and bytes under a sha256 per segment, never
  pickle; an unreadable, truncated or altered file is ignored and rebuilt, and what is
  read back is checked for its shape and types when the models are made;
- a new entry is appended; a file mostly of entries no longer used is written again,
  atomically; a cache that cannot be written is skipped: it never fails a command.

An entry is a file's head (its policy and clients, JSON in the segment's index, which
every command reads) and its batch rows (JSON text in the blob, decoded only when the
batches are needed). One cache file per tree (the paths given), so that planning two
trees in turn does not make each evict the other. It lives in
``$XDG_CACHE_HOME/provisioner/`` when that is set, else in ``.provisioner/cache/`` under
the current directory, which carries its own ``.gitignore``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from provisioner import __version__
from provisioner.manifest.cachefile import TreeCache, code_identity
from provisioner.manifest.fast_reader import PARSER

CACHE_FORMAT = 3
# The modules whose code decides what a file declares.
READER_MODULES = tuple(
    f"manifest/{name}.py"
    for name in (
        "loader",
        "declarations",
        "fields",
        "fast_reader",
        "fast_values",
        "located_reader",
        "yaml11",
        "grant_rules",
        "cache",
        "cachefile",
        "located_values",
        "documents",
        "files",
        "issues",
    )
) + (
    "core/timestamps.py",
    "core/models.py",
    "core/bulk.py",
    "core/file_marks.py",
    "core/addresses.py",
    "core/plurals.py",
)


def reader_identity() -> str:
    """What the cached declarations depend on besides the files themselves."""
    # A grant's timeZone is checked against the zones this machine knows (tzdata, or the system's).
    header = f"{CACHE_FORMAT} {__version__} {PARSER} python {sys.version_info[:2]} zones {_zone_database()}"
    return code_identity(header, READER_MODULES)


def _zone_database() -> str:
    try:
        import tzdata
    except ImportError:  # the system's zone files only
        return "system"
    return getattr(tzdata, "IANA_VERSION", "tzdata")


# A file's entry: its head (decoded) and its batch rows (JSON, still encoded).
Entry = tuple[dict, bytes | memoryview]


class ManifestCache(TreeCache):
    kind = "manifests"

    def __init__(self, directory: Path | None = None):
        super().__init__(directory, reader_identity())

    def read(self, files: Sequence[str | Path]) -> dict[str, Entry]:
        """The known declarations by content digest; {} when there is no usable cache."""
        cache = self.file_for(files)
        entries: dict[str, Entry] = {}
        try:
            for segment in cache.read():
                blob, start = segment.blob, 0
                for content, head, length in segment.index:
                    entries[content] = (head, blob[start : start + length])
                    start += length
        except (ValueError, TypeError):  # an index of the wrong shape
            entries, cache.damaged = {}, True
        self.known = set(entries)
        return entries

    def write(self, files: Sequence[str | Path], entries: dict[str, Entry]) -> None:
        """Keep ``entries`` (those of the files just read): the new ones are appended, or the file
        is written again with these alone when most of what it held is no longer used."""
        known = self.known or set()
        append = self.appends(files, len(known), len(entries.keys() & known))
        if append:
            entries = {content: entry for content, entry in entries.items() if content not in known}
            if not entries:
                return
        index = [[content, head, len(rows)] for content, (head, rows) in entries.items()]
        self.file_for(files).write(index, [rows for _, rows in entries.values()], append=append)

    def discard(self, files: Sequence[str | Path]) -> None:
        self.file_for(files).discard()
        self.known = None
