"""The manifest's fields: one table that both readers follow, and the schema agrees with.

Each level of a manifest (the file, ``policy``, a client, a batch, a grant) maps the names written
in the file to a ``Rule``: the attribute it fills and the kind of value it takes. The
located reader checks a kind with messages (values.READERS); the fast reader (fastreader)
checks the same kind without them. A new field is one line here, plus its kind's checks
if the kind is new; ``tests/manifest/test_manifest.py`` holds the schema (schema.py) to the same
names.
"""

from __future__ import annotations

import enum
import re
from typing import NamedTuple

MAX_NAME_LENGTH = 255
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# 2^53-1: the largest whole number that JSON tools reading plans and state (jq, JavaScript) hold exactly.
MAX_WHOLE_NUMBER = 2**53 - 1
EXAMPLE_UUID = "6a0c1d7e-2f3b-4c5d-9e8f-0a1b2c3d4e5f"
EXAMPLE_TIMESTAMP = "2026-12-31T23:59:59Z"


def shorten(text: str, limit: int = 40) -> str:
    """A value as a message quotes it: a long one cut, with "..."."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Kind(enum.Enum):
    WHOLE = "a whole number, 0 to 2^53-1, written in plain decimal"
    TEXT = 'one line of text, not blank ("" for no name), at most 255 characters'
    UUID = "a UUID"
    TIMESTAMP = "an ISO 8601 timestamp with a time zone"
    POLICY = "a mapping of policy limits"
    CLIENTS = "a mapping of client keys to clients"
    BATCHES = "a mapping of batch keys to batches"
    GRANTS = "a mapping of grant keys to grants"
    # A grant's own kinds: text with a grammar of its own (grants.py parses it), a date, a flag.
    EVERY = 'month, quarter, year, or "N days", "N weeks", "N months"'
    DURATION = '"N days", "N weeks", "N months" or "N years"'
    TIME_ZONE = "an IANA time zone name, e.g. Europe/Berlin"
    TEMPLATE = "a batch name with {period} and {grant}"
    DATE = "a date, e.g. 2026-01-01"
    BOOLEAN = "true or false"


class Rule(NamedTuple):
    attribute: str  # the python name it fills (BatchSpec, ClientSpec, Policy)
    kind: Kind
    required: bool = False
    example: str = ""  # shown when a required field is missing


TOP_RULES = {
    "policy": Rule("policy", Kind.POLICY),
    "clients": Rule("clients", Kind.CLIENTS),
}
POLICY_RULES = {
    "maxBatchCredits": Rule("max_batch_credits", Kind.WHOLE),
    "maxApplyCredits": Rule("max_apply_credits", Kind.WHOLE),
    "maxCreates": Rule("max_creates", Kind.WHOLE),
}
CLIENT_RULES = {
    "id": Rule("id", Kind.UUID, required=True, example=f"id: {EXAMPLE_UUID}"),
    "creditAccountId": Rule("credit_account_id", Kind.UUID),
    "batches": Rule("batches", Kind.BATCHES),
    "grants": Rule("grants", Kind.GRANTS),
}
BATCH_RULES = {
    "startingBalance": Rule("starting_balance", Kind.WHOLE, required=True, example="startingBalance: 5000"),
    "name": Rule("name", Kind.TEXT),
    "expiresOn": Rule("expires_on", Kind.TIMESTAMP),
    "creditAccountId": Rule("credit_account_id", Kind.UUID),
}

# A recurring grant (see grants.py): one batch per period, addressed "client/grant@period".
GRANT_RULES = {
    "every": Rule("every", Kind.EVERY, required=True, example="every: quarter"),
    "from": Rule("from_date", Kind.DATE, required=True, example="from: 2026-01-01"),
    "until": Rule("until", Kind.DATE),
    "timeZone": Rule("time_zone", Kind.TIME_ZONE),
    "startingBalance": Rule("starting_balance", Kind.WHOLE, required=True, example="startingBalance: 5000"),
    "name": Rule("name", Kind.TEMPLATE),
    "expiresAfter": Rule("expires_after", Kind.DURATION),
    "creditAccountId": Rule("credit_account_id", Kind.UUID),
    "catchUp": Rule("catch_up", Kind.BOOLEAN),
}


def aliases(rules: dict[str, Rule]) -> dict[str, str]:
    """File field name -> python attribute, in declaration order."""
    return {name: rule.attribute for name, rule in rules.items()}


TOP_FIELDS = aliases(TOP_RULES)
POLICY_FIELDS = aliases(POLICY_RULES)
CLIENT_FIELDS = aliases(CLIENT_RULES)
BATCH_FIELDS = aliases(BATCH_RULES)
GRANT_FIELDS = aliases(GRANT_RULES)
