"""The write-ahead journal of the file backend: one JSON object a line, each fsynced before it counts.

The first line names the state it continues (lineage and serial). A torn last
line is what a crash mid-write leaves: it never happened, and is ignored. A
write that fails midway (disk full, I/O error) is cut back off the file, so no
fragment is ever left for the next line to be glued to.

A checkpoint writes the snapshot while the run goes on recording: it first
appends a ``checkpoint`` line naming the snapshot's serial, and once that
snapshot is in place the journal is replaced by one that continues it, holding
only the lines recorded meanwhile (``Journal.restart``). A crash in between
leaves the old journal: what follows its last ``checkpoint`` line for the
snapshot's serial is what the snapshot does not hold yet.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from provisioner.backends.entries import Begin, Entry, MalformedEntry, parse_entry
from provisioner.core.atomic_files import fsync_directory, temporary_beside


class JournalError(Exception):
    """The journal cannot be read or extended; nothing was written."""


class Journal:
    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd = fd

    @classmethod
    def start(cls, path: Path, lineage: str, serial: int) -> Journal:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        journal = cls(path, fd)
        try:
            journal.append(Begin(lineage, serial))
            # The journal's name must survive a power cut too, not only its lines.
            fsync_directory(path.parent)
        except BaseException:
            journal.close()
            path.unlink(missing_ok=True)
            raise
        return journal

    def restart(self, lineage: str, serial: int, entries: list[Entry]) -> Journal:
        """A journal continuing serial ``serial`` with ``entries``, put in this one's place at once
        (rename): a crash leaves either journal whole. This one is closed; on failure it stays."""
        temporary = temporary_beside(self.path)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        # Opened before the rename: the new lines go to the inode that is then the journal.
        successor = Journal(self.path, fd)
        try:
            data = "".join(_line(entry) for entry in [Begin(lineage, serial), *entries])
            view = memoryview(data.encode("utf-8"))
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.replace(temporary, self.path)
        except BaseException:
            successor.close()
            temporary.unlink(missing_ok=True)
            raise
        fsync_directory(self.path.parent)
        self.close()
        return successor

    def append(self, entry: Entry) -> None:
        """Whole lines only: on a failed write the file is cut back to where the line began."""
        data = memoryview(_line(entry).encode("utf-8"))
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            while data:
                data = data[os.write(self._fd, data) :]
            os.fsync(self._fd)
        except OSError:
            try:
                os.ftruncate(self._fd, start)
                os.fsync(self._fd)
            except OSError:
                # Cannot even cut it back: a later line would follow a fragment. Refuse to go on.
                self.close()
                self._fd = -1
            raise

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _line(entry: Entry) -> str:
    return json.dumps(entry.to_json(), sort_keys=True, separators=(",", ":")) + "\n"


def read_journal(path: Path) -> tuple[Begin | None, list[Entry]]:
    """(the begin entry, the entries after it); (None, []) when there is no journal."""
    try:
        lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        return None, []
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict) or not isinstance(data.get("op"), str):
                raise ValueError("not an entry")
        except (ValueError, RecursionError):
            if number == len(lines) or (number == len(lines) - 1 and not lines[-1]):
                break  # torn by a crash while it was written: it never happened
            raise JournalError(
                f"{path}:{number}: the journal is damaged in the middle, not only at its end. "
                "It was left untouched: keep it, it may hold ids of created batches."
            ) from None
        # Whole and well formed, yet not an entry this program writes: damage, wherever it is.
        try:
            entries.append(parse_entry(data))
        except MalformedEntry as problem:
            raise JournalError(
                f"{path}:{number}: this {data['op']!r} entry {problem}; provisioner never writes one like it. "
                "The journal was left untouched: keep it, it may hold ids of created batches."
            ) from None
    if not entries:
        return None, []
    begin = entries[0]
    if not isinstance(begin, Begin):
        raise JournalError(f"{path}:1: the journal does not start with its begin entry; it was left untouched.")
    return begin, entries[1:]
