"""Turn a Plan into text (terminal), Markdown (pull-request comment) or JSON.

Pure functions: nothing here reads or writes anything.

JSON plan format (``format_version`` "1.2")
===========================================

``provisioner plan --format json`` prints one object. Keys are sorted, indentation is
two spaces. Within a major version fields are only ever added, never renamed,
removed or given a new meaning; readers should ignore keys they do not know.

.. code-block:: text

    {
      "format_version": "1.2",
      "changes": [                      # in plan order (sorted by address)
        {
          "address": "acme/2026-q1",    # "<client key>/<batch key>"
          "client":  "acme",            # the client key
          "action":  "create",          # create | update | blocked | recover | replace | missing
          "before":  null | {...},      # attributes as recorded/found; null for a create
          "after":   null | {...},      # attributes to send; null when nothing is sent (missing)
          "reasons": ["..."],           # why (blocked, recover, missing) and how to fix it
          "credits": 5000               # credits this change issues (0 unless it creates a batch)
        }
      ],
      "summary": {
        "create": 1, "update": 0, "blocked": 0, "recover": 0, "replace": 0, "missing": 0,
        "unchanged": 4,                 # declared batches that already match
        "credits": 5000,                # total credits the plan issues
        "credits_by_client": {"acme": 5000}   # only clients receiving credits
      },
      "warnings":   ["..."],            # informational, apply proceeds
      "violations": [                   # guardrail violations: apply refuses without --allow-large
        {"rule": "maxBatchCredits",     # the policy field broken: maxBatchCredits | maxApplyCredits | maxCreates
         "limit": 50000,                # the policy's value
         "actual": 60000,               # the plan's value: credits of the batch / of the plan, batches created
         "address": "globex/huge",      # the batch, for maxBatchCredits; null for rules about the whole plan
         "message": "globex/huge issues 60,000 credits, more than ..."}   # the 1.0 string, for people
      ],
      "info": [                         # usage per batch from a refresh; not changes
        {"address": "...", "batchId": "...", "startingBalance": 5000,
         "currentBalance": 3800, "allocatedCredits": 1200,
         "status": "active", "expiresOn": "2026-12-31T23:59:59.000Z"}
      ],
      "upcoming": [                     # each recurring grant's next period, not begun at the plan's
        {"grant": "acme/quarterly",     # moment (--at): what the schedule issues next, by grant address
         "address": "acme/quarterly@2026-q2",   # the batch it will create
         "period": "2026-q2",
         "starts_on": "2026-04-01",     # the local day it starts, in time_zone
         "starts_at": "2026-03-31T22:00:00.000Z",   # that day's local midnight, in UTC
         "time_zone": "Europe/Berlin",
         "credits": 5000,
         "name": "Acme 2026-q2",
         "expires_on": "2027-03-31T22:00:00.000Z"}  # null: never expires
      ],
      "has_changes": true,              # false when only "missing" entries (or nothing) remain
      "meta": {...}                     # present only when the caller supplies it
    }

Attribute objects (``before``/``after``) use the API's field names:
``name``, ``startingBalance``, ``expiresOn`` (UTC, ``YYYY-MM-DDTHH:MM:SS.mmmZ``),
``clientId``, ``creditAccountId``; an optional field that is not set is absent.
Apply refuses a plan with any ``blocked`` or ``missing`` change.

Versions: 1.0 had ``violations`` as strings; 1.1 makes each an object whose ``message`` is that
string. (An addition in spirit, but a change of type, so the minor version says so.) 1.2 adds
``upcoming`` (recurring grants); a period batch's address is ``client/grant@period``.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterator

from provisioner.bulk import paused_gc
from provisioner.models import FIXED_FIELDS, Change, Plan, PlanPart
from provisioner.timestamps import NO_EXPIRY

JSON_FORMAT_VERSION = "1.2"

# Order in which actions appear in summaries.
ACTIONS = ("create", "update", "replace", "recover", "blocked", "missing")

SYMBOLS = {
    "create": "+",
    "update": "~",
    "blocked": "!",
    "recover": "?",
    "replace": "-/+",
    "missing": "!",
}

HEADLINES = {
    "create": "will be created",
    "update": "will be updated in place",
    "blocked": "cannot be applied",
    "recover": "was interrupted while being created: apply will adopt it if found, else create it",
    "replace": "will be replaced by a new batch",
    "missing": "is recorded but no longer found in the API",
}

NO_CHANGES = "No changes. Your credit batches match the manifests."

_ANSI = {
    "green": "\x1b[32m",
    "yellow": "\x1b[33m",
    "red": "\x1b[31m",
    "cyan": "\x1b[36m",
    "magenta": "\x1b[35m",
    "bold": "\x1b[1m",
    "reset": "\x1b[0m",
}

_SYMBOL_COLORS = {"+": "green", "~": "yellow", "!": "red", "?": "cyan", "-/+": "magenta"}


# ---------------------------------------------------------------- shared helpers


def _thousands(n: int) -> str:
    return f"{n:,}"


def _summary_counts(plan: Plan) -> dict[str, int]:
    by_action = plan.figures.counts
    counts = {action: by_action[action] for action in ACTIONS}
    counts["unchanged"] = plan.unchanged
    return counts


def _count_phrase(action: str, n: int) -> str:
    if action in ("blocked", "missing", "unchanged"):
        return f"{n} {action}"
    return f"{n} to {action}"


def _changed_fields(before: dict, after: dict) -> list[str]:
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


def _batch_key(change: Change) -> str:
    prefix = change.client_key + "/"
    return change.address[len(prefix):] if change.address.startswith(prefix) else change.address


# ---------------------------------------------------------------- text


def _strip_controls(text: str) -> str:
    """Show control characters escaped: manifest text must not drive the terminal."""
    text = str(text)
    if text.isascii() and text.isprintable():  # the usual case, told at C speed
        return text
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _value(value) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    # json.dumps quotes strings and escapes control characters.
    return json.dumps(value, ensure_ascii=False)


def _transition(before: dict, after: dict, field: str) -> str:
    return f"{_shown(before, field)} -> {_shown(after, field)}"


def _shown(values: dict, field: str) -> str:
    if field == "expiresOn" and values.get(field) is None:
        return NO_EXPIRY
    return _value(values.get(field))


class _Painter:
    def __init__(self, color: bool):
        self.color = color

    def __call__(self, text: str, style: str) -> str:
        if not self.color:
            return text
        return f"{_ANSI[style]}{text}{_ANSI['reset']}"

    def symbol(self, symbol: str) -> str:
        style = _SYMBOL_COLORS.get(symbol)
        return self(symbol, style) if style else symbol


def _field_rows(change: Change) -> list[tuple[str, str, str]]:
    """(marker, field, shown value) for the lines inside a change's block."""
    before, after = change.before, change.after
    if change.action == "missing":
        return [(" ", k, _value(v)) for k, v in sorted((before or {}).items())]
    if before is None:
        return [("+", k, _value(v)) for k, v in sorted((after or {}).items())]
    after = after or {}
    if change.action == "replace":
        changed = set(_changed_fields(before, after))
        return [
            ("~", k, _transition(before, after, k)) if k in changed else ("+", k, _value(after[k]))
            for k in sorted(set(after) | changed)
        ]
    if change.action == "blocked":
        return [
            ("!" if k in FIXED_FIELDS else "~", k, _transition(before, after, k))
            for k in _changed_fields(before, after)
        ]
    return [("~", k, _transition(before, after, k)) for k in _changed_fields(before, after)]


