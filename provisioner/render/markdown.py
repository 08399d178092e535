"""The Markdown plan: GitHub-flavoured, for a pull-request comment; the text plan folded in at its end."""

from __future__ import annotations

import re

from provisioner.core.models import Change, Plan
from provisioner.core.timestamps import NO_EXPIRY
from provisioner.planning.plan_document import summary_counts
from provisioner.render.common import (
    HEADLINES,
    NO_CHANGES,
    changed_fields,
    count_phrase,
    info_rows,
    sections,
    thousands,
)
from provisioner.render.text import render_text

# Characters that would start emphasis, links, HTML, entities, strikethrough,
# math (GitHub) or end a table cell.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&$])")

MARKDOWN_SYMBOLS = {
    "create": "➕ create",
    "update": "🔄 update",
    "blocked": "⛔ blocked",
    "recover": "❓ recover",
    "replace": "♻️ replace",
    "missing": "⛔ missing",
}


def escape_markdown(text) -> str:
    """Literal inline text: one line, no Markdown meaning, safe inside a table cell."""
    one_line = re.sub(r"[\r\n\t\x00-\x1f\x7f]+", " ", str(text))
    return _MARKDOWN_SPECIAL.sub(r"\\\1", one_line)


def _plain_value(value, field: str = "") -> str:
    if value is None:
        return NO_EXPIRY if field == "expiresOn" else "(none)"
    if isinstance(value, int) and not isinstance(value, bool):
        return thousands(value)
    return str(value)


def _markdown_summary(plan: Plan) -> str:
    counts = summary_counts(plan)
    phrases = ", ".join(count_phrase(a, n) for a, n in counts.items() if n)
    total = plan.total_credits
    credits = f"{thousands(total)} credits to issue" if total else "no credits to issue"
    return f"**Plan: {phrases} — {credits}**"


def _problem_items(plan: Plan) -> list[str]:
    items = []
    for change in plan.blocked:
        reasons = " ".join(escape_markdown(r) for r in change.reasons)
        headline = f"⛔ **{escape_markdown(change.address)}** {HEADLINES[change.action]}"
        items.append(f"- {headline}" + (f": {reasons}" if reasons else ""))
    items.extend(f"- ⚠️ **Guardrail:** {escape_markdown(v.message)}" for v in plan.violations)
    return items


def _detail_parts(change: Change) -> list[str]:
    before, after = change.before, change.after
    if change.action == "missing":
        parts = []
    elif before is None or (change.action == "replace" and not changed_fields(before, after or {})):
        parts = [f"{k}: {_plain_value(v, k)}" for k, v in sorted((after or {}).items())]
    else:
        # "→", not "->": escaping ">" would leave "-\>" in the raw text of the comment.
        parts = [
            f"{k}: {_plain_value(before.get(k), k)} → {_plain_value((after or {}).get(k), k)}"
            for k in changed_fields(before, after or {})
        ]
    return [escape_markdown(p) for p in parts + list(change.reasons)]


def _table_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _client_table(client: str, changes: list[Change]) -> list[str]:
    lines = [
        f"### {escape_markdown(client)}",
        "",
        _table_row(["Action", "Batch", "Credits", "Details"]),
        _table_row(["---", "---", "---:", "---"]),
    ]
    for change in changes:
        credits = thousands(change.credits) if change.credits else "—"
        details = "<br>".join(_detail_parts(change)) or "—"
        lines.append(
            _table_row([MARKDOWN_SYMBOLS[change.action], escape_markdown(_batch_key(change)), credits, details])
        )
    return lines


def _batch_key(change: Change) -> str:
    prefix = change.client_key + "/"
    return change.address[len(prefix) :] if change.address.startswith(prefix) else change.address


def _client_tables(plan: Plan) -> list[str]:
    by_client: dict[str, list[Change]] = {}
    for change in plan.changes:
        by_client.setdefault(change.client_key, []).append(change)
    lines: list[str] = []
    for client in sorted(by_client):
        lines += _client_table(client, by_client[client]) + [""]
    return lines[:-1]


CREATING = ("create", "replace", "recover")  # the actions that issue credits
MOST_CLIENTS_CHARTED = 8


