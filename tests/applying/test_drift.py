"""Drift: the live API as a second source of truth.

Every case edits the sandbox by hand, the way an admin edits Thought Industries (a PUT through the API,
or a row deleted from its SQLite file), then checks what plan/apply/refresh make of it.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading

import pytest
from conftest import (
    ACME_ID,
    GLOBEX_ID,
    TEST_KEY,
    call_api,
    init_state,
    run_subprocess,
    two_client_manifest,
)

from provisioner.api.client import CreditsApi
from provisioner.api.pacing import RateLimiter
from provisioner.applying.refresh import observe
from provisioner.render.progress import Progress
from provisioner.sandbox import Sandbox

Q1_EXPIRES = "2030-03-31T23:59:59.000Z"
FAST = ("--rate-limit", "0")  # the sandbox has no rate limit; pacing is tested on its own below


# --- helpers: an admin at work, and what state says ------------------------------


def edit_by_hand(sandbox: Sandbox, batch_id: str, **fields) -> dict:
    return call_api(sandbox, "PUT", f"/incoming/v2/clients/creditBatches/{batch_id}", fields)


def live_batch(sandbox: Sandbox, batch_id: str) -> dict | None:
    return next((batch for batch in sandbox.all_batches() if batch["id"] == batch_id), None)


def recorded(state_path) -> dict:
    return json.loads(state_path.read_text())["resources"]


def batch_id(state_path, address: str) -> str:
    return recorded(state_path)[address]["batch_id"]


def changed_line(field: str, before: str, after: str) -> re.Pattern:
    """The plan's line for a field updated in place: `~ name = "live" -> "manifest"`."""
    return re.compile(rf"~ {field}\s+= {re.escape(before)} -> {re.escape(after)}")


# --- fixtures ----------------------------------------------------------------------


@pytest.fixture
def disk_sandbox(tmp_path, monkeypatch):
    """A sandbox whose batches live in a SQLite file, so a test can delete a row behind its back."""
    data = tmp_path / "sandbox.sqlite"
    with Sandbox(api_key=TEST_KEY, page_size=5, data_path=data) as server:
        monkeypatch.setenv("TI_BASE_URL", server.url)
        monkeypatch.setenv("TI_API_KEY", TEST_KEY)
        yield server, data


def delete_row(data_path, batch_id: str) -> None:
    with sqlite3.connect(data_path) as connection:
        deleted = connection.execute("DELETE FROM creditBatches WHERE id = ?", (batch_id,)).rowcount
    assert deleted == 1


# --- name and expiresOn changed by hand --------------------------------------------------


def test_rename_by_hand_is_planned_back_and_applied_back(applied, api_env, sandbox):
    manifest, state = applied
    q1 = batch_id(state, "acme/q1")
    edit_by_hand(sandbox, q1, name="Renamed by hand")
    creates_before = sandbox.stats["creates"]

    trusting = run_subprocess("plan", manifest, "--state", state, *FAST, env=api_env)
    assert trusting.returncode == 0, trusting.stderr
    assert "No changes" in trusting.stdout  # without --refresh, state is the only truth

    planned = run_subprocess("plan", manifest, "--state", state, "--refresh", *FAST, env=api_env)
    assert planned.returncode == 0, planned.stderr
    assert changed_line("name", '"Renamed by hand"', '"Acme Q1"').search(planned.stdout), planned.stdout
    assert "Plan: 0 to create, 1 to update, 0 blocked, 2 unchanged." in planned.stdout
    assert "Refreshing: listing the batches of 2 client(s)" in planned.stderr

    applied_back = run_subprocess(
        "apply", manifest, "--state", state, "--refresh", "--auto-approve", *FAST, env=api_env
    )
    assert applied_back.returncode == 0, applied_back.stderr
    assert live_batch(sandbox, q1)["name"] == "Acme Q1"
    assert sandbox.stats["creates"] == creates_before
    assert batch_id(state, "acme/q1") == q1

    again = run_subprocess("plan", manifest, "--state", state, "--refresh", *FAST, env=api_env)
    assert "No changes" in again.stdout


