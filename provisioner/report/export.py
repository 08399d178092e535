"""The report for tools: JSON (versioned, documented in docs/show-json.md) and CSV (for spreadsheets).

JSON: one object, keys sorted, two-space indentation. Within a major ``format_version`` fields are
only ever added, never renamed, removed or given a new meaning; readers ignore keys they do not know.

CSV: one row per batch (no totals row, so that a spreadsheet's sums are right), a header row, plain
numbers (no thousands separators), ISO dates (an expiry as the last day its credits can be used, beside
the instant itself), UTF-8. Text cells that a spreadsheet would run as a
formula (starting with = + - @) are prefixed with an apostrophe.
"""

from __future__ import annotations

import csv
import io
import json

from provisioner.core.timestamps import NO_EXPIRY, format_timestamp
from provisioner.report.model import BatchLine, Credits, CreditsReport

REPORT_FORMAT_VERSION = "1.2"

CSV_COLUMNS = (
    "client",
    "batch",
    "address",
    "name",
    "batch_id",
    "issued",
    "used",
    "remaining",
    "expired_unused",
    "unknown",
    "current_balance",
    "last_usable_day",
    "expires_on",
    "days_left",
    "status",
    "expiring_soon",
)


def report_to_json(report: CreditsReport) -> dict:
    soon = report.expiring_soon
    return {
        "format_version": REPORT_FORMAT_VERSION,
        "generated_at": format_timestamp(report.generated_at),
        "figures": {
            "source": "live" if report.live else "recorded",
            "as_of": format_timestamp(report.figures_at) if report.figures_at else None,
        },
        "expiring_within_days": report.expiring_within,
        "totals": {
            **_credits(report.totals),
            "clients": len(report.clients),
            "batches": len(report.batches),
            "expiring_soon": {"batches": len(soon), "credits": sum(line.credits.remaining for line in soon)},
        },
        "clients": [
            {"client": client.client, **_credits(client.credits), "batches": len(client.batches)}
            for client in report.clients
        ],
        "batches": [_batch(line) for line in report.batches],
        "expiring_by_month": [
            {"month": month.month.strftime("%Y-%m"), "credits": month.credits, "batches": month.batches}
            for month in report.expiring_by_month
        ],
        "interrupted": list(report.interrupted),
        "upcoming_grants": [
            {
                "client": g.client,
                "grant": g.grant,
                "address": g.address,
                "period": g.period,
                "date": g.on.isoformat(),
                "credits": g.credits,
            }
            for g in report.upcoming
        ],
    }


def render_json(report: CreditsReport) -> str:
    return json.dumps(report_to_json(report), indent=2, sort_keys=True) + "\n"


def _credits(credits: Credits) -> dict:
    return {
        "issued": credits.issued,
        "used": credits.used,
        "remaining": credits.remaining,
        "expired_unused": credits.expired_unused,
        "unknown": credits.unknown,
    }


def _batch(line: BatchLine) -> dict:
    return {
        "address": line.address,
        "client": line.client,
        "batch": line.batch,
        "batch_id": line.batch_id,
        "name": line.name,
        **_credits(line.credits),
        "current_balance": line.current_balance,
        "expires_on": format_timestamp(line.expires_on) if line.expires_on else None,
        "expiry_date": line.expires_on.date().isoformat() if line.expires_on else None,  # kept as 1.0 had it
        "last_usable_day": line.last_day.isoformat() if line.last_day else None,
        "days_left": line.days_left,
        "status": line.status,
        "expiring_soon": line.expiring_soon,
    }


def render_csv(report: CreditsReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # RFC 4180: quoted where needed, CRLF line ends
    writer.writerow(CSV_COLUMNS)
    for line in report.batches:
        row = _batch(line)
        row["last_usable_day"] = row["last_usable_day"] or NO_EXPIRY
        row["expiring_soon"] = "yes" if line.expiring_soon else "no"
        for text in ("name", "status"):
            row[text] = _inert(row[text])
        writer.writerow(["" if row[column] is None else row[column] for column in CSV_COLUMNS])
    return buffer.getvalue()


def _inert(text: str) -> str:
    """A spreadsheet runs a cell starting with = + - @ as a formula; names come from anyone with API access."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
