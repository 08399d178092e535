"""The rules that decide "this batch is the one that create made". Pure: no I/O, the clock passed in.

The applier (a create whose answer was lost), the intent settler (creates a crash cut
off), ``import`` (settling such a recovery by hand), the duplicate guard and the planner
all decide with these rules, and word what they find with these texts, so they can never
disagree.

Servers store and list what they were sent in their own way: a name trimmed or
case-folded, a timestamp listed as a bare date, ``clientId`` listed as null. So a
listed field is compared the way a server may normalise it:

- equal (as an instant, a number, a UUID in any case; a bare date equal to the sent
  instant's UTC date) counts as equal;
- missing or null, or no value of its kind at all (a balance that is no number, a client id
  that is no UUID, an expiry that is no instant), counts as unknown, never as different;
- a name equal only as a server may normalise it (trimmed, each run of inner whitespace made
  one space, case-folded, in Unicode normal form NFKC) is a hint, not a match.

An *exact* match has every sent field equal or unknown, with its name and starting
balance equal, and was made after the intent (on the server's clock). A *loose*
match has the same client and starting balance but is not exact. Exact matches are
adopted; a loose one is never followed by a second create: the run stops for that
address and a person decides (``provisioner import`` or ``state forget-intent``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from provisioner.core.models import COMPARED_FIELDS, Intent, batch_key, proper_id, shown_id
from provisioner.core.timestamps import parse_timestamp

# createdAt is compared with the intent's time on the server's clock, with this much slack: the
# Date header has a 1 s resolution and the offset is measured over a network round trip.
CREATED_MARGIN = timedelta(seconds=30)
BARE_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")

EQUAL, UNKNOWN, HINT, DIFFERENT = "equal", "unknown", "hint", "different"


def compare_field(name: str, sent, listed) -> str:
    """How a listed value compares with the value that was sent."""
    if listed is None or listed == "":
        return UNKNOWN
    if name == "expiresOn":
        return _compare_instants(str(sent), listed) if isinstance(listed, str) else UNKNOWN
    if name == "startingBalance":
        # A value that is no number at all (true, an object, "n/a") says nothing about the balance.
        listed_number = _number(listed)
        if listed_number is None:
            return UNKNOWN
        return EQUAL if _number(sent) == listed_number else DIFFERENT
    if name in ("clientId", "creditAccountId"):
        # Only another UUID is another client or account; anything else is unreadable, so unknown.
        if not isinstance(listed, str) or not UUID_TEXT.fullmatch(listed.strip()):
            return UNKNOWN
        return EQUAL if str(sent).strip().lower() == listed.strip().lower() else DIFFERENT
    if name == "name":
        if sent == listed:
            return EQUAL
        if not isinstance(sent, str) or not isinstance(listed, str):
            return DIFFERENT
        return HINT if normal_name(sent) == normal_name(listed) else DIFFERENT
    return EQUAL if sent == listed else DIFFERENT


def normal_name(name: str) -> str:
    """A name as a server may store it: Unicode normal form NFKC, trimmed, each run of whitespace
    inside made one space, case-folded (NFKC again after folding, which can undo it)."""
    folded = " ".join(unicodedata.normalize("NFKC", name).split()).casefold()
    return " ".join(unicodedata.normalize("NFKC", folded).split())


def _compare_instants(sent: str, listed: str) -> str:
    try:
        sent_at = parse_timestamp(sent)
    except ValueError:
        return EQUAL if sent == listed else DIFFERENT
    if BARE_DATE.fullmatch(listed.strip()):
        # A server that keeps only the date: the sent instant's date in UTC, or the day beside it
        # (a server storing it in its own time zone).
        days = {(sent_at + timedelta(days=shift)).date().isoformat() for shift in (-1, 0, 1)}
        return EQUAL if listed.strip() in days else DIFFERENT
    try:
        return EQUAL if parse_timestamp(listed) == sent_at else DIFFERENT
    except ValueError:
        return UNKNOWN  # no instant at all: unreadable, not another expiry


def _number(value) -> Decimal | None:
    if not isinstance(value, int | float | str) or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def sent_fields_compared(batch: Mapping, attributes: Mapping) -> dict[str, str]:
    return {name: compare_field(name, value, batch.get(name)) for name, value in attributes.items()}


def differences(batch: Mapping, attributes: Mapping) -> list[str]:
    """The sent fields a server's answer does not echo as sent, for a warning."""
    return [
        f"{name} {attributes[name]!r} came back as {batch.get(name)!r}"
        for name, verdict in sent_fields_compared(batch, attributes).items()
        if verdict in (HINT, DIFFERENT)
    ]


