"""The lines a user's repository needs in its .gitignore: provisioner's local files that never belong in git.

The state file and its journal are committed (the journal of an interrupted run holds ids that
nothing else records); everything else provisioner leaves beside them is local: the sandbox's
state and data, a run's lock, the backup an edit keeps, the temporary files of a write in
progress, and the cache of manifests read before. Pure, but for ``update_gitignore``, which reads and
writes the file.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

HEADING = "# provisioner: local files, never committed (the state file and its journal are)"


def ignore_lines(state_file: Path | None, state_directory: str = "state") -> list[str]:
    """The patterns, for a repository whose state is ``state_file`` (None: a database state)."""
    directories = [PurePosixPath(state_directory)]
    if state_file is not None:
        directories.append(PurePosixPath(Path(state_file).parent.as_posix()))
    lines = [f"{PurePosixPath(state_directory) / 'sandbox.*'}"]  # the sandbox's state and data
    for directory in dict.fromkeys(directories):  # each once, the usual directory first
        prefix = "" if str(directory) == "." else f"{directory}/"
        lines += [f"{prefix}*.lock", f"{prefix}*.backup", f"{prefix}.*.tmp"]
    lines.append(".provisioner/")  # the manifest cache and the plan memo
    return lines


def missing_lines(existing: str, lines: list[str]) -> list[str]:
    """The lines of ``lines`` that the .gitignore text ``existing`` does not hold yet (as whole lines)."""
    present = {line.strip() for line in existing.splitlines()}
    return [line for line in lines if line not in present]


def with_lines(existing: str, missing: list[str]) -> str:
    """``existing`` with the ``missing`` lines added at its end, under a heading."""
    if not missing:
        return existing
    text = existing if not existing or existing.endswith("\n") else existing + "\n"
    block = ([] if HEADING in existing else [HEADING]) + missing
    return text + ("\n" if text else "") + "\n".join(block) + "\n"


def update_gitignore(state_file: Path | None, write: bool, gitignore: Path = Path(".gitignore")) -> list[str]:
    """The lines ``gitignore`` still needs for a repository whose state is ``state_file``; added to it
    when ``write``."""
    existing = gitignore.read_text(encoding="utf-8") if gitignore.is_file() else ""
    missing = missing_lines(existing, ignore_lines(state_file))
    if missing and write:
        gitignore.write_text(with_lines(existing, missing), encoding="utf-8")
    return missing
