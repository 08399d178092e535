"""The warnings a plan prints about what it leaves alone: batches no longer declared, grants removed,
periods their schedule no longer has or that began too late to issue. Pure: texts from the planner's findings."""

from __future__ import annotations

from collections.abc import Iterable

from provisioner.core.addresses import grant_address
from provisioner.core.models import BatchSpec, Desired, Resource
from provisioner.core.plurals import plural, word_for
from provisioner.planning import grants


def undeclared_warnings(undeclared: list[tuple[str, Resource]]) -> Iterable[tuple[str, str]]:
    for address, resource in undeclared:
        if grant_address(address) is None:
            yield (
                address,
                (
                    f"{address} (batch {resource.batch_id}) is recorded in state but no longer declared: "
                    "left as is; the API cannot delete batches. Use 'provisioner state rm "
                    f"{address}' to stop tracking it."
                ),
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


def catch_up_warnings(created: dict[str, list[str]], current: dict[str, str], desired: Desired) -> Iterable[str]:
    """A grant that issues periods begun before its current one (catchUp, the default) issues several
    periods' credits at once: the plan says so, with how many and which."""
    for grant, periods in sorted(created.items()):
        earlier = [period for period in periods if period != current.get(grant)]
        if not earlier:
            continue
        count = len(earlier)
        yield (
            f"grant {grant}: catching up {count} period{'' if count == 1 else 's'} that began before the "
            f"current one ({current[grant]}): {period_span(desired.grants[grant], earlier)}. "
            f"{'Its' if count == 1 else 'Their'} credits are issued now; 'catchUp: false' issues only the "
            "current period."
        )


def period_span(grant, periods: list[str]) -> str:
    """'2026-q1..2026-q3' for periods one after the other, else the list."""
    if len(periods) > 2:  # in order and each once: one after the other when the ends are that far apart
        first, last = grants.period_index(grant, periods[0]), grants.period_index(grant, periods[-1])
        if first is not None and last is not None and last - first == len(periods) - 1:
            return f"{periods[0]}..{periods[-1]}"
    return listed_periods(periods)


def listed_periods(periods: list[str], most: int = 4) -> str:
    if len(periods) <= most:
        return ", ".join(periods)
    return f"{', '.join(periods[: most - 1])}, ... {periods[-1]}"
