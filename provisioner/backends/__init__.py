"""Where the state lives: a local file, or a workspace in PostgreSQL, behind one interface.

``open_backend`` turns what the user gave (``--state``, ``PROVISIONER_STATE``,
``--workspace``) into one ``Backend`` object that every command uses.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from provisioner.backends.base import (
    Backend,
    LockError,
    LockInfo,
    StateError,
    StateMissing,
    StateWriter,
    check_instance,
)

__all__ = [
    "Backend",
    "LockError",
    "LockInfo",
    "StateError",
    "StateMissing",
    "StateWriter",
    "check_instance",
    "open_backend",
]

DEFAULT_WORKSPACE = "default"
STATE_DIRECTORY = "state"
SANDBOX_STATE = "state/sandbox.json"
WORKSPACE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def default_state_path(workspace: str) -> str:
    return f"{STATE_DIRECTORY}/{workspace}.json"


def check_workspace(workspace: str, from_environment: bool = False) -> None:
    """A workspace name, refused as the user gave it: the option, or the environment variable."""
    if not WORKSPACE_NAME.fullmatch(workspace):
        given = f"PROVISIONER_WORKSPACE={workspace!r}" if from_environment else f"--workspace {workspace!r}"
        raise StateError(
            f"{given}: a workspace name is 1 to 64 characters of a-z, 0-9, '.', '_' and '-', "
            "starting with a letter or digit."
        )


def open_backend(
    location: str | None,
    workspace: str = DEFAULT_WORKSPACE,
    *,
    sandbox: bool = False,
    location_given: bool = True,
) -> Backend:
    """The backend for a ``--state`` value (a file path or a postgresql:// URL) and a workspace.

    Without a location: ``state/<workspace>.json`` (``state/sandbox.json`` with --sandbox).
    ``location_given``: the location came from the command line (not the environment), so
    messages that suggest a command repeat it.
    """
    from provisioner.backends.postgres import display_url, is_database_url

    check_workspace(workspace)
    sandbox_option = " --sandbox" if sandbox else ""  # it also selects the API: always repeated
    if location and is_database_url(location):
        if sandbox:
            raise StateError(
                "--sandbox keeps its own state file; it cannot use a database state. Leave out --state, or "
                "run the sandbox yourself (provisioner sandbox) and point TI_BASE_URL at it."
            )
        from provisioner.backends.postgres import PostgresBackend

        given = f" --state {shlex.quote(display_url(location))}" if location_given else ""
        return PostgresBackend(location, workspace, options=given + _workspace_option(workspace))
    from provisioner.backends.file import FileBackend

    if location:
        if workspace != DEFAULT_WORKSPACE:
            raise StateError(
                f"--workspace {workspace} with the state file {location}: a state file holds one workspace. "
                f"Leave out --state to use {default_state_path(workspace)}, or pass that workspace's file."
            )
        given = f" --state {shlex.quote(location)}" if location_given else ""
        return FileBackend(Path(location), options=sandbox_option + given)
    if sandbox:
        return FileBackend(Path(SANDBOX_STATE), options=sandbox_option)
    return FileBackend(Path(default_state_path(workspace)), options=_workspace_option(workspace))


def _workspace_option(workspace: str) -> str:
    return "" if workspace == DEFAULT_WORKSPACE else f" --workspace {shlex.quote(workspace)}"


def states_nearby(backend: Backend, located_by: str | None = None) -> list[tuple[str, str]]:
    """The state files in the usual directory, other than ``backend``'s, each with how to select it
    ("add --sandbox", "add --workspace NAME" ...): what a command that found no state names, since
    the state the user meant is most often one of them. None for a database state. ``located_by``:
    what chose ``backend``'s location ("--state", "PROVISIONER_STATE"), which selecting another must drop."""
    directory = Path(STATE_DIRECTORY)
    own = {path.resolve() for path in backend.own_files()}
    if not own or not directory.is_dir():  # a database state: its neighbours are not files
        return []
    found = []
    for path in sorted(directory.glob("*.json")):
        if path.resolve() in own or not path.is_file():
            continue
        if path.as_posix() == SANDBOX_STATE:
            option = "--sandbox"
        elif path.stem == DEFAULT_WORKSPACE:
            option = None
        elif WORKSPACE_NAME.fullmatch(path.stem):
            option = f"--workspace {path.stem}"
        else:
            option = f"--state {shlex.quote(path.as_posix())}"
        if option is None:
            how = f"the default, without {located_by or '--workspace'}"
        elif located_by and not option.startswith("--state"):
            how = f"{option}, without {located_by}"
        else:
            how = f"add {option}"
        found.append((path.as_posix(), how))
    return found