def test_expiry_changed_by_hand_is_planned_back_and_applied_back(applied, cli, sandbox):
    manifest, state = applied
    q1 = batch_id(state, "acme/q1")
    edit_by_hand(sandbox, q1, expiresOn="2031-06-30T12:00:00+02:00")

    planned = cli("plan", manifest, "--state", state, "--refresh", *FAST)
    assert planned.exit_code == 0
    assert changed_line("expiresOn", '"2031-06-30T10:00:00.000Z"', f'"{Q1_EXPIRES}"').search(planned.stdout)
    assert "1 to update" in planned.stdout

    result = cli("apply", manifest, "--state", state, "--refresh", "--auto-approve", *FAST)
    assert result.exit_code == 0, result.output
    assert live_batch(sandbox, q1)["expiresOn"] == Q1_EXPIRES
    assert "No changes" in cli("plan", manifest, "--state", state, "--refresh", *FAST).stdout


# --- a recorded batch gone from the API ------------------------------------------------


def test_batch_gone_is_drift_never_recreated_unless_replaced(cli, disk_sandbox, write_manifest, tmp_path):
    sandbox, data = disk_sandbox
    manifest = write_manifest(two_client_manifest())
    state = init_state(tmp_path / "state.json")
    assert cli("apply", manifest, "--state", state, "--auto-approve", *FAST).exit_code == 0
    gone = batch_id(state, "acme/q1")
    delete_row(data, gone)

    planned = cli("plan", manifest, "--state", state, "--refresh", *FAST)
    assert planned.exit_code == 1
    assert "acme/q1 is recorded but no longer found in the API" in planned.stdout
    assert f"Batch {gone} is recorded in state but the API no longer lists it" in planned.stdout
    assert "provisioner apply PATHS --refresh --replace acme/q1" in planned.stdout
    assert "1 missing" in planned.stdout
    as_json = json.loads(cli("plan", manifest, "--state", state, "--refresh", "--format", "json", *FAST).stdout)
    assert [(c["address"], c["action"], c["credits"]) for c in as_json["changes"]] == [("acme/q1", "missing", 0)]
    drift_check = cli("plan", manifest, "--state", state, "--refresh", "--detailed-exitcode", *FAST)
    assert drift_check.exit_code == 1  # a nightly drift check must not read "no changes", nor "can be applied"

    refused = cli("apply", manifest, "--state", state, "--refresh", "--auto-approve", *FAST)
    assert refused.exit_code == 1
    assert "cannot be applied" in refused.stderr
    assert sandbox.stats["creates"] == 3
    assert batch_id(state, "acme/q1") == gone  # the id is kept, never silently dropped

    refreshed = cli("refresh", manifest, "--state", state, *FAST)
    assert refreshed.exit_code == 0
    assert "acme/q1 is recorded but the API no longer lists it" in refreshed.stderr
    assert batch_id(state, "acme/q1") == gone

    replaced = cli("apply", manifest, "--state", state, "--refresh", "--replace", "acme/q1", "--auto-approve", *FAST)
    assert replaced.exit_code == 0, replaced.output
    assert "1 to replace" in replaced.stdout
    assert sandbox.stats["creates"] == 4  # exactly one new batch
    new_id = batch_id(state, "acme/q1")
    assert new_id != gone
    assert live_batch(sandbox, new_id)["startingBalance"] == 5000
    assert "No changes" in cli("plan", manifest, "--state", state, "--refresh", *FAST).stdout


def test_state_pointing_at_an_unknown_id_is_missing(applied, cli, sandbox):
    manifest, state = applied
    document = json.loads(state.read_text())
    document["resources"]["globex/starter"]["batch_id"] = "00000000-0000-4000-8000-000000000000"
    state.write_text(json.dumps(document))

    planned = cli("plan", manifest, "--state", state, "--refresh", "--format", "json", *FAST)
    actions = {change["address"]: change["action"] for change in json.loads(planned.stdout)["changes"]}
    assert actions == {"globex/starter": "missing"}
    assert cli("apply", manifest, "--state", state, "--refresh", "--auto-approve", *FAST).exit_code == 1
    assert sandbox.stats["creates"] == 3


