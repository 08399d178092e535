"""The plan as a versioned JSON document: for tools (`plan --format json`, and a saved plan's ``plan``).

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
import json

from provisioner.core.models import Change, Plan

# Order in which actions appear in summaries.
SUMMARY_ORDER = ("create", "update", "replace", "recover", "blocked", "missing")


def summary_counts(plan: Plan) -> dict[str, int]:
    """How many changes of each action, in summary order, and how many declared batches already match."""
    by_action = plan.figures.counts
    counts = {action: by_action[action] for action in SUMMARY_ORDER}
    counts["unchanged"] = plan.unchanged
    return counts


JSON_FORMAT_VERSION = "1.2"


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
    summary: dict = dict(summary_counts(plan))
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
