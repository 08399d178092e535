"""Issue 5: `provisioner show [--refresh]`, the allocation at a glance for finance."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

from conftest import GLOBEX_ID, call_api, run_subprocess

from provisioner.state import read_state
from provisioner.views import render_show

FAST = ("--rate-limit", "0")  # the sandbox has no rate limit


def row(output: str, client: str, batch: str) -> str:
    """The table line of one batch, under its client's heading."""
    block = output[output.index(f"\n{client}: "):]
    return next(line for line in block.splitlines() if line.strip().startswith(batch + " "))


def test_show_prints_the_recorded_table_without_the_network(applied, cli, sandbox, monkeypatch):
    _, state = applied
    monkeypatch.delenv("TI_BASE_URL")
    monkeypatch.delenv("TI_API_KEY")
    requests_before = sandbox.stats["requests"]

    result = cli("show", "--state", state)

    assert result.exit_code == 0, result.output
    assert sandbox.stats["requests"] == requests_before
    assert result.stdout.startswith("Credit batches, as last recorded (add --refresh for live figures):")
    assert "acme: 7,500 credits issued, 0 used" in result.stdout
    assert "globex: 1,200 credits issued, 0 used" in result.stdout
    assert re.search(r"batch\s+starting\s+current\s+used\s+expires\s+status", result.stdout)
    rows = {
        (r"\s*q1\s+5,000\s+5,000\s+0 \(0%\)\s+2030-03-31T23:59:59.000Z\s+active"): ("acme", "q1"),
        (r"\s*q2\s+2,500\s+2,500\s+0 \(0%\)\s+never\s+active"): ("acme", "q2"),
        (r"\s*starter\s+1,200\s+1,200\s+0 \(0%\)\s+never\s+active"): ("globex", "starter"),
    }
    for expected, (client, batch) in rows.items():
        assert re.fullmatch(expected, row(result.stdout, client, batch)), result.stdout


def test_show_refresh_reports_usage_read_live(applied, cli, sandbox):
    manifest, state = applied
    q1 = read_state(state).resources["acme/q1"].batch_id
    call_api(sandbox, "PUT", f"/incoming/v2/clients/creditBatches/{q1}", {"currentBalance": 3750})

    recorded_only = cli("show", "--state", state).stdout
    assert "acme: 7,500 credits issued, 0 used" in recorded_only  # state alone cannot know

    live = cli("show", "--state", state, "--refresh", *FAST)
    assert live.exit_code == 0, live.output
    assert live.stdout.startswith("Credit batches, live from the API:")
    assert "acme: 7,500 credits issued, 1,250 used" in live.stdout
    assert re.fullmatch(r"\s*q1\s+5,000\s+3,750\s+1,250 \(25%\)\s+\S+\s+active", row(live.stdout, "acme", "q1"))
    assert "Refreshing: listing the batches of 2 client(s)" in live.stderr


def test_show_refresh_marks_an_expired_batch(cli, api_env, sandbox, write_manifest, tmp_path):
    """A batch that expired before provisioner knew it: made by hand, then imported."""
    old = call_api(sandbox, "POST", f"/incoming/v2/clients/{GLOBEX_ID}/creditBatches",
                   {"name": "2024 pilot", "startingBalance": 400, "expiresOn": "2024-06-30T23:59:59Z"})
    call_api(sandbox, "PUT", f"/incoming/v2/clients/creditBatches/{old['id']}", {"currentBalance": 100})
    manifest = write_manifest(f"""
        clients:
          globex:
            id: {GLOBEX_ID}
            batches:
              pilot-2024:
                name: 2024 pilot
                startingBalance: 400
                expiresOn: 2024-06-30T23:59:59Z
        """)
    state = tmp_path / "state.json"
    assert cli("import", "globex/pilot-2024", old["id"], manifest, "--state", state, *FAST).exit_code == 0

    shown = cli("show", "--state", state, "--refresh", *FAST)

    assert re.fullmatch(r"\s*pilot-2024\s+400\s+100\s+300 \(75%\)\s+2024-06-30T23:59:59.000Z\s+expired",
                        row(shown.stdout, "globex", "pilot-2024"))
    plan = json.loads(cli("plan", manifest, "--state", state, "--refresh", "--format", "json", *FAST).stdout)
    assert plan["changes"] == []  # expired is information, not a change
    assert [(entry["address"], entry["status"], entry["currentBalance"]) for entry in plan["info"]] == [
        ("globex/pilot-2024", "expired", 100)
    ]


def test_show_refresh_marks_a_batch_gone_from_the_api(applied, cli):
    manifest, state = applied
    document = json.loads(state.read_text())
    document["resources"]["acme/q2"]["batch_id"] = "00000000-0000-4000-8000-000000000000"
    state.write_text(json.dumps(document))

    shown = cli("show", "--state", state, "--refresh", *FAST)

    assert shown.exit_code == 0
    assert re.fullmatch(r"\s*q2\s+2,500\s+\?\s+\?\s+never\s+MISSING from the API", row(shown.stdout, "acme", "q2"))


def test_show_refresh_as_a_real_process(applied, api_env):
    _, state = applied
    result = run_subprocess("show", "--state", state, "--refresh", *FAST, env=api_env)
    assert result.returncode == 0, result.stderr
    assert "globex: 1,200 credits issued, 0 used" in result.stdout
    assert "Refreshed: 3 batches found (2/2 clients" in result.stderr
    assert "Refreshed" not in result.stdout  # progress stays off the table


def test_show_of_an_empty_state(cli, tmp_path):
    result = cli("show", "--state", tmp_path / "none.json")
    assert result.exit_code == 0
    assert result.stdout == "No batches recorded in this state file yet.\n"


def test_recorded_batch_whose_expiry_has_passed_since_shows_expired(applied):
    _, state = applied
    recorded = read_state(state)
    after_q1_expired = datetime(2031, 1, 1, tzinfo=timezone.utc)

    now = render_show(recorded, now=datetime(2029, 1, 1, tzinfo=timezone.utc))
    later = render_show(recorded, now=after_q1_expired)

    assert row(now, "acme", "q1").rstrip().endswith("active")
    assert row(later, "acme", "q1").rstrip().endswith("expired")
    assert row(later, "acme", "q2").rstrip().endswith("active")  # no expiry: never expires
