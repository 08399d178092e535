"""The state commands that ask the API: refresh, import (one batch, or whole clients with their
manifests) and forget-intent. Each takes the lock, then the writer, then the API, checked to be the
state's instance, and names the run on every event the writer records; what is shown or asked of the
user goes through callbacks. Nothing here prints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.operations.connection import ApiSettings, check_instance

if TYPE_CHECKING:
    from provisioner.api.client import CreditsApi
    from provisioner.applying.matching import Findings
    from provisioner.backends import Backend, StateWriter
    from provisioner.core.models import Desired, Intent, Resource
    from provisioner.operations.generate import ClientToImport, Generated
    from provisioner.render.progress import Progress

Say = Callable[[str], None]


@dataclass(frozen=True)
class Locking:
    """How a command holds the state: the lock's name, how long to wait for it, who is told of the wait,
    and the run its events name."""

    command: str
    timeout: float = 0.0
    warn: Say | None = None
    run: Mapping[str, object] = field(default_factory=dict)


@contextmanager
def connected_writer(
    backend: Backend, locking: Locking, settings: ApiSettings, reporter: Progress | None = None
) -> Iterator[tuple[StateWriter, CreditsApi]]:
    """The lock, then the writer, then the API (its clock stamped on the events), checked to be the
    state's instance. The API is closed before the writer's last checkpoint, the lock released last."""
    with backend.writing(locking.command, timeout=locking.timeout, warn=locking.warn, run=locking.run) as writer:
        with settings.open(backend, reporter) as api:
            writer.attribute(locking.run, server_clock=api.clock.now)
            check_instance(writer.state, api, backend)
            yield writer, api


@dataclass(frozen=True)
class Refreshed:
    recorded: int  # batches the state records
    missing: list[str]  # addresses the API no longer lists
    warnings: list[str]  # look-alikes of recorded batches


def refresh_from_api(
    desired: Desired, backend: Backend, locking: Locking, settings: ApiSettings, reporter: Progress
) -> Refreshed:
    """The recorded batches as the API lists them now (names, expiries, balances); creates nothing."""
    from provisioner.operations.live_batches import refreshed
    from provisioner.operations.state_edits import duplicate_warnings, refresh_state

    with backend.writing(locking.command, timeout=locking.timeout, warn=locking.warn, run=locking.run) as writer:
        with settings.open(backend, reporter) as api:
            writer.attribute(locking.run, server_clock=api.clock.now)
            check_instance(writer.state, api, backend)
            observed = refreshed(desired, writer.state, api, settings.parallelism, reporter)
            missing = refresh_state(writer, observed)
            writer.bind_instance(api.instance)
        recorded = len(writer.state.resources)
        warnings = duplicate_warnings(writer.state, observed)
    return Refreshed(recorded, missing, warnings)


def import_one(
    desired: Desired,
    backend: Backend,
    locking: Locking,
    settings: ApiSettings,
    address: str,
    batch_id: str,
    force: bool = False,
) -> Resource:
    """Records the live batch BATCH_ID under ADDRESS (declared in ``desired``)."""
    from provisioner.operations.state_edits import import_batch

    with connected_writer(backend, locking, settings) as (writer, api):
        resource = import_batch(writer, api, desired, address, batch_id, force=force)
        writer.bind_instance(api.instance)
    return resource


def import_clients(
    clients: Sequence[ClientToImport],
    out_dir: Path,
    desired: Desired,
    clock: Callable[[], datetime],
    backend: Backend,
    locking: Locking,
    settings: ApiSettings,
    reporter: Progress,
) -> Generated:
    """Whole clients: a manifest each under ``out_dir``, every batch written recorded (generate.py);
    ``clock`` is read once the lock is held and the API connected."""
    from provisioner.operations.generate import generate_config

    with connected_writer(backend, locking, settings, reporter) as (writer, api):
        return generate_config(
            writer, api, clients, out_dir, desired, clock(), parallelism=settings.parallelism, reporter=reporter
        )


def forget_intent_of(
    address: str,
    backend: Backend,
    locking: Locking,
    settings: ApiSettings,
    recovery_wait: float | None,
    confirm: Callable[[Intent, Findings | str], None],
    force: bool = False,
) -> None:
    """Gives up the interrupted create of ADDRESS once ``confirm`` (shown the intent and the batches it
    may have made, or why they cannot be listed) returns; it raises to refuse."""
    from provisioner.applying.applier import RECOVERY_WAIT
    from provisioner.operations.state_edits import forget_intent, intent_candidates

    window = RECOVERY_WAIT if recovery_wait is None else recovery_wait
    with backend.writing(locking.command, timeout=locking.timeout, warn=locking.warn, run=locking.run) as writer:
        with settings.open(backend) as api:
            writer.attribute(locking.run, server_clock=api.clock.now)
            check_instance(writer.state, api, backend)
            intent, findings = intent_candidates(writer, api, address, window, force=force)
        confirm(intent, findings)
        forget_intent(writer, address)
