"""The text plan: Terraform-style, for a terminal (ANSI colours only when asked), written in chunks
as it is made, and each part's text kept for reuse (planmemo.py)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator

from provisioner.core.bulk import paused_gc
from provisioner.core.models import FIXED_FIELDS, Change, Plan, PlanPart
from provisioner.core.timestamps import NO_EXPIRY
from provisioner.planning.plan_document import SUMMARY_ORDER, summary_counts
from provisioner.render.common import (
    HEADLINES,
    NO_CHANGES,
    changed_fields,
    count_phrase,
    info_rows,
    sections,
    thousands,
)

SYMBOLS = {
    "create": "+",
    "update": "~",
    "blocked": "!",
    "recover": "?",
    "replace": "-/+",
    "missing": "!",
}

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
        changed = set(changed_fields(before, after))
        return [
            ("~", k, _transition(before, after, k)) if k in changed else ("+", k, _value(after[k]))
            for k in sorted(set(after) | changed)
        ]
    if change.action == "blocked":
        return [
            ("!" if k in FIXED_FIELDS else "~", k, _transition(before, after, k)) for k in changed_fields(before, after)
        ]
    return [("~", k, _transition(before, after, k)) for k in changed_fields(before, after)]


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
    counts = summary_counts(plan)
    always = ("create", "update", "blocked", "unchanged")
    phrases = [count_phrase(a, n) for a, n in counts.items() if n or a in always]
    return "Plan: " + ", ".join(phrases) + "."


def _credits_line(plan: Plan) -> str:
    total = plan.total_credits
    if not total:
        return "Credits to issue: 0."
    per_client = "; ".join(f"{c} {thousands(n)}" for c, n in plan.credits_by_client().items())
    return f"Credits to issue: {thousands(total)} ({_strip_controls(per_client)})."


def _warning_lines(plan: Plan, paint: _Painter) -> list[str]:
    return [f"{paint('Warning:', 'yellow')} {_strip_controls(w)}" for w in plan.warnings]


def _violation_lines(plan: Plan, paint: _Painter) -> list[str]:
    if not plan.violations:
        return []
    heading = paint("Guardrail violations (apply refuses them without --allow-large):", "bold")
    return [heading] + [f"  {paint.symbol('!')} {_strip_controls(v.message)}" for v in plan.violations]


INFO_HEADERS = ("address", "starting", "current", "used", "status", "expires")
_NUMERIC_INFO_COLUMNS = {1, 2, 3}


def _info_table(plan: Plan) -> list[str]:
    if not plan.info:
        return []
    rows = [list(INFO_HEADERS)] + [[_strip_controls(c) for c in r] for r in info_rows(plan)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(INFO_HEADERS))]

    def line(row: list[str]) -> str:
        cells = [
            cell.rjust(widths[i]) if i in _NUMERIC_INFO_COLUMNS else cell.ljust(widths[i]) for i, cell in enumerate(row)
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
            f"{thousands(item.credits)} credits"
        )
        for item in plan.upcoming
    ]


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
        try:
            entry = self.templates[shape]
        except KeyError:
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
    actions = [action for action in SUMMARY_ORDER if any(figures.counts[action] for _, figures in by_client)]
    headers = ["client", *actions, "credits"]
    rows = [headers] + [
        [_strip_controls(client), *[f"{figures.counts[a]:,}" for a in actions], f"{figures.credits:,}"]
        for client, figures in by_client
    ]
    widths = [max(map(len, column)) for column in zip(*rows, strict=True)]
    # Client left-aligned, numbers right-aligned, two spaces apart: one format for every row.
    line = "  " + "  ".join([f"{{:<{widths[0]}}}", *(f"{{:>{width}}}" for width in widths[1:])])
    lines = [f"Changes by client ({thousands(len(by_client))} clients; every change is listed below):"]
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
        yield sections(
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
    yield sections(*head) + "\n"
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
    tail = sections(
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
    return f'Credits to issue: {thousands(total)} (to {thousands(clients)} clients; per client under "Changes by client" above).'
