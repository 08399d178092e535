"""A realistic book of credits for the report tests: used credits, a batch expiring in 4 days, one that
expired with credits unused, one that never expires. The fixture is loaded for every test by conftest.py."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest
from conftest import ACME_ID, GLOBEX_ID, call_api, init_state

from provisioner.backends.file import read_state

FAST = ("--rate-limit", "0")  # the sandbox has no rate limit
RECORDED_AT = datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc)


def in_days(days: int) -> str:
    """The last second of the day ``days`` days from today (UTC): ``days`` days left."""
    return (datetime.now(timezone.utc) + timedelta(days=days)).strftime("%Y-%m-%dT23:59:59Z")


@pytest.fixture
def finance(cli, api_env, sandbox, write_manifest, tmp_path):
    """A realistic book: used credits, a batch expiring in 4 days, one that expired unused, one never expiring.

    Returns (manifest, state); the state was refreshed, so it records the used credits.
    """
    expired = call_api(
        sandbox,
        "POST",
        f"/incoming/v2/clients/{GLOBEX_ID}/creditBatches",
        {"name": "2024 pilot", "startingBalance": 400, "expiresOn": "2024-06-30T23:59:59Z"},
    )
    call_api(sandbox, "PUT", f"/incoming/v2/clients/creditBatches/{expired['id']}", {"currentBalance": 100})
    manifest = write_manifest(f"""
        clients:
          acme:
            id: {ACME_ID}
            batches:
              soon:
                name: Acme spring workshop
                startingBalance: 1000
                expiresOn: {in_days(4)}
              later:
                name: Acme annual
                startingBalance: 2000
                expiresOn: {in_days(100)}
              forever:
                startingBalance: 500
          globex:
            id: {GLOBEX_ID}
            batches:
              pilot-2024:
                name: 2024 pilot
                startingBalance: 400
                expiresOn: 2024-06-30T23:59:59Z
        """)
    state = init_state(tmp_path / "state.json")
    assert cli("import", "globex/pilot-2024", expired["id"], manifest, "--state", state, *FAST).exit_code == 0
    applied = cli("apply", manifest, "--state", state, "--auto-approve", *FAST)
    assert applied.exit_code == 0, applied.output
    soon = read_state(state).resources["acme/soon"].batch_id
    call_api(sandbox, "PUT", f"/incoming/v2/clients/creditBatches/{soon}", {"currentBalance": 750})
    assert cli("refresh", manifest, "--state", state, *FAST).exit_code == 0
    os.utime(state, (RECORDED_AT.timestamp(), RECORDED_AT.timestamp()))
    return manifest, state
