"""What an apply is asked to do: the batches wanted, the moment, the policy and the run's choices,
taken from a saved plan (as it was reviewed) or from the manifests and the command's options."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.operations.manifests import effective_policy, expanded, load_manifests

if TYPE_CHECKING:
    from provisioner.core.models import Desired, Policy
    from provisioner.planning.saved_plan import SavedPlan


@dataclass(frozen=True)
class ApplyRequest:
    desired: Desired  # with the grants' period batches for ``at``
    at: datetime
    policy: Policy
    replace: list[str]
    refresh: bool
    allow_duplicates: list[str]
    saved: SavedPlan | None = None  # the reviewed plan the result must match, if one was given

    @classmethod
    def asked(
        cls,
        paths: Sequence[Path],
        moment: Callable[[], datetime],
        say: Callable[[str], None],
        *,
        no_cache: bool = False,
        policy_overrides: dict | None = None,
        replace: Iterable[str] = (),
        refresh: bool = False,
        allow_duplicates: Iterable[str] = (),
    ) -> ApplyRequest:
        """From PATHS as apply is given them: one saved plan (which refuses options that would change
        it), else manifests. ``moment``: the moment asked for, taken once the options are accepted."""
        from provisioner.planning.saved_plan import saved_plan_in

        saved = saved_plan_in(paths)
        if saved:
            overrides = policy_overrides or {}
            saved.refuse_options(replace=replace, refresh=refresh, allow_duplicate=allow_duplicates, **overrides)
            return cls.from_saved_plan(saved, moment(), say)
        return cls.from_manifests(
            paths,
            moment(),
            no_cache=no_cache,
            policy_overrides=policy_overrides,
            replace=replace,
            refresh=refresh,
            allow_duplicates=allow_duplicates,
        )

    @classmethod
    def from_saved_plan(cls, saved: SavedPlan, now: datetime, say: Callable[[str], None]) -> ApplyRequest:
        """Everything as the plan was made; the moment is the plan's own when it is still valid (``say``
        tells the user which moment it is)."""
        at = saved.moment_to_apply(now, say)
        return cls(
            desired=expanded(saved.desired, at),
            at=at,
            policy=saved.policy,
            replace=list(saved.replace),
            refresh=saved.refresh,
            allow_duplicates=list(saved.allow_duplicates),
            saved=saved,
        )

    @classmethod
    def from_manifests(
        cls,
        paths: Iterable[Path],
        at: datetime,
        *,
        no_cache: bool = False,
        policy_overrides: dict | None = None,
        replace: Iterable[str] = (),
        refresh: bool = False,
        allow_duplicates: Iterable[str] = (),
    ) -> ApplyRequest:
        desired = expanded(load_manifests(paths, no_cache), at)
        return cls(
            desired=desired,
            at=at,
            policy=effective_policy(desired, policy_overrides or {}),
            replace=list(replace),
            refresh=refresh,
            allow_duplicates=list(allow_duplicates),
        )
