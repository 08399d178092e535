"""A plan of the manifests against the state: made whole, or from the parts of the last text plan that
still hold (the plan memo), with the live batches when asked."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from provisioner.operations.manifests import expanded

if TYPE_CHECKING:
    from provisioner.core.models import Desired, Plan, Policy, State
    from provisioner.manifest.declarations import Declarations


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
