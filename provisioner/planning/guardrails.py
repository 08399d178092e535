"""The policy's guardrails: the limits a plan must keep unless a person allows more. Pure: no I/O.

The plan lists every violation; apply refuses a plan that has any, unless given --allow-large."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

from provisioner.core.models import PlanPart, Policy, Violation
from provisioner.core.plurals import plural


class _Total(NamedTuple):
    """A limit on what one apply does in all: a figure summed over the plan's parts."""

    rule: str  # the policy field, as the manifest spells it
    limit: str  # the Policy attribute
    figure: str  # the Figures attribute summed
    verb: str  # what the plan does with it
    amount: Callable[[int], str]  # the sum, for people


_TOTALS = (
    _Total("maxApplyCredits", "max_apply_credits", "issued", "issue", lambda total: f"{total:,} credits in total"),
    _Total("maxCreates", "max_creates", "creates", "create", lambda creates: plural(creates, "batch", "batches")),
)


def violations(parts: tuple[PlanPart, ...], policy: Policy) -> Iterable[Violation]:
    """The guardrails the parts' changes break, from the parts' figures."""
    yield from _batches_too_large(parts, policy.max_batch_credits)
    for total in _TOTALS:
        limit = getattr(policy, total.limit)
        actual = sum(getattr(part.figures, total.figure) for part in parts)
        if actual > limit:
            yield Violation(
                rule=total.rule,
                limit=limit,
                actual=actual,
                message=(
                    f"this plan {total.verb}s {total.amount(actual)}, more than one apply may {total.verb} "
                    f"({limit:,}, policy {total.rule})."
                ),
            )


def _batches_too_large(parts: tuple[PlanPart, ...], largest: int) -> Iterable[Violation]:
    """Only a part whose largest batch is too large is looked into (a reused part then makes its
    changes again)."""
    for part in parts:
        if part.figures.largest <= largest:
            continue
        for change in part.changes:
            if change.credits > largest and change.action != "blocked":
                yield Violation(
                    rule="maxBatchCredits",
                    limit=largest,
                    actual=change.credits,
                    address=change.address,
                    message=(
                        f"{change.address} issues {change.credits:,} credits, more than the largest batch "
                        f"allowed ({largest:,}, policy maxBatchCredits)."
                    ),
                )
