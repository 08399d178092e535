"""The manifests a command reads: loaded (with the cache unless told not to), with the policy's limits
as the options override them, and with the grants' period batches for the moment planned for."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.manifest.issues import ManifestError, ManifestIssue

if TYPE_CHECKING:
    from provisioner.core.models import Desired, Policy
    from provisioner.manifest.declarations import Declarations


def load_manifests(paths: Iterable[Path], no_cache: bool = False) -> Desired:
    from provisioner.manifest.cache import ManifestCache
    from provisioner.manifest.loader import load

    return load(list(paths), cache=None if no_cache else ManifestCache())


def read_manifests(paths: Iterable[Path], no_cache: bool = False) -> Declarations:
    from provisioner.manifest.cache import ManifestCache
    from provisioner.manifest.loader import read_declarations

    return read_declarations(list(paths), cache=None if no_cache else ManifestCache())


def effective_policy(desired: Desired | Declarations, overrides: dict) -> Policy:
    changes = {name: value for name, value in overrides.items() if value is not None}
    return desired.policy.model_copy(update=changes)


def expanded(desired: Desired, at: datetime) -> Desired:
    """``desired`` with its grants' period batches for ``at`` (see grants.py)."""
    from provisioner.planning.grants import expand

    try:
        return expand(desired, at)
    except (OverflowError, ValueError) as error:  # a period past the year 9999
        issue = ManifestIssue("", 0, 0, "", f"cannot expand the grants for --at {at.isoformat()}: {error}")
        raise ManifestError([issue]) from None