def _reason_line(reason: str) -> str:
    # Reasons the planner already labels ("Fix: ...") keep their label.
    if re.match(r"^[A-Z][A-Za-z ]{0,20}: ", reason):
        return reason
    return f"Reason: {reason}"


def _change_block(change: Change, paint: _Painter) -> list[str]:
    symbol = SYMBOLS[change.action]
    lines = [
        paint(f"  # {_strip_controls(change.address)} {HEADLINES[change.action]}", "bold"),
        f"{' ' * (3 - len(symbol))}{paint.symbol(symbol)} batch {_value(change.address)} {{",
    ]
    rows = _field_rows(change)
    width = max((len(field) for _, field, _ in rows), default=0)
    for marker, field, shown in rows:
        lines.append(f"      {paint.symbol(marker)} {_strip_controls(field):<{width}} = {shown}")
    lines.append("    }")
    lines.extend(f"    {_strip_controls(_reason_line(r))}" for r in change.reasons)
    return lines


def _summary_line(plan: Plan) -> str:
    counts = _summary_counts(plan)
    always = ("create", "update", "blocked", "unchanged")
    phrases = [_count_phrase(a, n) for a, n in counts.items() if n or a in always]
    return "Plan: " + ", ".join(phrases) + "."


def _credits_line(plan: Plan) -> str:
    total = plan.total_credits
    if not total:
        return "Credits to issue: 0."
    per_client = "; ".join(f"{c} {_thousands(n)}" for c, n in plan.credits_by_client().items())
    return f"Credits to issue: {_thousands(total)} ({_strip_controls(per_client)})."


