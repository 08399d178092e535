"""A good manifest in the plain forms (one client, a batch with a name and an expiry, a balance with a grouping
underscore), for the manifest readers' tests and the start-up test."""

from __future__ import annotations

import textwrap

ACME_ID = "6a0c1d7e-2f3b-4c5d-9e8f-0a1b2c3d4e5f"
ACCOUNT_ID = "5e4d3c2b-1a09-4f8e-9d7c-6b5a49382716"


def good_manifest(balance: str = "5000", name: str = "Acme Q1") -> str:
    return textwrap.dedent(f"""\
        clients:
          acme:
            id: {ACME_ID}
            creditAccountId: {ACCOUNT_ID}
            batches:
              q1:
                name: {name}
                startingBalance: {balance}
                expiresOn: 2030-03-31T23:59:59+02:00
              q2:
                startingBalance: 1_000
        """)
