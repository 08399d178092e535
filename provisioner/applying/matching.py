"""The rules that decide "this batch is the one that create made". Pure: no I/O, the clock passed in.

The applier (a create whose answer was lost), the intent settler (creates a crash cut
off), ``import`` (settling such a recovery by hand), the duplicate guard and the planner
all decide with these rules, and word what they find with these texts, so they can never
disagree.

Servers store and list what they were sent in their own way: a name trimmed or
case-folded, a timestamp listed as a bare date, ``clientId`` listed as null. So a
listed field is compared the way a server may normalise it (core/comparison.py):

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

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from provisioner.core.comparison import DIFFERENT, EQUAL, HINT, UNKNOWN, compare_field, identifier, whole
from provisioner.core.models import COMPARED_FIELDS, Intent, Resource, batch_key, proper_id, shown_id
from provisioner.core.plurals import word_for
from provisioner.core.timestamps import parse_timestamp

# createdAt is compared with the intent's time on the server's clock, with this much slack: the
# Date header has a 1 s resolution and the offset is measured over a network round trip.
CREATED_MARGIN = timedelta(seconds=30)
# The server has two clocks that need not agree: the one that dates its answers (Date, read for the
# intent's server time: a frontend, a proxy) and the one that stamps createdAt (the database's host).
# A batch made this much before the intent by the Date clock may still be its own.
CLOCKS_DISAGREE = timedelta(minutes=5)
# Of an intent's recovery window, the part in which its create may still leave (its sender stalled:
# a frozen VM, a SIGSTOP, a long pause); the rest is for the server to finish it (connect and read
# timeouts, 35 s of the default 60 s window, with room to spare). A sender past it writes its intent
# again before sending: another run may already count the old one as never sent.
SEND_SHARE = 0.25
# Never less than this, though: writing an intent takes a moment (an fsync, a commit), and a window
# this short (a test's, a local sandbox's) is no promise about stalls anyway; there, the lock check
# before each send is what stops a run that was taken over.
SEND_FLOOR = 0.5
# A run that settles an interrupted create waits at least this long between its first look and the one
# that may conclude the create never happened (the applier's settle time).
SETTLE_AT_LEAST = 1.0
# How long a confirmation of the lock vouches for a send: well within SETTLE_AT_LEAST.
CONFIRMED_LOCK_AGE = 0.25


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
    """Made after ``since`` (server clock, less the margin and what the server's two clocks may
    disagree by); unknown counts as yes."""
    created = batch.get("createdAt")
    if since is None or not created:
        return True
    try:
        return parse_timestamp(str(created)) >= since - CREATED_MARGIN - CLOCKS_DISAGREE
    except ValueError:
        return True


def made_before(batch: Mapping, since: datetime | None) -> float | None:
    """Seconds ``batch`` was made before ``since`` by its createdAt; None when not before or unknown."""
    created = batch.get("createdAt")
    if since is None or not created:
        return None
    try:
        seconds = (since - parse_timestamp(str(created))).total_seconds()
    except ValueError:
        return None
    return seconds if seconds > 0 else None


def send_reserve(window: float) -> float:
    """Seconds after its intent was written (steady clock) within which a create may still be sent."""
    return max(window * SEND_SHARE, SEND_FLOOR)


def lock_still_confirmed(age: float) -> bool:
    """A lock confirmed ``age`` seconds ago (steady clock) still vouches for a create sent now: a run that
    took it over since looks at least once and waits SETTLE_AT_LEAST before it concludes anything."""
    return age <= CONFIRMED_LOCK_AGE


def may_still_send(age: float, window: float) -> bool:
    """An intent ``age`` seconds old (steady clock, from just before it was written) may still have its
    create sent: a run settling it after a takeover waits ``window`` from when it was written."""
    return age <= send_reserve(window)


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
    # Look-alikes made exactly as asked but before the intent (by createdAt against the Date clock):
    # an older batch, or the server's clocks disagreeing by more than CLOCKS_DISAGREE.
    too_early: tuple[dict, ...] = ()
    since: datetime | None = None  # the intent's time on the server's (Date) clock

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
    exact, look_alikes, too_early = [], [], []
    for batch in listed:
        if is_claimed(batch, claimed) or not is_look_alike(batch, intent.attributes):
            continue
        if any(
            made_exactly_as(batch, other.attributes)
            for other in different_requests
            if other.client_id == intent.client_id
        ):
            continue
        if is_exact(batch, intent.attributes):
            if created_since(batch, since):
                exact.append(dict(batch))
                continue
            too_early.append(dict(batch))
        look_alikes.append(dict(batch))
    return Findings(
        exact=tuple(exact), look_alikes=tuple(look_alikes), allowed=twins, too_early=tuple(too_early), since=since
    )


def confusable_key(client_id: str, attributes: Mapping) -> tuple:
    """Creates that a listing could mistake for one another share this key (client and balance:
    a server may store names differently): they run one after the other, never at the same time."""
    return (identifier(client_id), whole(attributes.get("startingBalance")))


def duplicates_of(
    attributes: Mapping,
    listed: Iterable[Mapping],
    claimed: Container[str],
    open_intents: Iterable[Intent] = (),
) -> list[dict]:
    """Unclaimed batches that already look like the batch a create would make: the duplicate guard.

    Same name (as a server may normalise it: see comparison.normal_name), same starting balance, and, where
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
        if any(
            made_exactly_as(batch, intent.attributes)
            for intent in open_intents
            if identifier(intent.client_id) == identifier(attributes.get("clientId", ""))
        ):
            continue
        found.append(dict(batch))
    return found


