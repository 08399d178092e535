"""What the text, Markdown and JSON plans share: the actions' order and words, the counts, the
fields a change alters, credit usage as rows of cells, and sections joined by blank lines."""

from __future__ import annotations

from provisioner.core.models import Plan
from provisioner.core.timestamps import NO_EXPIRY

HEADLINES = {
    "create": "will be created",
    "update": "will be updated in place",
    "blocked": "cannot be applied",
    "recover": "was interrupted while being created: apply will adopt it if found, else create it",
    "replace": "will be replaced by a new batch",
    "missing": "is recorded but no longer found in the API",
}

NO_CHANGES = "No changes. Your credit batches match the manifests."


def _thousands(n: int) -> str:
    return f"{n:,}"


def _count_phrase(action: str, n: int) -> str:
    if action in ("blocked", "missing", "unchanged"):
        return f"{n} {action}"
    return f"{n} to {action}"


def _changed_fields(before: dict, after: dict) -> list[str]:
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


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


def _sections(*blocks: list[str]) -> str:
    return "\n\n".join("\n".join(block) for block in blocks if block) + "\n"