def _warning_lines(plan: Plan, paint: _Painter) -> list[str]:
    return [f"{paint('Warning:', 'yellow')} {_strip_controls(w)}" for w in plan.warnings]


def _violation_lines(plan: Plan, paint: _Painter) -> list[str]:
    if not plan.violations:
        return []
    heading = paint("Guardrail violations (apply refuses them without --allow-large):", "bold")
    return [heading] + [f"  {paint.symbol('!')} {_strip_controls(v.message)}" for v in plan.violations]


def _used(entry: dict) -> str:
    starting, current = entry.get("startingBalance"), entry.get("currentBalance")
    if not isinstance(starting, int) or not isinstance(current, int):
        return "-"
    used = starting - current
    percent = f" ({used * 100 // starting}%)" if starting > 0 else ""
    return f"{_thousands(used)}{percent}"


def _number(value) -> str:
    return _thousands(value) if isinstance(value, int) and not isinstance(value, bool) else "-"


def _info_rows(plan: Plan) -> list[list[str]]:
    return [
        [
            str(entry.get("address") or "-"),
            _number(entry.get("startingBalance")),
            _number(entry.get("currentBalance")),
            _used(entry),
            str(entry.get("status") or "-"),
            str(entry.get("expiresOn") or NO_EXPIRY),
        ]
        for entry in plan.info
    ]


INFO_HEADERS = ("address", "starting", "current", "used", "status", "expires")
_NUMERIC_INFO_COLUMNS = {1, 2, 3}


