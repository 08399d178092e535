"""What the text, Markdown and JSON plans share: the actions' order and words, the counts, the
fields a change alters, credit usage as rows of cells, and sections joined by blank lines."""

from __future__ import annotations

from provisioner.models import Plan
from provisioner.timestamps import NO_EXPIRY

# Order in which actions appear in summaries.
ACTIONS = ("create", "update", "replace", "recover", "blocked", "missing")

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
