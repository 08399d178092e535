"""Counted words, one rule for every message: "1 batch", "2,000 batches"."""

from __future__ import annotations


def plural(count: int, one: str, many: str) -> str:
    """The count (with thousands separators) and the word that agrees with it."""
    return f"{count:,} {one if count == 1 else many}"


def word_for(count: int, one: str, many: str) -> str:
    """The word alone that agrees with ``count`` ("is"/"are", "it"/"them")."""
    return one if count == 1 else many