# --- usage and expiry as information ------------------------------------------------------


def test_usage_and_expired_status_appear_in_plan_info(applied, cli, sandbox):
    manifest, state = applied
    q1 = batch_id(state, "acme/q1")
    edit_by_hand(sandbox, q1, currentBalance=3800, expiresOn="2024-01-01T00:00:00Z")

    text = cli("plan", manifest, "--state", state, "--refresh", *FAST).stdout
    usage = text[text.index("Credit usage (from refresh):") :]
    q1_row = next(line for line in usage.splitlines() if line.strip().startswith("acme/q1"))
    assert re.search(r"5,000\s+3,800\s+1,200 \(24%\)\s+expired\s+2024-01-01T00:00:00.000Z", q1_row), q1_row
    assert changed_line("expiresOn", '"2024-01-01T00:00:00.000Z"', f'"{Q1_EXPIRES}"').search(text)

    as_json = cli("plan", manifest, "--state", state, "--refresh", "--format", "json", *FAST).stdout
    info = json.loads(as_json)["info"]
    by_address = {entry["address"]: entry for entry in info}
    assert set(by_address) == {"acme/q1", "acme/q2", "globex/starter"}
    assert by_address["acme/q1"] == {
        "address": "acme/q1",
        "batchId": q1,
        "startingBalance": 5000,
        "currentBalance": 3800,
        "allocatedCredits": 1200,
        "status": "expired",
        "expiresOn": "2024-01-01T00:00:00.000Z",
    }
    assert by_address["acme/q2"]["status"] == "active"


# --- refresh itself: pages, parallelism, progress, state only ------------------------------


def many_batches_manifest(acme: int, globex: int) -> str:
    def client(key: str, client_id: str, count: int) -> str:
        batches = "".join(f"      {key}-{n}:\n        startingBalance: {100 * n}\n" for n in range(1, count + 1))
        return f"  {key}:\n    id: {client_id}\n    batches:\n{batches}"

    return "clients:\n" + client("acme", ACME_ID, acme) + client("globex", GLOBEX_ID, globex)


def test_refresh_reads_every_page(cli, api_env, sandbox, write_manifest, tmp_path):
    manifest = write_manifest(many_batches_manifest(acme=7, globex=6))
    state = init_state(tmp_path / "state.json")
    assert cli("apply", manifest, "--state", state, "--auto-approve", *FAST).exit_code == 0
    for resource in recorded(state).values():
        edit_by_hand(sandbox, resource["batch_id"], name="renamed by hand")
    seen = len(sandbox.request_log)

    planned = cli("plan", manifest, "--state", state, "--refresh", *FAST)
    assert planned.exit_code == 0
    assert "Plan: 0 to create, 13 to update, 0 blocked, 0 unchanged." in planned.stdout
    assert "missing" not in planned.stdout
    assert "Refreshed: 13 batches found (2/2 clients" in planned.stderr
    listings = [path for method, path, _ in sandbox.request_log[seen:] if method == "GET"]
    assert listings.count(f"/incoming/v2/clients/{ACME_ID}/creditBatches") == 2  # 7 batches, 5 a page
    # The first client in order is listed before the others, as the preflight, and not again.
    assert listings.count(f"/incoming/v2/clients/{GLOBEX_ID}/creditBatches") == 2


class MeetingPointApi:
    """The real client, except that each listing after the first (the preflight, alone) waits until
    `parties` listings run at once.

    A refresh that listed one client after another would break the barrier (and the test).
    """

    def __init__(self, api: CreditsApi, parties: int):
        self.api = api
        self.barrier = threading.Barrier(parties, timeout=10)
        self.threads: set[str] = set()
        self.listed = 0
        self._count = threading.Lock()

    def list_batches(self, client_id: str) -> list[dict]:
        with self._count:
            self.listed += 1
            first = self.listed == 1
        if not first:
            self.threads.add(threading.current_thread().name)
            self.barrier.wait()
        return self.api.list_batches(client_id)

    def __getattr__(self, name: str):
        return getattr(self.api, name)


