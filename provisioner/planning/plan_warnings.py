"""The warnings a plan prints about what it leaves alone: batches no longer declared, grants removed,
periods their schedule no longer has or that began too late to issue. Pure: texts from the planner's findings."""

from __future__ import annotations

from collections.abc import Iterable

from provisioner.core.addresses import grant_address
from provisioner.core.plurals import plural, word_for
from provisioner.core.models import BatchSpec, Desired, Resource


def undeclared_warnings(undeclared: list[tuple[str, Resource]]) -> Iterable[tuple[str, str]]:
    for address, resource in undeclared:
        if grant_address(address) is None:
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
            f"{word_for(count, 'period batch', 'period batches')} ({listed_periods(periods)}) stay recorded as they are; "
            f"the API cannot delete batches. Use 'provisioner state rm {grant}@PERIOD' to stop tracking one."
        )


def unscheduled_warnings(unscheduled: dict[str, list[str]]) -> Iterable[str]:
    """Issued periods a grant's schedule no longer has: its new periods may repeat their credits."""
    for grant, periods in unscheduled.items():
        count = len(periods)
        yield (
            f"grant {grant}: {plural(count, 'issued period', 'issued periods')} ({listed_periods(periods)}) "
            f"{word_for(count, 'is', 'are')} not in its schedule any more ('every' or 'from' changed since?). "
            f"{word_for(count, 'It stays', 'They stay')} recorded as issued, and the schedule's own periods are "
            "issued besides: check the creates of this grant. If they repeat credits already given, move each "
            "recorded period onto its new address with 'provisioner state mv' before applying."
        )


def lapsed_warnings(lapsed: dict[str, list[BatchSpec]], desired: Desired) -> Iterable[str]:
    for grant, specs in sorted(lapsed.items()):
        expires_after = desired.grants[grant].expires_after
        count = len(specs)
        yield (
            f"grant {grant}: {plural(count, 'period', 'periods')} began but {word_for(count, 'is', 'are')} "
            f"not issued ({listed_periods([spec.period for spec in specs if spec.period])}): "
            f"{word_for(count, 'its batch', 'their batches')} would be created already expired "
            f"(expiresAfter: {expires_after.text if expires_after else ''}). To stop this note, move 'from' past "
            f"{word_for(count, 'it', 'them')} or set 'catchUp: false'."
        )


def listed_periods(periods: list[str], most: int = 4) -> str:
    if len(periods) <= most:
        return ", ".join(periods)
    return f"{', '.join(periods[: most - 1])}, ... {periods[-1]}"
