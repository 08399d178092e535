"""Addresses: where a batch is, in the manifests and in the state.

    CLIENT_KEY/BATCH_KEY           a declared batch           acme/2026-q1
    CLIENT_KEY/GRANT_KEY@PERIOD    a grant's batch of a period acme/quarterly@2026-q1
    CLIENT_KEY/GRANT_KEY           the grant itself           acme/quarterly

Keys follow one grammar (KEY); every address is made and taken apart here.
"""

from __future__ import annotations

import re

KEY_PATTERN = r"[a-z0-9][a-z0-9._-]{0,63}"
KEY = re.compile(KEY_PATTERN)
KEY_RULE = "1-64 characters: lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"

# client/batch, or a grant's period: client/grant@2026-q1 (2026-01, 2026, 2026-01-15).
PERIOD_PATTERN = r"[0-9]{4}(?:-q[1-4]|-[0-9]{2}(?:-[0-9]{2})?)?"
ADDRESS = re.compile(f"{KEY_PATTERN}/{KEY_PATTERN}(?:@{PERIOD_PATTERN})?")
ADDRESS_RULE = f"CLIENT_KEY/BATCH_KEY or CLIENT_KEY/GRANT_KEY@PERIOD (e.g. acme/quarterly@2026-q1), each key {KEY_RULE}"


def client_of(address: str) -> str:
    """``acme/q1`` -> ``acme``."""
    return address.split("/", 1)[0]


def split_address(address: str) -> tuple[str, str]:
    """``acme/quarterly@2026-q1`` -> (``acme``, ``quarterly@2026-q1``)."""
    client, _, rest = address.partition("/")
    return client, rest


def period_of(address: str) -> str:
    """``acme/quarterly@2026-q1`` -> ``2026-q1``; "" for a plain batch's address."""
    return address.partition("@")[2]


def grant_address(batch_address: str) -> str | None:
    """``acme/quarterly@2026-q1`` -> ``acme/quarterly``; None for a plain batch's address."""
    owner, separator, _ = batch_address.partition("@")
    return owner if separator else None
