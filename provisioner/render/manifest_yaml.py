"""A client's batches, as the API lists them, written as a manifest file. Pure: no I/O, the clock passed in.

``import --generate-config-out`` starts a project from an instance that already has batches: each
listed batch becomes a declaration whose values are exactly what the server holds, in the forms the
manifest loader produces (so that the plan finds nothing to change), under a key derived from its
name. A batch the manifest rules cannot hold as it is (a name with a line break, say) is not written:
``declaration`` says why, and the caller names it.
"""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from provisioner.core.addresses import KEY
from provisioner.core.timestamps import format_timestamp, parse_timestamp
from provisioner.manifest.fields import CONTROL_CHARACTER, MAX_NAME_LENGTH, MAX_WHOLE_NUMBER
from provisioner.manifest.yaml11 import IMPLICIT

SCHEMA_COMMENT = "# yaml-language-server: $schema=manifest.schema.json"
KEY_LENGTH = 64
EMPTY_NAME_KEY = "batch"  # the key of a batch whose name has no letter or digit to keep
BARE_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NOT_KEY = re.compile(r"[^a-z0-9._-]+")
_DASHES = re.compile(r"-{2,}")
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SEPARATORS = "._-"
# What YAML 1.1 reads as something other than text when written plain: such a key is quoted.
_NOT_TEXT = re.compile("|".join(IMPLICIT.values()))


@dataclass(frozen=True)
class Declaration:
    """One listed batch, as the manifest declares it (its key is chosen later, among its client's)."""

    batch_id: str
    name: str
    starting_balance: int
    expires_on: str | None  # UTC with milliseconds, as the loader writes it
    credit_account_id: str | None  # lower-case, as the loader writes a UUID
    created_at: str  # as listed: the order keys are handed out in
    notes: tuple[str, ...] = ()  # why this batch is worth a second look (expired, exhausted)

    def attributes(self, client_id: str) -> dict:
        """What the loaded manifest asks of this batch (``BatchSpec.attributes``): what state records."""
        body: dict = {"clientId": client_id, "name": self.name, "startingBalance": self.starting_balance}
        if self.expires_on is not None:
            body["expiresOn"] = self.expires_on
        if self.credit_account_id is not None:
            body["creditAccountId"] = self.credit_account_id
        return body


def canonical_uuid(text: object) -> str | None:
    """A UUID as the manifest loader writes it (lower case, hyphens); None when it is not one."""
    if not isinstance(text, str):
        return None
    if _CANONICAL_UUID.fullmatch(text):
        return text
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def declaration(batch: Mapping, client_id: str, now: datetime) -> Declaration | str:
    """The declaration of a listed batch of client ``client_id`` (canonical), or why it cannot be written."""
    name = batch.get("name", "")
    if name is None:
        name = ""
    problem = name_problem(name)
    if problem:
        return f"its name {json.dumps(name)[:80]} {problem}"
    balance = batch.get("startingBalance")
    if isinstance(balance, float) and balance.is_integer():
        balance = int(balance)
    if type(balance) is not int or not 0 <= balance <= MAX_WHOLE_NUMBER:
        return f"its startingBalance {balance!r} is not a whole number from 0 to 2^53-1"
    listed_client = batch.get("clientId")
    if listed_client not in (None, "") and canonical_uuid(listed_client) != client_id:
        return f"it is listed with clientId {listed_client!r}, not this client's"
    account = batch.get("creditAccountId")
    if account in (None, ""):
        account = None
    else:
        account = canonical_uuid(account)
        if account is None:
            return f"its creditAccountId {batch.get('creditAccountId')!r} is not a UUID"
    notes: list[str] = []
    expires_on, expired = _expiry(batch.get("expiresOn"), now)
    if expires_on is _UNREADABLE:
        return f"its expiresOn {batch.get('expiresOn')!r} is not an ISO 8601 timestamp"
    if expires_on is not None and BARE_DATE.fullmatch(str(batch.get("expiresOn")).strip()):
        notes.append(f"listed with the date {batch['expiresOn']} only: the time here is midnight UTC that day")
    if expired or batch.get("status") == "expired":
        notes.append(f"expired{f' at {expires_on}' if expires_on else ''}")
    current = batch.get("currentBalance")
    if isinstance(current, (int, float)) and not isinstance(current, bool) and current <= 0:
        notes.append(f"exhausted: 0 of {balance:,} credits left")
    created = batch.get("createdAt")
    return Declaration(
        batch_id=str(batch["id"]),
        name=name,
        starting_balance=balance,
        expires_on=expires_on,
        credit_account_id=account,
        created_at=created if isinstance(created, str) else "",
        notes=tuple(notes),
    )


_UNREADABLE = "unreadable"


def _expiry(listed: object, now: datetime) -> tuple[str | None, bool]:
    """(the expiry in the canonical form, or None, or _UNREADABLE; whether it has passed at ``now``)."""
    if listed in (None, ""):
        return None, False
    text = str(listed).strip()
    try:
        moment = parse_timestamp(f"{text}T00:00:00Z" if BARE_DATE.fullmatch(text) else text)
        return format_timestamp(moment), moment <= now
    except (ValueError, OverflowError):
        return _UNREADABLE, False