def unclaimed_look_alikes(
    resources: Mapping[str, Resource],
    observed: Mapping[str, Mapping],
    open_intents: Iterable[Intent] = (),
) -> dict[str, list[dict]]:
    """Recorded addresses whose client has a batch just like theirs (the duplicate guard's rule) that no
    address claims: a duplicate that slipped through (two runs at once, two workspaces, a stalled
    sender) is a finding, never silence. ``observed``: every listed batch, by batch key."""
    claimed = {batch_key(resource.batch_id) for resource in resources.values()}
    unclaimed: dict[str, list[Mapping]] = {}
    for key, batch in observed.items():
        if key not in claimed:
            unclaimed.setdefault(str(batch.get("clientId", "")).lower(), []).append(batch)
    if not unclaimed:
        return {}
    intents = list(open_intents)
    found = {}
    for address, resource in sorted(resources.items()):
        candidates = unclaimed.get(resource.client_id.lower())
        if candidates:
            attributes = {"clientId": resource.client_id, **resource.attributes}
            alike = duplicates_of(attributes, candidates, claimed, intents)
            if alike:
                found[address] = alike
    return found


def look_alike_warning(address: str, batch_id: str, found: list[dict]) -> str:
    return (
        f"{address} (batch {batch_id}): its client also has {batches_phrase(len(found))} just like it that no "
        f"address claims: {describe(found)}. A duplicate that slipped through (two runs or two workspaces at "
        "once, a run that lost its lock)? Its credits were issued twice: check it in Thought Industries. If it "
        "should be managed here, declare it under a new key and 'provisioner import' it."
    )


def duplicate_reasons(address: str, client_key: str, found: list[dict]) -> tuple[str, str]:
    """Why the duplicate guard stops a create, and the fix: a plan shows them as two reasons, apply
    as one error."""
    importable = next((proper_id(batch.get("id")) for batch in found if proper_id(batch.get("id"))), None)
    record = (
        f"'provisioner import {address} {importable} PATHS...'"
        if importable is not None
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
    if findings.exact:
        exact_note = f"{len(findings.exact)} made exactly as asked"
    elif findings.too_early:
        before = made_before(findings.too_early[0], findings.since) or 0.0
        exact_note = (
            f"made exactly as asked, but {before:.0f} s before the intent by the server's clock: an older batch, "
            "or the server stamps createdAt with a clock that disagrees with the one its Date header "
            f"reads (by more than the {CLOCKS_DISAGREE.total_seconds():.0f} s allowed; check the server's "
            "clocks, or a proxy rewriting Date)"
        )
    else:
        exact_note = (
            "none made exactly as asked (the API may have changed the name's case or spacing, or listed fields as null)"
        )
    if findings.without_id:
        exact_note += (
            f"; {len(findings.without_id)} listed with no proper id, which provisioner cannot "
            "record: the API's listing must give each batch its id"
        )
    return (
        f"{batches_phrase(len(findings.candidates))} of client {intent.client_id}, claimed by no address, could be the one the "
        f"interrupted create of {intent.address} made ({exact_note}): {describe(findings.candidates)}. "
        "provisioner will not guess, and will not create it again. Check them in Thought Industries, then "
        f"record the right one: provisioner import {intent.address} BATCH_ID PATHS...; if none of them is it, "
        f"give the create up: provisioner state forget-intent {intent.address} (the next apply creates it)."
    )


def batches_phrase(count: int) -> str:
    return word_for(count, "a batch", f"{count:,} batches")


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