def is_exact(batch: Mapping, attributes: Mapping) -> bool:
    verdicts = sent_fields_compared(batch, attributes)
    return (
        all(verdict in (EQUAL, UNKNOWN) for verdict in verdicts.values())
        and verdicts.get("name", EQUAL) == EQUAL
        and verdicts.get("startingBalance") == EQUAL
    )


def is_look_alike(batch: Mapping, attributes: Mapping) -> bool:
    """Same client and starting balance (either may be unknown): could be this create's, stored
    differently. An unknown balance is never taken for a different one: it stops and asks."""
    verdicts = sent_fields_compared(batch, attributes)
    return verdicts.get("clientId", UNKNOWN) != DIFFERENT and verdicts.get("startingBalance") in (EQUAL, UNKNOWN)


def made_exactly_as(batch: Mapping, attributes: Mapping) -> bool:
    """Exact, and every field that was not sent is empty: the batch of that very request."""
    return is_exact(batch, attributes) and all(
        batch.get(name) in (None, "") for name in COMPARED_FIELDS if name not in attributes
    )


def created_since(batch: Mapping, since: datetime | None) -> bool:
    """Made after ``since`` (server clock, less the margin); unknown counts as yes."""
    created = batch.get("createdAt")
    if since is None or not created:
        return True
    try:
        return parse_timestamp(str(created)) >= since - CREATED_MARGIN
    except ValueError:
        return True


def window_left(intent: Intent, window: float, server_now: datetime | None, local_now: datetime) -> float:
    """Seconds left of an interrupted create's recovery window (``window``), during which a create
    may still be made on the server, so that no listing can yet prove it never was.

    The intent's age is counted on both clocks, the server's (its time as the intent recorded it,
    against the server's time now) and the local ones (the writer's, against this machine's), and
    the smaller age counts: a wrong clock on either side can only make the wait longer, never
    shorter. Unknown on the server's side (no Date readings then or now), the whole window is left.
    """
    since = intent_since(intent)
    if since is None or server_now is None:
        return window
    ages = [(server_now - since).total_seconds()]
    try:
        ages.append((local_now - parse_timestamp(intent.at)).total_seconds())
    except ValueError:
        return window
    return min(window, max(0.0, window - min(ages)))


def intent_since(intent: Intent) -> datetime | None:
    """When the intent was written, on the server's clock; None when the writer could not tell."""
    if intent.server_at is None:
        return None
    try:
        return parse_timestamp(intent.server_at)
    except ValueError:
        return None


@dataclass(frozen=True)
class Findings:
    """What a listing says about one interrupted create."""

    exact: tuple[dict, ...] = ()  # made as asked, after the intent: its own batch, if only one
    look_alikes: tuple[dict, ...] = ()  # same client and balance, but not exactly as asked (or older)
    allowed: int = 1  # open intents that sent this very request: that many exact batches are theirs

    @property
    def nothing(self) -> bool:
        return not self.exact and not self.look_alikes

    @property
    def adoptable(self) -> dict | None:
        # A batch listed without a proper id can be recorded by no one: while one could be this
        # create's, none is taken for it.
        if 0 < len(self.exact) <= self.allowed and not self.without_id:
            return min(self.exact, key=lambda batch: (str(batch.get("createdAt")), str(batch.get("id"))))
        return None

    @property
    def candidates(self) -> tuple[dict, ...]:
        return self.exact + self.look_alikes

    @property
    def without_id(self) -> tuple[dict, ...]:
        return tuple(batch for batch in self.candidates if proper_id(batch.get("id")) is None)


def is_claimed(batch: Mapping, claimed: Container[str]) -> bool:
    """Some address records this listed batch's id (one without a proper id is nobody's)."""
    batch_id = proper_id(batch.get("id"))
    return batch_id is not None and batch_key(batch_id) in claimed