def _info_table(plan: Plan) -> list[str]:
    if not plan.info:
        return []
    rows = [list(INFO_HEADERS)] + [[_strip_controls(c) for c in r] for r in _info_rows(plan)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(INFO_HEADERS))]

    def line(row: list[str]) -> str:
        cells = [
            cell.rjust(widths[i]) if i in _NUMERIC_INFO_COLUMNS else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        return ("  " + "  ".join(cells)).rstrip()

    return ["Credit usage (from refresh):"] + [line(row) for row in rows]


UPCOMING_HEADING = "Next period of each grant (issued once it begins):"


def _upcoming_lines(plan: Plan) -> list[str]:
    if not plan.upcoming:
        return []
    return [UPCOMING_HEADING] + [
        _strip_controls(
            f"  {item.grant}: {item.period} starts {item.starts_on} ({item.time_zone}), "
            f"{_thousands(item.credits)} credits"
        )
        for item in plan.upcoming
    ]


def _sections(*blocks: list[str]) -> str:
    return "\n\n".join("\n".join(block) for block in blocks if block) + "\n"


# A plan with more changes than this leads with a summary per client, so that a reviewer
# sees the shape of it before the (complete) list of changes.
LARGE_PLAN = 100
# Addresses and field names made of these need no escaping (manifest keys always are).
_PLAIN_TEXT = re.compile(r"[A-Za-z0-9._/ -]*")


class _CreateBlocks:
    """``_change_block`` of plain creates, for large plans: one template per set of fields
    (the block's fixed text, laid out once), filled with each create's address and values.
    Anything unusual (characters to escape, reasons) goes the general way."""

    def __init__(self, paint: _Painter):
        self.paint = paint
        self.templates: dict[tuple, tuple[str, tuple[str, ...]] | None] = {}
        self.plain = _PLAIN_TEXT.fullmatch

    def __call__(self, change: Change) -> str:
        after = change.after
        if change.action != "create" or change.before is not None or change.reasons or not after:
            return self.general(change)
        shape = tuple(after)
        entry = self.templates.get(shape, False)
        if entry is False:
            entry = self.templates[shape] = self.template(shape)
        if entry is None or not self.plain(change.address):
            return self.general(change)
        template, order = entry
        values = []
        for field in order:
            value = after[field]
            kind = type(value)
            if kind is str:
                # What _value writes (json.dumps), without it for text that needs no escape.
                plain = value.isprintable() and '"' not in value and "\\" not in value
                value = f'"{value}"' if plain else _value(value)
            elif kind is not int:  # str.format would not write booleans or None as _value does
                return self.general(change)
            values.append(value)
        return template.format(change.address, *values)

    def general(self, change: Change) -> str:
        return "\n".join(_change_block(change, self.paint))

    def template(self, fields: tuple) -> tuple[str, tuple[str, ...]] | None:
        if not all(type(field) is str and self.plain(field) for field in fields):
            return None
        order = tuple(sorted(fields))
        width = max(map(len, order))
        plus = self.paint.symbol("+")
        lines = [self.paint("  # {0} will be created", "bold"), f'  {plus} batch "{{0}}" {{{{']
        lines += [f"      {plus} {field:<{width}} = {{{number}}}" for number, field in enumerate(order, 1)]
        lines.append("    }}")
        return "\n".join(lines), order


def _changes_by_client(plan: Plan) -> list[str]:
    """One line per client: its changes by action, and the credits it receives."""
    by_client = sorted((client, figures) for client, figures in plan.figures_by_client().items() if figures.changes)
    actions = [action for action in ACTIONS if any(figures.counts[action] for _, figures in by_client)]
    headers = ["client", *actions, "credits"]
    rows = [headers] + [
        [_strip_controls(client), *[f"{figures.counts[a]:,}" for a in actions], f"{figures.credits:,}"]
        for client, figures in by_client
    ]
    widths = [max(map(len, column)) for column in zip(*rows)]
    # Client left-aligned, numbers right-aligned, two spaces apart: one format for every row.
    line = "  " + "  ".join([f"{{:<{widths[0]}}}", *(f"{{:>{width}}}" for width in widths[1:])])
    lines = [f"Changes by client ({_thousands(len(by_client))} clients; every change is listed below):"]
    lines += [line.format(*row).rstrip() for row in rows]
    return lines


def render_text(plan: Plan, color: bool = False) -> str:
    """Terraform-style plan for a terminal; ANSI colours only when ``color``."""
    return "".join(text_chunks(plan, color))


def text_chunks(plan: Plan, color: bool = False, size: int = 1 << 20) -> Iterator[str]:
    """``render_text`` in pieces of about ``size`` characters, to be written as they come:
    the text of a 100,000-create plan (34 MB) is never held whole."""
    paint = _Painter(color)
    count = plan.change_count
    if not count:
        yield _sections(
            [paint(NO_CHANGES, "green")],
            _warning_lines(plan, paint),
            _violation_lines(plan, paint),
            _upcoming_lines(plan),
            _info_table(plan),
        )
        return
    large = count > LARGE_PLAN
    credits = _credits_line(plan) if not large else _credits_total_line(plan)
    summary = [paint(_summary_line(plan), "bold"), credits]
    head = [[*summary, "", *_changes_by_client(plan)]] if large else []
    head.append(["provisioner will perform the following actions:"])
    yield _sections(*head) + "\n"
    with paused_gc():
        pieces: list[str] = []
        length = 0
        for piece in _change_texts(plan, paint):
            pieces.append(piece)
            length += len(piece)
            if length >= size:
                yield "\n\n".join(pieces) + "\n\n"
                pieces, length = [], 0
        yield "\n\n".join(pieces)
    tail = _sections(
        _warning_lines(plan, paint),
        _violation_lines(plan, paint),
        _upcoming_lines(plan),
        summary,
        _info_table(plan),
    )
    yield "\n\n" + tail if pieces else tail


def _change_texts(plan: Plan, paint: _Painter) -> Iterator[str]:
    """The text of every change, in order: a part's whole text when it has one (and no colours are
    wanted), else one block per change."""
    blocks = _CreateBlocks(paint)
    for part in plan.parts:
        if part.text is not None and not paint.color:
            if part.text:
                yield part.text
        else:
            yield from map(blocks, part.changes)


def part_text(part: PlanPart) -> str:
    """The changes of one part as the text plan shows them without colours: what a reused part
    carries as its ``text`` (planmemo.py)."""
    return "\n\n".join(map(_plain_blocks(), part.changes))


@functools.cache
def _plain_blocks() -> _CreateBlocks:
    return _CreateBlocks(_Painter(False))  # one for all parts: its templates and quoted values are reused


def _credits_total_line(plan: Plan) -> str:
    """The credits line of a large plan: the amounts per client are in its summary."""
    total = plan.total_credits
    if not total:
        return "Credits to issue: 0."
    clients = len(plan.credits_by_client())
    return f"Credits to issue: {_thousands(total)} (to {_thousands(clients)} clients; per client under \"Changes by client\" above)."


# ---------------------------------------------------------------- markdown

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
        return _thousands(value)
    return str(value)


def _markdown_summary(plan: Plan) -> str:
    counts = _summary_counts(plan)
    phrases = ", ".join(_count_phrase(a, n) for a, n in counts.items() if n)
    total = plan.total_credits
    credits = f"{_thousands(total)} credits to issue" if total else "no credits to issue"
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
    elif before is None or (change.action == "replace" and not _changed_fields(before, after or {})):
        parts = [f"{k}: {_plain_value(v, k)}" for k, v in sorted((after or {}).items())]
    else:
        # "→", not "->": escaping ">" would leave "-\>" in the raw text of the comment.
        parts = [
            f"{k}: {_plain_value(before.get(k), k)} → {_plain_value((after or {}).get(k), k)}"
            for k in _changed_fields(before, after or {})
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
        credits = _thousands(change.credits) if change.credits else "—"
        details = "<br>".join(_detail_parts(change)) or "—"
        lines.append(
            _table_row([MARKDOWN_SYMBOLS[change.action], escape_markdown(_batch_key(change)), credits, details])
        )
    return lines


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
        lines.append(_table_row([escape_markdown(client), str(creates), str(updates), _thousands(credits)]))
    if len(rows) > 1:
        creates, updates, credits = (sum(row[i] for row in rows.values()) for i in range(3))
        lines.append(_table_row(["**Total**", f"**{creates}**", f"**{updates}**", f"**{_thousands(credits)}**"]))
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
    return ["```mermaid", "pie showData title Credits to issue per client"] + [
        f'    "{label}" : {credits}' for label, credits in slices
    ] + ["```"]


def _markdown_warnings(plan: Plan) -> list[str]:
    return [f"- Warning: {escape_markdown(w)}" for w in plan.warnings]


def _markdown_info(plan: Plan) -> list[str]:
    if not plan.info:
        return []
    headers = ["Batch", "Starting", "Current", "Used", "Status", "Expires"]
    lines = ["### Credit usage", "", _table_row(headers), _table_row(["---", "---:", "---:", "---:", "---", "---"])]
    lines += [_table_row([escape_markdown(c) for c in row]) for row in _info_rows(plan)]
    return lines


def _markdown_upcoming(plan: Plan) -> list[str]:
    if not plan.upcoming:
        return []
    lines = ["### Next period of each grant", "", _table_row(["Grant", "Period", "Starts", "Credits"]),
             _table_row(["---", "---", "---", "---:"])]
    lines += [
        _table_row([escape_markdown(item.grant), escape_markdown(item.period),
                    escape_markdown(f"{item.starts_on} ({item.time_zone})"), _thousands(item.credits)])
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
        return _sections(
            [f"**No changes.** {NO_CHANGES.removeprefix('No changes. ')}"],
            _problem_items(plan),
            _markdown_warnings(plan),
            _markdown_upcoming(plan),
            _markdown_info(plan),
        )
    return _sections(
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


# ---------------------------------------------------------------- json


def _change_to_json(change: Change) -> dict:
    return {
        "address": change.address,
        "client": change.client_key,
        "action": change.action,
        "before": copy.deepcopy(change.before),
        "after": copy.deepcopy(change.after),
        "reasons": list(change.reasons),
        "credits": change.credits,
    }


def plan_to_json(plan: Plan, meta: dict | None = None) -> dict:
    """The plan as a JSON-ready dict; the format is described in this module's docstring."""
    summary: dict = dict(_summary_counts(plan))
    summary["credits"] = plan.total_credits
    summary["credits_by_client"] = plan.credits_by_client()
    document = {
        "format_version": JSON_FORMAT_VERSION,
        "changes": [_change_to_json(change) for change in plan.changes],
        "summary": summary,
        "warnings": list(plan.warnings),
        "violations": [violation.model_dump(mode="json") for violation in plan.violations],
        "info": [copy.deepcopy(entry) for entry in plan.info],
        "upcoming": [item.model_dump(mode="json") for item in plan.upcoming],
        "has_changes": plan.has_changes,
    }
    if meta is not None:
        document["meta"] = copy.deepcopy(meta)
    return document


def render_json(plan: Plan, meta: dict | None = None) -> str:
    return json.dumps(plan_to_json(plan, meta), indent=2, sort_keys=True)
