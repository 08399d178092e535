"""The report for a terminal: totals first, then a table per client."""

from __future__ import annotations

import re

from provisioner.core.plurals import plural
from provisioner.report import wording
from provisioner.report.model import BatchLine, ClientLine, Credits, CreditsReport

NOTHING_RECORDED = "No batches recorded in this state file yet.\n"
MARKER = "!"


def render_text(report: CreditsReport) -> str:
    if report.is_empty:
        return NOTHING_RECORDED
    heading = f"Credit batches {wording.figures_source(report)}"
    heading += ":" if report.live else " (add --refresh for live figures):"
    blocks = [[heading], _totals(report)]
    if report.clients:
        blocks.append(_client_table(report))
    blocks += [_client_block(client, report) for client in report.clients]
    blocks += [_upcoming(report), _interrupted(report)]
    return "\n\n".join("\n".join(block) for block in blocks if block) + "\n"


def _totals(report: CreditsReport) -> list[str]:
    lines = [f"Total: {_sentence(report.totals)}."]
    soon = report.expiring_soon
    if soon:
        unused = sum(line.credits.remaining for line in soon)
        lines.append(
            f"Expiring within {report.expiring_within} days: {plural(len(soon), 'batch', 'batches')}, "
            f"{wording.credits(unused)} credits unused (marked {MARKER})."
        )
    return lines


def _sentence(credits: Credits) -> str:
    parts = [
        f"{wording.credits(credits.issued)} credits issued",
        f"{wording.credits(credits.used)} used",
        f"{wording.credits(credits.remaining)} remaining",
        f"{wording.credits(credits.expired_unused)} expired unused",
    ]
    if credits.unknown:
        parts.append(f"{wording.credits(credits.unknown)} unknown (batches the API no longer lists)")
    return ", ".join(parts)


def _client_table(report: CreditsReport) -> list[str]:
    columns = list(wording.CREDIT_COLUMNS) + ([("unknown", "unknown")] if report.totals.unknown else [])
    header = ["client"] + [title for _, title in columns] + ["batches"]
    rows = [
        [_safe(client.client)]
        + [wording.credits(getattr(client.credits, name)) for name, _ in columns]
        + [f"{len(client.batches):,}"]
        for client in report.clients
    ]
    rows.append(
        ["total"]
        + [wording.credits(getattr(report.totals, name)) for name, _ in columns]
        + [f"{len(report.batches):,}"]
    )
    return _table(header, rows, numeric=set(range(1, len(header))))


def _client_block(client: ClientLine, report: CreditsReport) -> list[str]:
    header = ["", "batch", "name", "issued", "used", "remaining", "last day (UTC)", "status"]
    rows = [_batch_row(line, report.expiring_within) for line in client.batches]
    return [f"{_safe(client.client)}: {_sentence(client.credits)}"] + _table(header, rows, numeric={3, 4, 5})


def _batch_row(line: BatchLine, expiring_within: int) -> list[str]:
    remaining = "?" if line.credits.unknown else wording.credits(line.credits.remaining)
    return [
        MARKER if line.expiring_soon else "",
        _safe(line.batch),
        _safe(line.name),
        wording.credits(line.credits.issued),
        wording.used(line),
        remaining,
        wording.expiry(line),
        _safe(wording.status(line, expiring_within)),
    ]


def _upcoming(report: CreditsReport) -> list[str]:
    if not report.upcoming:
        return []
    rows = [
        [_safe(g.client), _safe(g.grant), _safe(g.period), g.on.isoformat(), wording.credits(g.credits)]
        for g in report.upcoming
    ]
    return ["Upcoming grants:"] + _table(["client", "grant", "period", "date", "credits"], rows, numeric={4})


def _interrupted(report: CreditsReport) -> list[str]:
    if not report.interrupted:
        return []
    return [
        f"Note: an apply was interrupted while creating {', '.join(map(_safe, report.interrupted))}; "
        "the next apply resolves it (never twice). Not counted above."
    ]


def _safe(text: str) -> str:
    """Names come from the API too: they must not drive the terminal."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], str(text))


def _table(header: list[str], rows: list[list[str]], numeric: set[int]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return (
            "  "
            + "  ".join(
                cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i]) for i, cell in enumerate(cells)
            ).rstrip()
        )

    rule = ["-" * width if title else " " * width for title, width in zip(header, widths, strict=True)]
    return [line(header), line(rule)] + [line(row) for row in rows]