def _client_summary(plan: Plan) -> list[str]:
    """Creates, updates and credits per client: the subtotals a reviewer checks first."""
    rows: dict[str, list[int]] = {}
    for change in plan.changes:
        row = rows.setdefault(change.client_key, [0, 0, 0])
        row[0] += change.action in CREATING
        row[1] += change.action == "update"
        row[2] += change.credits
    lines = [_table_row(["Client", "Creates", "Updates", "Credits"]), _table_row(["---", "---:", "---:", "---:"])]
    for client, (creates, updates, credits) in sorted(rows.items()):
        lines.append(_table_row([escape_markdown(client), str(creates), str(updates), thousands(credits)]))
    if len(rows) > 1:
        creates, updates, credits = (sum(row[i] for row in rows.values()) for i in range(3))
        lines.append(_table_row(["**Total**", f"**{creates}**", f"**{updates}**", f"**{thousands(credits)}**"]))
    return lines


def _credits_chart(plan: Plan) -> list[str]:
    """A Mermaid pie of the credits per client (GitHub and GitLab draw it), when there is a share to see."""
    by_client = plan.credits_by_client()
    if len(by_client) < 2:
        return []
    ranked = sorted(by_client.items(), key=lambda item: (-item[1], item[0]))
    slices = ranked[:MOST_CLIENTS_CHARTED]
    others = ranked[MOST_CLIENTS_CHARTED:]
    if others:
        slices.append((f"{len(others)} other clients", sum(credits for _, credits in others)))
    # Client keys are [a-z0-9._-] (checked by the loader): nothing in a label can end its quotes.
    return (
        ["```mermaid", "pie showData title Credits to issue per client"]
        + [f'    "{label}" : {credits}' for label, credits in slices]
        + ["```"]
    )


def _markdown_warnings(plan: Plan) -> list[str]:
    return [f"- Warning: {escape_markdown(w)}" for w in plan.warnings]


def _markdown_info(plan: Plan) -> list[str]:
    if not plan.info:
        return []
    headers = ["Batch", "Starting", "Current", "Used", "Status", "Expires"]
    lines = ["### Credit usage", "", _table_row(headers), _table_row(["---", "---:", "---:", "---:", "---", "---"])]
    lines += [_table_row([escape_markdown(c) for c in row]) for row in info_rows(plan)]
    return lines


def _markdown_upcoming(plan: Plan) -> list[str]:
    if not plan.upcoming:
        return []
    lines = [
        "### Next period of each grant",
        "",
        _table_row(["Grant", "Period", "Starts", "Credits"]),
        _table_row(["---", "---", "---", "---:"]),
    ]
    lines += [
        _table_row(
            [
                escape_markdown(item.grant),
                escape_markdown(item.period),
                escape_markdown(f"{item.starts_on} ({item.time_zone})"),
                thousands(item.credits),
            ]
        )
        for item in plan.upcoming
    ]
    return lines


def _as_diff(text: str) -> str:
    # GitHub colours a diff line by its first character: move each marker to column 0.
    return re.sub(r"^( +)(-/\+|[-+~!?])", r"\2\1", text, flags=re.MULTILINE)


def _fenced(text: str, info: str) -> list[str]:
    longest_backtick_run = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest_backtick_run + 1)
    return [f"{fence}{info}", text.rstrip("\n"), fence]


def _full_plan(plan: Plan) -> list[str]:
    return [
        "<details><summary>Full plan</summary>",
        "",
        *_fenced(_as_diff(render_text(plan, color=False)), "diff"),
        "",
        "</details>",
    ]


def render_markdown(plan: Plan) -> str:
    """GitHub-flavoured Markdown for a pull-request comment."""
    if not plan.changes:
        return sections(
            [f"**No changes.** {NO_CHANGES.removeprefix('No changes. ')}"],
            _problem_items(plan),
            _markdown_warnings(plan),
            _markdown_upcoming(plan),
            _markdown_info(plan),
        )
    return sections(
        [_markdown_summary(plan)],
        _problem_items(plan),
        _client_summary(plan),
        _credits_chart(plan),
        _client_tables(plan),
        _markdown_warnings(plan),
        _markdown_upcoming(plan),
        _markdown_info(plan),
        _full_plan(plan),
    )
