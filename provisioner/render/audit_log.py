"""The audit trail for people and tools: ``provisioner log`` as text, JSON or CSV.

Text: newest first, two lines an event (what happened, then who, from where and why). JSON:
``{"events": [...]}``, oldest first, every field as stored (absent fields are left out, never
null). CSV: oldest first, one column per field of history.FIELDS, an empty cell for an absent
one; text a spreadsheet would run as a formula is prefixed with an apostrophe.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence

from provisioner.core.audit_trail import FIELDS


def render_log(events: Sequence[Mapping], output_format: str) -> str:
    return {"text": render_text, "json": render_json, "csv": render_csv}[output_format](events)


def render_json(events: Sequence[Mapping]) -> str:
    return json.dumps({"events": list(events)}, indent=2, sort_keys=True) + "\n"


def render_csv(events: Sequence[Mapping]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS)
    for event in events:
        writer.writerow([_cell(event.get(name)) for name in FIELDS])
    return out.getvalue()


def _cell(value) -> str | int:
    if value is None:
        return ""
    if isinstance(value, int):
        return value
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def render_text(events: Sequence[Mapping]) -> str:
    if not events:
        return "No events recorded.\n"
    lines = []
    for event in reversed(events):
        what = [f"#{event.get('seq')}", str(event.get("at", "")), f"{event.get('action', ''):<13}"]
        if event.get("from_address"):
            what.append(f"{event['from_address']} -> {event.get('address', '')}")
        elif event.get("address"):
            what.append(str(event["address"]))
        if event.get("batch_id"):
            what.append(f"batch {event['batch_id']}")
        if isinstance(event.get("credits"), int):
            what.append(f"{event['credits']:,} credits")
        if event.get("detail"):
            what.append(f"({event['detail']})")
        lines.append("  ".join(what))
        who = [f"by {event.get('actor', 'unknown')}"]
        if event.get("commit"):
            who.append(f"commit {str(event['commit'])[:12]}")
        if event.get("review"):
            who.append(f"review #{event['review']}")
        if event.get("run_url"):
            who.append(f"run {event['run_url']}")
        if event.get("plan_digest"):
            who.append(f"plan {str(event['plan_digest'])[:12]}")
        if event.get("reason"):
            who.append(f"reason: {event['reason']}")
        lines.append("    " + ", ".join(who))
    return "\n".join(lines) + "\n"