def name_problem(name: object) -> str | None:
    """Why the manifest rules (the loader's, for ``name``) cannot hold this name as it is; None if they can."""
    if not isinstance(name, str):
        return "is not text"
    if name == "":
        return None
    if not name.strip():
        return "is blank"
    if "\n" in name or "\r" in name:
        return "has a line break"
    if name != name.strip():
        return "starts or ends with spaces"
    if CONTROL_CHARACTER.search(name):
        return "has a control character"
    if len(name) > MAX_NAME_LENGTH:
        return f"is {len(name)} characters long (at most {MAX_NAME_LENGTH})"
    return None


# --- keys ---------------------------------------------------------------------------------------


def key_from_name(name: str) -> str:
    """A batch key from a batch name: lower case, accents dropped, every run of other characters one
    '-', trimmed to 64 characters; "batch" when nothing is left."""
    text = unicodedata.normalize("NFKD", name)
    text = "".join(character for character in text if not unicodedata.combining(character)).lower()
    text = _DASHES.sub("-", _NOT_KEY.sub("-", text)).strip(_SEPARATORS)
    text = text[:KEY_LENGTH].rstrip(_SEPARATORS)
    return text if KEY.fullmatch(text) else EMPTY_NAME_KEY


def unique_keys(names: Sequence[str], taken: Iterable[str] = ()) -> list[str]:
    """One key per name, in the names' order: a name's own key when it is free, else that key with
    "-2", "-3"... The first batch of a name keeps the plain key; a plain key wins over a numbered
    one; ``taken`` keys (recorded already) are never given."""
    wanted = [key_from_name(name) for name in names]
    used = set(taken)
    keys: list[str | None] = []
    for key in wanted:
        if key in used:
            keys.append(None)
        else:
            used.add(key)
            keys.append(key)
    for position, given in enumerate(keys):
        if given is not None:
            continue
        base, number = wanted[position], 2
        while True:
            suffix = f"-{number}"
            candidate = base[: KEY_LENGTH - len(suffix)].rstrip(_SEPARATORS) + suffix
            if candidate not in used:
                break
            number += 1
        used.add(candidate)
        keys[position] = candidate
    return [key for key in keys if key is not None]


def in_key_order(declarations: Iterable[Declaration]) -> list[Declaration]:
    """The order keys are handed out in: oldest first (createdAt, then id), whatever the listing's order."""
    return sorted(declarations, key=lambda item: (item.created_at, item.batch_id.lower()))


# --- the text -----------------------------------------------------------------------------------


def shared_account(declarations: Sequence[Declaration]) -> str | None:
    """The credit account every batch links to, when they all link to the same one."""
    accounts = {item.credit_account_id for item in declarations}
    return accounts.pop() if len(accounts) == 1 and declarations and None not in accounts else None


def render_manifest(client_key: str, client_id: str, batches: Sequence[tuple[str, Declaration]], listed_at: str) -> str:
    """The manifest of one client: ``batches`` as (key, declaration), written in key order."""
    account = shared_account([item for _, item in batches])
    lines = [
        SCHEMA_COMMENT,
        f"# Client {client_key}: its batches as the API listed them at {listed_at} (provisioner import",
        "# --generate-config-out). An edited value changes the batch at the next apply; a renamed key needs",
        "# 'provisioner state mv' too.",
        "clients:",
        f"  {yaml_key(client_key)}:",
        f"    id: {client_id}",
    ]
    if account is not None:
        lines.append(f"    creditAccountId: {account}")
    if not batches:
        return "\n".join(lines) + "\n"
    lines.append("    batches:")
    for key, item in sorted(batches, key=lambda pair: pair[0]):
        note = f"  # {'; '.join(item.notes)}: kept as the client's history" if item.notes else ""
        lines.append(f"      {yaml_key(key)}:{note}")
        lines.append(f"        name: {double_quoted(item.name)}")
        lines.append(f"        startingBalance: {item.starting_balance}")
        if item.expires_on is not None:
            lines.append(f"        expiresOn: {item.expires_on}")
        if item.credit_account_id is not None and account is None:
            lines.append(f"        creditAccountId: {item.credit_account_id}")
    return "\n".join(lines) + "\n"


def yaml_key(key: str) -> str:
    """A key as written: plain, unless YAML 1.1 would read it as a number, a date or a boolean."""
    return f'"{key}"' if _NOT_TEXT.fullmatch(key) else key


def double_quoted(text: str) -> str:
    """A YAML double-quoted scalar that reads back as exactly ``text`` (every character YAML would
    fold, drop or refuse written as an escape)."""
    out = ['"']
    for character in text:
        code = ord(character)
        if character in '"\\':
            out.append("\\" + character)
        elif 0x20 <= code <= 0x7E or (0xA0 <= code <= 0xFFFD and _printable(code)) or code >= 0x10000:
            out.append(character)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _printable(code: int) -> bool:
    """Written as itself in YAML: not a line or paragraph separator, a surrogate or a byte order mark."""
    return code not in (0x2028, 0x2029, 0xFEFF) and not 0xD800 <= code <= 0xDFFF
