"""The warnings a plan prints about what it leaves alone: batches no longer declared, grants removed,
periods their schedule no longer has or that began too late to issue. Pure: texts from the planner's findings."""

from __future__ import annotations

from collections.abc import Iterable

from provisioner.planning import grants
from provisioner.core.models import BatchSpec, Desired, Resource


def undeclared_warnings(undeclared: list[tuple[str, Resource]]) -> Iterable[tuple[str, str]]:
    for address, resource in undeclared:
        if grants.grant_address(address) is None:
            yield address, (
                f"{address} (batch {resource.batch_id}) is recorded in state but no longer declared: "
                "left as is; the API cannot delete batches. Use 'provisioner state rm "
                f"{address}' to stop tracking it."
            )


def removed_grant_warnings(removed: dict[str, list[str]]) -> Iterable[str]:
    """One line per grant, however many periods it issued."""
    for grant, periods in removed.items():
        count = len(periods)
        yield (
            f"grant {grant} is no longer declared: no further periods are issued. Its {count} issued "
            f"period batch{'' if count == 1 else 'es'} ({listed_periods(periods)}) stay recorded as they are; "
            f"the API cannot delete batches. Use 'provisioner state rm {grant}@PERIOD' to stop tracking one."
        )


def unscheduled_warnings(unscheduled: dict[str, list[str]]) -> Iterable[str]:
    """Issued periods a grant's schedule no longer has: its new periods may repeat their credits."""
    for grant, periods in unscheduled.items():
        count = len(periods)
        yield (
            f"grant {grant}: {count} issued period{'' if count == 1 else 's'} ({listed_periods(periods)}) "
            f"{'is' if count == 1 else 'are'} not in its schedule any more ('every' or 'from' changed since?). "
            f"{'It stays' if count == 1 else 'They stay'} recorded as issued, and the schedule's own periods are "
            "issued besides: check the creates of this grant. If they repeat credits already given, move each "
            "recorded period onto its new address with 'provisioner state mv' before applying."
        )


def lapsed_warnings(lapsed: dict[str, list[BatchSpec]], desired: Desired) -> Iterable[str]:
    for grant, specs in sorted(lapsed.items()):
        expires_after = desired.grants[grant].expires_after
        count = len(specs)
        yield (
            f"grant {grant}: {count} period{'' if count == 1 else 's'} began but {'is' if count == 1 else 'are'} "
            f"not issued ({listed_periods([spec.period for spec in specs])}): "
            f"{'its batch' if count == 1 else 'their batches'} would be created already expired "
            f"(expiresAfter: {expires_after.text if expires_after else ''}). To stop this note, move 'from' past "
            f"{'it' if count == 1 else 'them'} or set 'catchUp: false'."
        )


def listed_periods(periods: list[str], most: int = 4) -> str:
    if len(periods) <= most:
        return ", ".join(periods)
    return f"{', '.join(periods[: most - 1])}, ... {periods[-1]}"
