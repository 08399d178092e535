"""Writing a file whole or not at all: a temporary file beside it, renamed over it.

Every file provisioner writes in one piece goes through ``write_atomically``: the state's snapshot
(durable: fsynced before the rename, its directory after), saved plans and the manifest cache. The
journal is appended to line by line, and renamed into place by its own code (its new file stays open).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path


def temporary_beside(path: Path, suffix: str = "tmp") -> Path:
    """A hidden name beside ``path``, this process's own (two processes never share one)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{suffix}")


def write_atomically(
    path: Path,
    content: bytes | str | Iterable[bytes | memoryview],
    *,
    durable: bool = False,
    before_replace: Callable[[], None] | None = None,
) -> None:
    """``path`` holds ``content`` (text is UTF-8), or, should anything fail, what it held before.

    ``durable``: the data is on disk before the rename and the rename after it (a crash keeps one
    version or the other, never an empty file). ``before_replace`` runs once the new content is
    written, just before the rename (the state keeps its backup there). The temporary file is
    removed on failure and the error raised."""
    temporary = temporary_beside(path)
    try:
        with open(temporary, "wb", buffering=1 << 20) as out:  # tens of megabytes in pieces of a few kB
            if isinstance(content, str):
                out.write(content.encode("utf-8"))
            elif isinstance(content, bytes):
                out.write(content)
            else:
                out.writelines(content)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """A rename or a new file in ``directory`` is on disk (where the system allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
