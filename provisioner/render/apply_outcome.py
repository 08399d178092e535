"""What became of an apply, for people: the closing line, and the summaries of an apply that stopped
(the API stopped answering, or changes failed). Pure: the CLI prints them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from provisioner.applying.applier import ApplyResult
    from provisioner.core.models import Plan


def outcome_line(outcome: ApplyResult, result: Plan) -> str:
    """The last line of every apply that ran: what was created, updated, recovered, and the credits issued."""
    created = set(outcome.created)
    issued = sum(change.credits for change in result.changes if change.address in created)
    return (
        f"Apply {'complete' if outcome.ok else 'stopped'}! Batches: {len(outcome.created)} created, "
        f"{len(outcome.updated)} updated, {len(outcome.adopted)} recovered. Credits issued: {issued:,}."
    )


def outage_summary(outcome: ApplyResult, rerun: str) -> str:
    """The one summary of an apply that stopped because the API stopped answering."""
    assert outcome.outage is not None  # asked only for such an apply
    done = len(outcome.created) + len(outcome.updated) + len(outcome.adopted)
    lines = [
        outcome.outage,
        f"  Done and recorded: {done} ({len(outcome.created)} created, {len(outcome.updated)} updated, "
        f"{len(outcome.adopted)} recovered). Not started: {outcome.skipped}.",
    ]
    if outcome.unresolved:
        lines.append(
            f"  Outcome unknown: {len(outcome.unresolved)} create(s) sent whose answer was lost or not yet "
            f"looked up ({shown(outcome.unresolved)}): each stays recorded as an intent, and the next apply "
            "looks it up before anything else."
        )
    lines.append(
        "  Nothing was sent twice: a create whose answer was lost is never sent again until a "
        "listing proves it never happened."
    )
    others = [(address, message) for address, message in outcome.failed if address not in outcome.unresolved]
    if others:
        lines.append("  " + failure_summary(others).replace("\n", "\n  "))
    lines.append(f"  When the API answers again, {rerun}")
    return "\n".join(lines)


def shown(addresses: list[str], most: int = 5) -> str:
    return ", ".join(addresses[:most]) + (f" and {len(addresses) - most} more" if len(addresses) > most else "")


def failure_summary(failed: list[tuple[str, str]]) -> str:
    """One line per distinct reason: a wrong key must not print the same 401 for every batch."""
    by_message: dict[str, list[str]] = {}
    for address, message in failed:
        by_message.setdefault(message, []).append(address)
    lines = []
    for message, addresses in by_message.items():
        lines.append(f"  {shown(addresses)}: {message}")
    return f"{len(failed)} change(s) failed:\n" + "\n".join(lines)
