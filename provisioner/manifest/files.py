"""The manifest files: which files a command's paths name, their bytes, and the digest over them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from provisioner.manifest.issues import ManifestIssue

MANIFEST_SUFFIXES = (".yaml", ".yml")


def find_files(paths: Sequence[str | Path]) -> tuple[list[Path], list[ManifestIssue]]:
    """Files are taken as given; directories give every *.yaml / *.yml below them, sorted."""
    names, issues = find_names(paths)
    return [Path(name) for name in names], issues


def find_names(paths: Sequence[str | Path]) -> tuple[list[str], list[ManifestIssue]]:
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


def read_bytes(path: str | Path, issues: list[ManifestIssue]) -> bytes | None:
    try:
        return read_whole(path)
    except OSError as error:
        issues.append(ManifestIssue(str(path), 0, 0, "", f"cannot read: {error.strerror or error}"))
        return None


def read_whole(path: str | Path) -> bytes:
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


def add_to_digest(digest: Any, path: str | Path, data: bytes) -> None:
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
