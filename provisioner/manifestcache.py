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
- it is JSON text (never pickle: a cache file must not be able to run code) behind a header
  carrying the sha256 of the rest; an unreadable, truncated or altered file is ignored
  and rebuilt, and everything read back is validated again when the ``Desired`` is built;
- it is written atomically (a temporary file, then a rename), and a cache that cannot be
  written is skipped: it never fails a command.

One cache file per tree (the paths given), so that planning two trees in turn does not
make each evict the other. It lives in ``$XDG_CACHE_HOME/provisioner/`` when that is
set, else in ``.provisioner/cache/`` under the current directory, which carries its own
``.gitignore``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml_rs

from provisioner import __version__

CACHE_FORMAT = 1
# The modules whose code decides what a file declares.
READER_MODULES = (
    "manifest.py", "fields.py", "fastreader.py", "nodereader.py", "yaml11.py", "manifestcache.py", "grants.py"
)


def default_directory() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "provisioner" if xdg else Path(".provisioner") / "cache"


def reader_identity() -> str:
    """What the cached declarations depend on besides the files themselves."""
    identity = hashlib.sha256()
    identity.update(f"{CACHE_FORMAT} {__version__} yaml-rs {yaml_rs.__version__} python {sys.version_info[:2]}".encode())
    # A grant's timeZone is checked against the zones this machine knows (tzdata, or the system's).
    identity.update(f" zones {_zone_database()}".encode())
    package = Path(__file__).parent
    for name in READER_MODULES:
        try:
            identity.update((package / name).read_bytes())
        except OSError:  # installed without sources: the version alone
            identity.update(name.encode())
    return identity.hexdigest()


def _zone_database() -> str:
    try:
        import tzdata
    except ImportError:  # the system's zone files only
        return "system"
    return getattr(tzdata, "IANA_VERSION", "tzdata")


class ManifestCache:
    def __init__(self, directory: Path | None = None):
        self.directory = default_directory() if directory is None else Path(directory)
        self.identity = reader_identity()

    def path_for(self, files: Sequence[Path]) -> Path:
        here = os.getcwd()  # absolute paths by string only: no system call per file
        tree = hashlib.sha256("\n".join(os.path.join(here, path) for path in files).encode("utf-8", "surrogateescape"))
        return self.directory / f"manifests-{self.identity[:16]}-{tree.hexdigest()[:16]}.cache"

    def read(self, files: Sequence[Path]) -> dict[str, str]:
        """The known declarations (JSON text) by content digest; {} when there is no usable cache.

        The file is a JSON header line, then one line per entry: the digest, a tab, the JSON
        text of the declarations (JSON text holds no raw line break)."""
        try:
            raw = self.path_for(files).read_bytes()
            header_end = raw.index(b"\n")
            header = json.loads(raw[:header_end])
            payload = raw[header_end + 1 :]
            if header != self._header(payload):
                return {}
            lines = payload.decode("utf-8").split("\n")
            return dict(line.split("\t", 1) for line in lines if line)
        except (OSError, ValueError, TypeError):  # missing, unreadable, not ours, torn
            return {}

    def write(self, files: Sequence[Path], entries: dict[str, str]) -> None:
        """Replace the tree's cache file atomically with ``entries``; silently skipped on failure."""
        path = self.path_for(files)
        payload = "".join([f"{digest}\t{text}\n" for digest, text in entries.items()]).encode("utf-8", "surrogatepass")
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            self._prepare_directory()
            with open(temporary, "wb") as out:
                out.write(json.dumps(self._header(payload), sort_keys=True).encode() + b"\n")
                out.write(payload)
            os.replace(temporary, path)
        except OSError:
            try:
                temporary.unlink()
            except OSError:
                pass

    def discard(self, files: Sequence[Path]) -> None:
        try:
            self.path_for(files).unlink()
        except OSError:
            pass

    def _header(self, payload: bytes) -> dict:
        return {"format": CACHE_FORMAT, "identity": self.identity, "sha256": hashlib.sha256(payload).hexdigest()}

    def _prepare_directory(self) -> None:
        if self.directory.is_dir():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        # Whoever runs provisioner inside a git repository: the cache stays out of commits.
        (self.directory / ".gitignore").write_text("# provisioner's manifest cache: never commit it\n*\n")