def find(
    listed: Iterable[Mapping],
    intent: Intent,
    claimed: Container[str],
    open_intents: Iterable[Intent] = (),
) -> Findings:
    """The batches of ``listed`` that ``intent``'s create may have made.

    Batches claimed by an address are never candidates; nor is a batch made exactly as
    another open intent (a different request) asked: that one is the other intent's.
    """
    others = [other for other in open_intents if other.address != intent.address]
    twins = 1 + sum(1 for other in others if other.client_id == intent.client_id and other.digest == intent.digest)
    different_requests = [other for other in others if other.digest != intent.digest]
    since = intent_since(intent)
    exact, look_alikes = [], []
    for batch in listed:
        if is_claimed(batch, claimed) or not is_look_alike(batch, intent.attributes):
            continue
        if any(made_exactly_as(batch, other.attributes) for other in different_requests
               if other.client_id == intent.client_id):
            continue
        if is_exact(batch, intent.attributes) and created_since(batch, since):
            exact.append(dict(batch))
        else:
            look_alikes.append(dict(batch))
    return Findings(exact=tuple(exact), look_alikes=tuple(look_alikes), allowed=twins)


def confusable_key(client_id: str, attributes: Mapping) -> tuple:
    """Creates that a listing could mistake for one another share this key (client and balance:
    a server may store names differently): they run one after the other, never at the same time."""
    return (client_id.lower(), str(attributes.get("startingBalance")))


def duplicates_of(
    attributes: Mapping,
    listed: Iterable[Mapping],
    claimed: Container[str],
    open_intents: Iterable[Intent] = (),
) -> list[dict]:
    """Unclaimed batches that already look like the batch a create would make: the duplicate guard.

    Same name (as a server may normalise it: see normal_name), same starting balance, and, where
    the create declares them, the same credit account and expiry. Batches an open intent made
    exactly are left to it; one listed without a proper id is claimed by no one, so it counts."""
    found = []
    for batch in listed:
        if is_claimed(batch, claimed):
            continue
        verdicts = sent_fields_compared(batch, attributes)
        if verdicts.get("startingBalance") not in (EQUAL, UNKNOWN) or verdicts.get("name") not in (EQUAL, HINT):
            continue
        if any(verdict == DIFFERENT for name, verdict in verdicts.items() if name != "name"):
            continue
        if any(made_exactly_as(batch, intent.attributes) for intent in open_intents
               if intent.client_id.lower() == str(attributes.get("clientId", "")).lower()):
            continue
        found.append(dict(batch))
    return found


def duplicate_reasons(address: str, client_key: str, found: list[dict]) -> tuple[str, str]:
    """Why the duplicate guard stops a create, and the fix: a plan shows them as two reasons, apply
    as one error."""
    importable = next((proper_id(batch.get("id")) for batch in found if proper_id(batch.get("id"))), None)
    record = (
        f"'provisioner import {address} {importable} PATHS...'" if importable is not None
        else "the API lists it without a proper id, so it cannot be imported: ask the API's owner to fix the listing"
    )
    return (
        f"client {client_key} already has {batches_phrase(len(found))} just like it that no address claims: "
        f"{describe(found)}. Creating it would issue its credits again.",
        f"If that batch is this one (made by hand, or its state entry was lost): {record}; to issue another "
        f"one on purpose: --allow-duplicate {address}",
    )


def ambiguity_message(intent: Intent, findings: Findings) -> str:
    """Why an interrupted create is not settled: batches that could be its own, which a person must choose from."""
    exact_note = (
        f"{len(findings.exact)} made exactly as asked" if findings.exact else "none made exactly as asked (the "
        "API may have changed the name's case or spacing, or listed fields as null)"
    )
    if findings.without_id:
        exact_note += (f"; {len(findings.without_id)} listed with no proper id, which provisioner cannot "
                       "record: the API's listing must give each batch its id")
    return (
        f"{batches_phrase(len(findings.candidates))} of client {intent.client_id}, claimed by no address, could be the one the "
        f"interrupted create of {intent.address} made ({exact_note}): {describe(findings.candidates)}. "
        "provisioner will not guess, and will not create it again. Check them in Thought Industries, then "
        f"record the right one: provisioner import {intent.address} BATCH_ID PATHS...; if none of them is it, "
        f"give the create up: provisioner state forget-intent {intent.address} (the next apply creates it)."
    )


def batches_phrase(count: int) -> str:
    return "a batch" if count == 1 else f"{count} batches"


def describe(batches: Iterable[Mapping]) -> str:
    """Batches named for a person: id, name, balance, when made."""
    def credits(batch: Mapping) -> str:
        balance = batch.get("startingBalance")
        return "credits not listed" if balance in (None, "") else f"{balance} credits"

    return "; ".join(
        f"{shown_id(batch.get('id'))} (name {batch.get('name')!r}, {credits(batch)}, "
        f"made {batch.get('createdAt') or 'at an unknown time'})"
        for batch in batches
    )
