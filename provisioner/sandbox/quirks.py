"""Quirks: ways a real server may store or list a batch otherwise than it was sent."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Quirks:
    """Ways a real server may store or list a batch otherwise than it was sent: none is an error, and
    recovery must not take such a batch for another one (nor send its create again).

    Sandbox choice: off by default; the contract does not say the vendor does any of these.
    """

    trim_names: bool = False  # names are stored trimmed, each run of whitespace inside made one space
    list_client_id_null: bool = False  # listed batches carry "clientId": null
    list_expiry_as_date: bool = False  # listed batches carry expiresOn as a bare date ("2030-03-31")

    NAMES = ("trim-names", "list-client-id-null", "list-expiry-as-date")

    @classmethod
    def named(cls, names) -> Quirks:
        """From the names of the CLI's --quirk options (see NAMES); "all" turns every one on."""
        names = set(names)
        if "all" in names:
            names = set(cls.NAMES)
        unknown = names - set(cls.NAMES)
        if unknown:
            raise ValueError(f"unknown quirk(s): {', '.join(sorted(unknown))}; known: {', '.join(cls.NAMES)}")
        return cls(**{name.replace("-", "_"): True for name in names})

    def listed(self, batch: dict) -> dict:
        """A presented batch as a listing shows it."""
        if self.list_client_id_null:
            batch = {**batch, "clientId": None}
        if self.list_expiry_as_date and batch.get("expiresOn"):
            batch = {**batch, "expiresOn": batch["expiresOn"][:10]}
        return batch
