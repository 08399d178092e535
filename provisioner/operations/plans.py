"""A plan of the manifests against the state: made whole, or from the parts of the last text plan that
still hold (the plan memo), with the live batches when asked; and why apply would refuse one."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.core.plurals import plural
from provisioner.operations.manifests import effective_policy, expanded, read_manifests

if TYPE_CHECKING:
    from provisioner.backends import Backend
    from provisioner.core.models import Desired, Plan, Policy, State
    from provisioner.manifest.declarations import Declarations
    from provisioner.operations.connection import ApiSettings
    from provisioner.render.progress import Progress


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


class PlanRefused(Exception):
    """The plan cannot be made or applied as asked; nothing was changed."""


@dataclass(frozen=True)
class Planned:
    """A plan, and what it was made from (for a saved plan)."""

    plan: Plan
    desired: Desired | None  # None when the memo made the plan: the batches were not built
    state: State
    policy: Policy
    replace: list[str]
    refresh: bool
    allow_duplicates: list[str]

    def save(self, path: Path) -> None:
        """The plan file 'provisioner apply PATH' applies exactly (the plan was made whole: no memo)."""
        from provisioner.planning.saved_plan import save_plan

        assert self.desired is not None  # a plan to save never reuses the memo's parts: the batches were built
        save_plan(
            path,
            self.desired,
            self.plan,
            self.state,
            self.policy,
            self.replace,
            refresh=self.refresh,
            allow_duplicates=self.allow_duplicates,
        )


def plan_manifests(
    paths: Sequence[Path],
    backend: Backend,
    at: datetime,
    *,
    at_asked: bool = False,
    clock: Callable[[], datetime] = now_utc,
    no_cache: bool = False,
    policy_overrides: dict | None = None,
    replace: Iterable[str] = (),
    allow_duplicates: Iterable[str] = (),
    live: ApiSettings | None = None,
    reporter: Progress | None = None,
    reuse_parts: bool = False,
) -> Planned:
    """The plan of the manifests in ``paths`` against the state, for ``at``; with the live batches
    when ``live`` says where the API is (--refresh). ``at_asked``: ``at`` was asked for (--at), so that
    ``clock`` says the moment it really is. ``reuse_parts``: the output may come from the plan memo (the
    memo is used only for a plan of now, or of a moment past)."""
    from provisioner.operations.live_batches import read_live

    declarations = read_manifests(paths, no_cache)
    state = backend.read()
    check_replace_addresses(replace, state)
    policy = effective_policy(declarations, policy_overrides or {})
    # Without --at, the moment is now; a later --at may mark periods early, which only a plan made whole says.
    real_now = clock() if at_asked else at

    def observe(desired: Desired) -> tuple[dict, datetime]:
        assert live is not None
        observed, api_now = read_live(
            desired,
            state,
            backend,
            sandbox=live.sandbox,
            base_url=live.base_url,
            rate_limit=live.rate_limit,
            parallelism=live.parallelism,
            reporter=reporter,
            give_up_after=live.give_up_after,
        )
        # By the API's clock for a moment other than now; now is now, as apply judges it.
        return observed, (api_now if at_asked else at)

    result, desired = plan_changes(
        declarations,
        state,
        at,
        policy,
        replace=replace,
        allow_duplicates=allow_duplicates,
        observe=observe if live is not None else None,
        real_now=real_now,
        reuse_parts=reuse_parts and not at > real_now,
    )
    return Planned(result, desired, state, policy, list(replace), live is not None, list(allow_duplicates))


def plan_changes(
    declarations: Declarations,
    state: State,
    at: datetime,
    policy: Policy,
    *,
    replace: Iterable[str] = (),
    allow_duplicates: Iterable[str] = (),
    observe: Callable[[Desired], tuple[dict, datetime]] | None = None,
    real_now: datetime | None = None,
    reuse_parts: bool = False,
) -> tuple[Plan, Desired | None]:
    """The plan, and the batches wanted (None when the memo made the plan: they were not built).

    ``observe``: the live batches of these batches' clients (--refresh), and the moment by the API's
    clock, which then replaces ``real_now`` (the moment it really is: a period that begins after it is
    marked early). ``reuse_parts``: the plan
    may come from the memo's parts, when the memo can plan these manifests against this state."""
    from provisioner.planning import plan_memo
    from provisioner.planning.planner import make_plan

    if reuse_parts and plan_memo.usable(declarations, state):
        return plan_memo.plan(declarations, state, at, policy, plan_memo.PlanMemo()), None
    desired = expanded(declarations.desired(), at)
    observed = None
    if observe is not None:
        observed, real_now = observe(desired)
    result = make_plan(
        desired,
        state,
        at,
        observed=observed,
        replace=replace,
        policy=policy,
        allow_duplicates=allow_duplicates,
        real_now=real_now,
    )
    return result, desired


def check_replace_addresses(replace: Iterable[str], state: State) -> None:
    unknown = [address for address in replace if address not in state.resources]
    if unknown:
        raise PlanRefused(
            f"--replace {unknown[0]}: no such address in state; 'provisioner state list' shows the recorded ones."
        )


def why_it_cannot_be_applied(result: Plan, allow_large: bool = False, then: str = "plan") -> str | None:
    """Why apply would refuse this plan (blocked changes, batches missing from the API, guardrail
    violations), or None. plan exits 1 for the same reasons, so CI needs nothing else to tell."""
    blocked = result.count("blocked")
    missing = result.count("missing")
    reasons = []
    if blocked:
        reasons.append(f"{plural(blocked, 'change is', 'changes are')} blocked (marked '!' above)")
    if missing:
        reasons.append(
            f"{plural(missing, 'recorded batch is', 'recorded batches are')} missing from the API (marked '!' above)"
        )
    violations = len(result.violations)
    broken = violations > 0 and not allow_large
    if reasons:
        also = (
            (f" It also breaks {plural(violations, 'guardrail', 'guardrails')} of the policy (listed above).")
            if broken
            else ""
        )
        return f"{' and '.join(reasons)}. Fix them as the plan says, then run {then} again.{also}"
    if broken:
        return (
            f"it breaks {plural(violations, 'guardrail', 'guardrails')} of the policy (listed "
            "above). If this is intended, raise the policy in the manifest (visible in review), or apply "
            "with --allow-large."
        )
    return None