def test_refresh_lists_clients_in_parallel_with_progress(sandbox):
    clients = [f"00000000-0000-4000-8000-00000000000{n}" for n in range(1, 5)]
    api = CreditsApi(sandbox.url, TEST_KEY)
    for n, client in enumerate(clients):
        for _ in range(n + 6):  # more than a page each
            api.create_batch(client, {"startingBalance": 10})
    meeting = MeetingPointApi(api, parties=3)
    lines: list[str] = []

    observed = observe(meeting, clients, parallelism=4, reporter=Progress(write=lines.append))

    assert len(meeting.threads) == 3 and meeting.listed == 4
    assert len(observed) == 6 + 7 + 8 + 9
    assert {batch["clientId"] for batch in observed.values()} == set(clients)
    # The sandbox announces no limit that matters: the estimate says so rather than a rate.
    assert lines[0] == (
        "Refreshing: listing the batches of 4 client(s) with no rate limit (the server announces none that matters)."
    )
    assert lines[-1].startswith("Refreshed: 30 batches found (4/4 clients in ")


class FakeClock:
    """Time that moves only when the limiter sleeps: pacing checked without waiting."""

    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_refresh_is_paced_by_the_same_limiter_as_apply(sandbox):
    clock = FakeClock()
    api = CreditsApi(sandbox.url, TEST_KEY, limiter=RateLimiter(60, clock=clock, sleep=clock.sleep))
    for _ in range(6):
        api.create_batch(ACME_ID, {"startingBalance": 10})  # six creates: 0 s, then 1 s apart
    clock.sleeps.clear()

    observed = observe(api, [ACME_ID, GLOBEX_ID], parallelism=1)  # one worker: the fake clock is not shared

    assert len(observed) == 6
    assert clock.sleeps == [1.0, 1.0, 1.0]  # three listings (acme: two pages), 60 per minute


def test_refresh_command_updates_state_only(applied, cli, sandbox):
    manifest, state = applied
    q1 = batch_id(state, "acme/q1")
    edit_by_hand(sandbox, q1, name="Renamed by hand", currentBalance=4000)
    writes_before = (sandbox.stats["creates"], sandbox.stats["updates"])
    before = state.read_text()

    result = cli("refresh", manifest, "--state", state, *FAST)

    assert result.exit_code == 0, result.output
    assert "Refreshed 3 recorded batches." in result.stdout
    assert "Refreshing: listing the batches of 2 client(s)" in result.stderr
    assert (sandbox.stats["creates"], sandbox.stats["updates"]) == writes_before
    assert live_batch(sandbox, q1)["name"] == "Renamed by hand"
    assert recorded(state)["acme/q1"]["attributes"]["name"] == "Renamed by hand"
    assert recorded(state)["acme/q1"]["remote"]["currentBalance"] == 4000
    assert (state.parent / "default.json.backup").read_text() == before

    planned = cli("plan", manifest, "--state", state, *FAST)  # no --refresh: state now carries the drift
    assert changed_line("name", '"Renamed by hand"', '"Acme Q1"').search(planned.stdout), planned.stdout
    assert "1 to update" in planned.stdout


def test_refresh_includes_clients_only_in_state(applied, cli, write_manifest):
    """A client dropped from the manifests still has recorded batches: they are listed too."""
    manifest, state = applied
    write_manifest(two_client_manifest().split("      globex:")[0])  # the same file, globex dropped

    result = cli("plan", manifest, "--state", state, "--refresh", "--format", "json", *FAST)
    info = {entry["address"] for entry in json.loads(result.stdout)["info"]}
    assert "globex/starter" in info
    assert "Refreshing: listing the batches of 2 client(s)" in result.stderr
