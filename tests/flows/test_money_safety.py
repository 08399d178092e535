"""Regression tests of the money-safety reviews: credits issued once, no id lost.

Each scenario of the review runs here against the real sandbox, most of them through a fault proxy
(tests/faultproxy.py) that can drop a create's connection while the server still commits it later,
refuse, delay an answer, or rewrite a listing. The proxy commits a dropped create just before the
first request that arrives once it is due, so a lookup made after the recovery window always sees
it and one made before never does: outcomes depend on what the applier waits for, not on races.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import ACCOUNT_ID, ACME_ID, TEST_KEY, init_state
from faultproxy import (
    Answer,
    DropThenCommit,
    FaultProxy,
    Forward,
    ListingServer,
    ProxiedRequest,
)

from provisioner.api.client import ApiError, CreditsApi
from provisioner.applying.applier import Applier, ApplyResult, request_digest
from provisioner.backends import journal
from provisioner.backends.file import FileWriter, read_state
from provisioner.backends.filelock import LockError, StateLock, force_unlock, lock_path
from provisioner.core.models import BatchSpec, Intent, Resource
from provisioner.core.timestamps import format_timestamp, parse_timestamp, utc_now_text
from provisioner.manifest.loader import load
from provisioner.planning import saved_plan
from provisioner.planning.planner import make_plan

CLIENT = "3f9d6c1e-8a2b-4c7d-9e0f-1a2b3c4d5e6f"
SETTLE = 0.05  # seconds between an ambiguous answer and the first lookup, at least
LATE_COMMIT = 0.4  # seconds after its connection dropped that the server commits a create
RECOVERY_WAIT = 1.0  # the window the applier must wait: longer than LATE_COMMIT
NEVER = 3600.0  # a dropped create that lands only when the test says so


# --- scenery ---------------------------------------------------------------------------------------


def manifest_text(*batches: tuple[str, str]) -> str:
    """batches: (key, YAML lines of the batch, indented by 8)."""
    lines = ["clients:", "  c0:", f"    id: {CLIENT}", "    batches:"]
    for key, body in batches:
        lines += [f"      {key}:", body.rstrip("\n")]
    return "\n".join(lines) + "\n"


def one_batch(key: str = "q1") -> tuple[str, str]:
    return key, "        name: Q1\n        startingBalance: 1000"


SIMILAR_PAIR = (
    ("a", "        name: Q1\n        startingBalance: 100"),
    ("b", "        name: Q1\n        startingBalance: 100\n        expiresOn: 2030-01-01T00:00:00Z"),
)


def fast_api(url: str, max_attempts: int = 6) -> CreditsApi:
    return CreditsApi(url, TEST_KEY, timeout=(1.0, 5.0), max_attempts=max_attempts, backoff_base=0.01, backoff_cap=0.05)


def apply_in_process(
    manifest: Path, state: Path, api: CreditsApi, *, recovery_wait: float, parallelism: int = 4
) -> ApplyResult:
    """What `provisioner apply --auto-approve` does, with a short settle time."""
    desired = load([manifest])
    with StateLock(state, command="apply"), FileWriter(state) as writer:
        plan = make_plan(desired, writer.state, datetime.now(timezone.utc))
        applier = Applier(api, writer, parallelism=parallelism, settle_seconds=SETTLE, recovery_wait=recovery_wait)
        return applier.apply(plan, desired)


def open_intent(
    state: Path, address: str, spec: BatchSpec, at: str | None = None, server_at: str | None = None
) -> None:
    """The journal line written before a create, left open as a killed apply leaves it."""
    attributes = spec.attributes()
    intent = Intent(
        address=address,
        client_id=spec.client_id,
        attributes=attributes,
        digest=request_digest(spec.client_id, attributes),
        at=at or utc_now_text(),
        server_at=server_at,
    )
    with StateLock(state, command="test"), FileWriter(state) as writer:
        writer.record_intent(intent)


def live_by_id(sandbox) -> dict[str, dict]:
    return {batch["id"]: batch for batch in sandbox.all_batches(CLIENT)}


def recorded_ids(state: Path) -> dict[str, str]:
    return {address: resource.batch_id for address, resource in read_state(state).resources.items()}


def assert_each_live_batch_recorded_once(sandbox, state: Path, declared: int) -> None:
    live = live_by_id(sandbox)
    recorded = recorded_ids(state)
    assert len(live) == declared, f"{len(live)} batches issued for {declared} declared"
    assert sorted(recorded.values()) == sorted(live), f"state {recorded} does not name each live batch once"
    assert not read_state(state).pending, "an intent is still open"


def posting(first: object, then: object = None):
    """A proxy rule: ``first`` for the first POST, ``then`` (default: forward) for later ones."""

    def rule(request: ProxiedRequest):
        if request.method == "POST" and request.number == 1:
            return first
        return then if (then is not None and request.method == "POST") else Forward()

    return rule


# --- r1: a create the server commits after the connection dropped ----------------------------------


def test_a_create_committed_after_its_connection_dropped_is_adopted_not_sent_again(sandbox, write_manifest, state):
    """Review P1: a lookup made before the server finished the create found nothing and sent it again."""
    manifest = write_manifest(manifest_text(one_batch()))

    with FaultProxy(sandbox.url, posting(DropThenCommit(after=LATE_COMMIT))) as proxy:
        result = apply_in_process(manifest, state, fast_api(proxy.url), recovery_wait=RECOVERY_WAIT)
        proxy.commit_late_requests()  # whatever was still in flight lands now

    assert proxy.posts() == 1, "the create was sent again"
    assert result.ok, result.failed
    assert result.created == ["c0/q1"] and result.adopted == [], "this run's create made it: created, found by listing"
    assert_each_live_batch_recorded_once(sandbox, state, declared=1)


# --- r2: the resend after an unknown outcome is refused --------------------------------------------


def test_a_refused_resend_keeps_the_intent_of_the_create_whose_outcome_is_unknown(sandbox, write_manifest, state):
    """Review P2: a 429 storm on the resend cleared the intent, though the first POST may have made a
    batch; when it landed, nothing remembered it and the next apply issued the credits again."""
    manifest = write_manifest(manifest_text(one_batch()))
    refusing = threading.Event()
    refusing.set()

    def rule(request: ProxiedRequest):
        if request.method != "POST":
            return Forward()
        if request.number == 1:
            return DropThenCommit(after=NEVER)
        return Answer(429, {"Retry-After": "0.01"}) if refusing.is_set() else Forward()

    with FaultProxy(sandbox.url, rule) as proxy:
        api = fast_api(proxy.url, max_attempts=3)
        first = apply_in_process(manifest, state, api, recovery_wait=0.2)

        assert not first.ok and "rate limited" in first.failed[0][1]
        assert set(read_state(state).pending) == {"c0/q1"}, "the refused resend erased the open intent"

        proxy.commit_late_requests()  # the first POST had made the batch after all
        refusing.clear()
        second = apply_in_process(manifest, state, api, recovery_wait=0.2)

    assert second.ok, second.failed
    assert second.adopted == ["c0/q1"] and second.created == []
    assert proxy.posts("forwarded 201") == 0
    assert_each_live_batch_recorded_once(sandbox, state, declared=1)


# --- r3: two creates a listing can confuse ----------------------------------------------------------


def test_a_failed_create_never_adopts_the_batch_of_a_similar_create_beside_it(sandbox, write_manifest, state):
    """Review P3: a={Q1,100} failed (502, nothing made) while b={Q1,100,expiresOn} was committed
    with its answer still on the way; a's lookup took b's batch, so both addresses held one id."""
    manifest = write_manifest(manifest_text(*SIMILAR_PAIR))
    b_committed = threading.Event()
    a_posts: list[ProxiedRequest] = []

    def a_has_settled() -> bool:
        return len(a_posts) > 1 or "c0/a" in read_state(state).resources

    def rule(request: ProxiedRequest):
        if request.method != "POST":
            return Forward()
        if "expiresOn" in request.body:  # b: made at once, answered only once a has settled
            return Forward(after_upstream=b_committed.set, answer_when=a_has_settled)
        a_posts.append(request)
        if len(a_posts) == 1:  # a: fails, once b exists if b is being sent beside it
            b_committed.wait(1.0)
            return Answer(502)
        return Forward()

    with FaultProxy(sandbox.url, rule) as proxy:
        result = apply_in_process(manifest, state, fast_api(proxy.url), recovery_wait=0.1, parallelism=4)

    recorded = recorded_ids(state)
    assert recorded["c0/a"] != recorded["c0/b"], "two addresses share one batch"
    live = live_by_id(sandbox)
    assert live[recorded["c0/a"]]["expiresOn"] is None, "c0/a holds b's batch, which expires"
    assert live[recorded["c0/b"]]["expiresOn"] is not None
    assert result.ok, result.failed
    assert_each_live_batch_recorded_once(sandbox, state, declared=2)


def test_recovery_leaves_the_batch_of_another_open_intent_to_that_intent(sandbox, write_manifest, state):
    """Review P3b: a killed apply left intents for a and b; only b's POST had reached the server.
    a's recovery adopted b's batch (a's fields are a subset of b's) and b was created again."""
    manifest = write_manifest(manifest_text(*SIMILAR_PAIR))
    desired = load([manifest])
    open_intent(state, "c0/a", desired.batches["c0/a"])
    open_intent(state, "c0/b", desired.batches["c0/b"])
    made_by_b = fast_api(sandbox.url).create_batch(CLIENT, desired.batches["c0/b"].attributes())["id"]

    result = apply_in_process(manifest, state, fast_api(sandbox.url), recovery_wait=0, parallelism=1)

    assert result.ok, result.failed
    assert recorded_ids(state)["c0/b"] == made_by_b, "b's own batch went to another address"
    assert live_by_id(sandbox)[recorded_ids(state)["c0/a"]]["expiresOn"] is None
    assert_each_live_batch_recorded_once(sandbox, state, declared=2)


# --- r4: settling an ambiguous recovery --------------------------------------------------------------


def test_an_ambiguous_recovery_is_settled_by_importing_one_of_its_candidates(
    cli, api_env, sandbox, write_manifest, state
):
    """Review P4: apply said 'import one of them', and import refused while the intent was open."""
    manifest = write_manifest(manifest_text(one_batch()))
    spec = load([manifest]).batches["c0/q1"]
    open_intent(state, "c0/q1", spec)
    api = fast_api(sandbox.url)
    made_by_the_crash = api.create_batch(CLIENT, spec.attributes())["id"]
    made_meanwhile = api.create_batch(CLIENT, spec.attributes())["id"]

    stuck = cli("apply", manifest, "--state", state, "--auto-approve", "--recovery-wait", "0")
    assert stuck.exit_code == 1
    assert made_by_the_crash in stuck.output and made_meanwhile in stuck.output
    assert "provisioner import c0/q1" in stuck.output

    imported = cli("import", "c0/q1", made_by_the_crash, manifest, "--state", state)
    assert imported.exit_code == 0, imported.output

    settled = cli("apply", manifest, "--state", state, "--auto-approve", "--recovery-wait", "0")
    assert settled.exit_code == 0, settled.output
    assert recorded_ids(state) == {"c0/q1": made_by_the_crash}
    assert not read_state(state).pending
    assert len(live_by_id(sandbox)) == 2, "settling the recovery created a batch"


# --- r5: state mv and open intents ---------------------------------------------------------------------


def test_state_mv_refuses_a_destination_an_interrupted_apply_was_creating(cli, api_env, sandbox, write_manifest, state):
    """Review P5: moving a batch onto an address with an open intent let the next apply create that
    address anew, overwriting the moved record: credits issued twice, the old id lost."""
    manifest = write_manifest(manifest_text(one_batch("q1")))
    assert cli("apply", manifest, "--state", state, "--auto-approve").exit_code == 0
    original = recorded_ids(state)["c0/q1"]
    renamed = write_manifest(manifest_text(one_batch("q1-2025")))  # the key renamed, then an apply killed
    open_intent(state, "c0/q1-2025", load([renamed]).batches["c0/q1-2025"])

    moved = cli("state", "mv", "c0/q1", "c0/q1-2025", "--state", state)

    assert moved.exit_code == 1
    assert "an interrupted apply was creating c0/q1-2025" in moved.output
    assert "Traceback" not in moved.output
    assert recorded_ids(state) == {"c0/q1": original}
    assert set(read_state(state).pending) == {"c0/q1-2025"}

    applied = cli("apply", renamed, "--state", state, "--auto-approve", "--recovery-wait", "0")
    assert applied.exit_code == 0, applied.output
    assert original in recorded_ids(state).values(), "the moved batch's id was lost"
    assert sorted(recorded_ids(state).values()) == sorted(live_by_id(sandbox))


def test_state_mv_refuses_a_source_whose_replacement_was_interrupted(cli, api_env, sandbox, write_manifest, state):
    """An apply --replace killed after its intent: the batch it may have made belongs to the source."""
    manifest = write_manifest(manifest_text(one_batch("q1")))
    assert cli("apply", manifest, "--state", state, "--auto-approve").exit_code == 0
    original = recorded_ids(state)["c0/q1"]
    open_intent(state, "c0/q1", load([manifest]).batches["c0/q1"])

    moved = cli("state", "mv", "c0/q1", "c0/q2", "--state", state)

    assert moved.exit_code == 1
    assert "an interrupted apply was creating c0/q1" in moved.output
    assert recorded_ids(state) == {"c0/q1": original}
    assert set(read_state(state).pending) == {"c0/q1"}


# --- r6: a symlinked state file -------------------------------------------------------------------------


@pytest.fixture
def linked_state(tmp_path) -> tuple[Path, Path]:
    """(the shared state file, a symlink to it at the usual place)."""
    shared = init_state(tmp_path / "shared" / "prod.json")
    link = tmp_path / "state" / "default.json"
    link.parent.mkdir()
    link.symlink_to(shared)
    return shared, link


def test_apply_through_a_symlinked_state_records_in_the_file_it_points_to(
    cli, api_env, sandbox, write_manifest, linked_state
):
    """Review P6: the snapshot's atomic rename replaced the symlink itself; the shared file never
    learnt the new id, and an apply through it would issue the batch again."""
    shared, link = linked_state
    first = write_manifest(manifest_text(one_batch("q1")))
    assert cli("apply", first, "--state", shared, "--auto-approve").exit_code == 0
    both = write_manifest(manifest_text(one_batch("q1"), ("q2", "        name: Q2\n        startingBalance: 50")))

    applied = cli("apply", both, "--state", link, "--auto-approve")

    assert applied.exit_code == 0, applied.output
    assert link.is_symlink(), "the symlink was replaced by a file"
    assert set(recorded_ids(shared)) == {"c0/q1", "c0/q2"}
    through_shared = cli("plan", both, "--state", shared, "--detailed-exitcode")
    assert through_shared.exit_code == 0, through_shared.output
    assert len(live_by_id(sandbox)) == 2


def test_a_lock_on_the_real_state_file_stops_an_apply_through_a_symlink(
    cli, api_env, sandbox, write_manifest, linked_state
):
    """Review P6: the lock was taken on <link>.lock, so two applies of one state ran at once."""
    shared, link = linked_state
    manifest = write_manifest(manifest_text(one_batch()))

    with StateLock(shared, command="apply"):
        applied = cli("apply", manifest, "--state", link, "--auto-approve")

    assert applied.exit_code == 1
    assert "lock" in applied.output.lower() and "Traceback" not in applied.output
    assert live_by_id(sandbox) == {}


# --- r7: a saved plan applied again after a killed apply of it ---------------------------------------------

KILLED_BEFORE_THE_FINAL_CHECKPOINT = """
import os, signal, sys
from provisioner.backends.file import FileWriter
FileWriter.close = lambda self: os.kill(os.getpid(), signal.SIGKILL)
from provisioner.cli import main
sys.argv = ["provisioner", *sys.argv[1:]]
main()
"""


def test_a_saved_replace_is_refused_after_an_apply_of_it_was_killed(
    cli, api_env, sandbox, write_manifest, state, tmp_path
):
    """Review P7: killed after the replace reached the journal but before a snapshot, the serial had
    not moved, so the same saved plan passed its checks and issued the replacement again."""
    manifest = write_manifest(manifest_text(one_batch()))
    assert cli("apply", manifest, "--state", state, "--auto-approve").exit_code == 0
    saved = tmp_path / "replace.plan.json"
    planned = cli("plan", manifest, "--state", state, "--replace", "c0/q1", "--out", saved)
    assert planned.exit_code == 0, planned.output

    killed = subprocess.run(
        [sys.executable, "-c", KILLED_BEFORE_THE_FINAL_CHECKPOINT, "apply", str(saved), "--state", str(state)],
        env={**os.environ, **api_env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    replacement = recorded_ids(state)["c0/q1"]  # from the journal the killed run left
    assert len(live_by_id(sandbox)) == 2

    again = cli("apply", saved, "--state", state)

    assert again.exit_code == 1
    assert "stale" in again.output and "Traceback" not in again.output
    assert len(live_by_id(sandbox)) == 2, "the reviewed replace issued its credits twice"
    assert recorded_ids(state) == {"c0/q1": replacement}


def test_a_saved_plan_made_before_plans_carried_a_state_digest_is_refused_as_stale(
    cli, api_env, sandbox, write_manifest, state, tmp_path
):
    """Same tool version, older plan file: without the digest it cannot be checked, so it is stale."""
    manifest = write_manifest(manifest_text(one_batch()))
    assert cli("apply", manifest, "--state", state, "--auto-approve").exit_code == 0
    saved = tmp_path / "replace.plan.json"
    assert cli("plan", manifest, "--state", state, "--replace", "c0/q1", "--out", saved).exit_code == 0
    document = json.loads(saved.read_text())
    del document["seal"], document["state_digest"]
    saved.write_text(json.dumps({**document, "seal": saved_plan._seal(document)}))

    applied = cli("apply", saved, "--state", state)

    assert applied.exit_code == 1
    assert "stale" in applied.output
    assert len(live_by_id(sandbox)) == 1


# --- listings: every batch once, or an error ----------------------------------------------------------------


def listed_batch(batch_id: str) -> dict:
    return {
        "id": batch_id,
        "name": "Q1",
        "startingBalance": 10,
        "currentBalance": 10,
        "clientId": CLIENT,
        "expiresOn": None,
        "creditAccountId": None,
        "createdAt": "2026-01-01T00:00:00.000Z",
    }


def listing(ids: str, *, total: int | None, has_more: bool) -> dict:
    return {
        "clientId": CLIENT,
        "creditAccountId": None,
        "creditBatches": [listed_batch(batch_id) for batch_id in ids],
        "pageInfo": {"perPage": 5, "cursor": None, "total": total, "hasMore": has_more},
    }


GIVE_UP = 20  # an endless walk is cut off here by the server, so a regression fails instead of hanging


def test_a_server_that_ignores_page_ends_in_an_api_error_not_an_endless_walk():
    def pages(page: int) -> dict:
        if server.requests_served > GIVE_UP:
            return listing("", total=12, has_more=False)
        return listing("abcde", total=12, has_more=True)  # page 1, whatever page was asked

    with ListingServer(pages) as server, pytest.raises(ApiError, match=CLIENT):
        fast_api(server.url).list_batches(CLIENT)

    assert server.requests_served <= 3


def test_a_batch_listed_on_two_pages_is_counted_once():
    pages = {1: listing("abcde", total=9, has_more=True), 2: listing("efghi", total=9, has_more=False)}

    with ListingServer(pages.__getitem__) as server:
        listed = fast_api(server.url).list_batches(CLIENT)

    assert sorted(batch["id"] for batch in listed) == list("abcdefghi")


def test_a_listing_short_of_its_total_is_an_api_error_naming_the_client():
    short = ListingServer(lambda page: listing("ab", total=3, has_more=False))
    with short, pytest.raises(ApiError, match=f"client {CLIENT}.* 2 of the 3"):
        fast_api(short.url).list_batches(CLIENT)


def test_a_batch_listed_twice_does_not_hide_a_missing_one():
    pages = {1: listing("abc", total=5, has_more=True), 2: listing("cd", total=5, has_more=False)}

    with ListingServer(pages.__getitem__) as server, pytest.raises(ApiError, match="4 of the 5"):
        fast_api(server.url).list_batches(CLIENT)


def test_a_short_listing_stops_recovery_instead_of_creating_again(sandbox, write_manifest, state):
    """The listing misses the batch the interrupted create made (pages shifting as they were read):
    taking it at its word would issue the credits a second time."""
    manifest = write_manifest(manifest_text(one_batch()))
    spec = load([manifest]).batches["c0/q1"]
    open_intent(state, "c0/q1", spec)
    made = fast_api(sandbox.url).create_batch(CLIENT, spec.attributes())["id"]

    def without_it(answer: dict) -> dict:
        page = answer["data"]["APICreditBatchesByClientAndCreditAccount"]
        page["creditBatches"] = [batch for batch in page["creditBatches"] if batch["id"] != made]
        return answer

    def rule(request: ProxiedRequest):
        return Forward(rewrite=without_it) if request.method == "GET" else Forward()

    with FaultProxy(sandbox.url, rule) as proxy:
        result = apply_in_process(manifest, state, fast_api(proxy.url), recovery_wait=0)

    assert not result.ok and CLIENT in result.failed[0][1]
    assert proxy.posts() == 0, "recovery created the batch again"
    assert set(read_state(state).pending) == {"c0/q1"}
    assert list(live_by_id(sandbox)) == [made]


# --- the journal under short writes -----------------------------------------------------------------------


class ShortWritingOs:
    """The os module, except that write() takes a few bytes at a time, as it may on any file."""

    def __getattr__(self, name: str):
        return getattr(os, name)

    @staticmethod
    def write(fd: int, data) -> int:
        return os.write(fd, bytes(data[:7]))


def test_journal_entries_survive_short_writes(state, monkeypatch):
    monkeypatch.setattr(journal, "os", ShortWritingOs())
    resource = Resource(batch_id="b-1", client_id=CLIENT, attributes={"name": "Q1", "startingBalance": 1000})

    with FileWriter(state, checkpoint_seconds=3600) as writer:
        writer.record("c0/q1", resource)
        seen_by_a_reader = read_state(state)  # what the next run would find after a crash here

    assert seen_by_a_reader.resources == {"c0/q1": resource}


# --- second review ---------------------------------------------------------------------


def apply_watched(
    manifest: Path,
    state: Path,
    api: CreditsApi,
    *,
    recovery_wait: float,
    stop: threading.Event | None = None,
    progress: list[str] | None = None,
    parallelism: int = 4,
) -> ApplyResult:
    """apply_in_process, with the run's stop event (Ctrl-C) and its progress lines in the test's hands."""
    desired = load([manifest])
    lines = progress if progress is not None else []
    with StateLock(state, command="apply"), FileWriter(state) as writer:
        plan = make_plan(desired, writer.state, datetime.now(timezone.utc))
        applier = Applier(
            api,
            writer,
            parallelism=parallelism,
            settle_seconds=SETTLE,
            recovery_wait=recovery_wait,
            stop=stop,
            progress=lines.append,
        )
        return applier.apply(plan, desired)


class RecordingStop(threading.Event):
    """A stop event that notes how long each wait on it was meant to last; a wait is cut short
    at ``cap`` so that a wrong one fails the test instead of hanging it."""

    def __init__(self, cap: float):
        super().__init__()
        self.cap = cap
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return super().wait(self.cap if timeout is None else min(timeout, self.cap))


def test_a_create_sent_after_a_rate_limit_pause_is_dated_when_it_left(sandbox, write_manifest, state):
    """Review2 P1: the intent was dated before a 429's Retry-After pause, so after a kill the next
    apply counted its recovery window from a moment long before the create left, looked too early,
    missed the batch the server was still making, and sent it again."""
    manifest = write_manifest(manifest_text(one_batch()))
    stop = threading.Event()
    refused_at: list[datetime] = []

    def rule(request: ProxiedRequest):
        if request.method != "POST":
            return Forward()
        if request.number == 1:
            refused_at.append(datetime.now(timezone.utc))
            return Answer(429, {"Retry-After": str(RECOVERY_WAIT)})
        if request.number == 2:
            stop.set()  # the run dies while the server is still making the batch
            return DropThenCommit(after=LATE_COMMIT)
        return Forward()

    with FaultProxy(sandbox.url, rule) as proxy:
        apply_watched(manifest, state, fast_api(proxy.url), recovery_wait=0, stop=stop)
        intent = read_state(state).pending["c0/q1"]
        resumed = apply_in_process(manifest, state, fast_api(proxy.url), recovery_wait=RECOVERY_WAIT)
        proxy.commit_late_requests()

    assert parse_timestamp(intent.at) > refused_at[0], "the intent is dated before the rate-limit pause"
    assert proxy.posts() == 2, "the create was sent again"
    assert resumed.ok and resumed.adopted == ["c0/q1"], (resumed.adopted, resumed.created, resumed.failed)
    assert_each_live_batch_recorded_once(sandbox, state, declared=1)


SERVER_FILLED_EXPIRY = "2031-01-01T00:00:00.000Z"


def fill_account_expiry(answer: dict) -> dict:
    """A listing from an instance whose credit accounts give their batches a default expiry."""
    for batch in answer["data"]["APICreditBatchesByClientAndCreditAccount"]["creditBatches"]:
        if batch.get("creditAccountId") and batch.get("expiresOn") is None:
            batch["expiresOn"] = SERVER_FILLED_EXPIRY
    return answer


def test_a_look_alike_is_not_sent_while_an_earlier_create_of_its_group_is_unresolved(sandbox, write_manifest, state):
    """Review2 P2: a's create failed ambiguously and its resend met a 429 storm (intent kept), yet b,
    which a listing can mistake for a, was sent; killed while b's answer was lost, the run left both
    open. The server filled b's expiry, so the exclusion "made exactly as another intent asked" no
    longer held b's batch back: a's recovery adopted it and b was issued a second time."""
    manifest = write_manifest(
        manifest_text(
            ("a", "        name: Q1\n        startingBalance: 100"),
            ("b", f"        name: Q1\n        startingBalance: 100\n        creditAccountId: {ACCOUNT_ID}"),
        )
    )
    first_run = threading.Event()
    first_run.set()
    stop = threading.Event()
    a_posts: list[ProxiedRequest] = []

    def rule(request: ProxiedRequest):
        if request.method == "GET":
            return Forward(rewrite=fill_account_expiry)
        if "creditAccountId" in request.body:  # b
            if first_run.is_set():
                stop.set()  # the run is killed while b's create is in progress
                return DropThenCommit(after=LATE_COMMIT)
            return Forward()
        a_posts.append(request)
        if len(a_posts) == 1:
            return Answer(502)  # nothing made, but the client cannot know that
        return Answer(429, {"Retry-After": "0.01"}) if first_run.is_set() else Forward()

    with FaultProxy(sandbox.url, rule) as proxy:
        first = apply_watched(
            manifest, state, fast_api(proxy.url, max_attempts=3), recovery_wait=0.1, stop=stop, parallelism=1
        )
        assert set(read_state(state).pending) == {"c0/a"}, "b was sent while a's create was unresolved"
        assert first.skipped == 1

        first_run.clear()
        second = apply_in_process(manifest, state, fast_api(proxy.url), recovery_wait=RECOVERY_WAIT)
        proxy.commit_late_requests()

    assert second.ok, second.failed
    live = live_by_id(sandbox)
    recorded = recorded_ids(state)
    assert live[recorded["c0/a"]]["creditAccountId"] is None, "c0/a holds b's batch"
    assert live[recorded["c0/b"]]["creditAccountId"] == ACCOUNT_ID
    assert_each_live_batch_recorded_once(sandbox, state, declared=2)


@pytest.mark.parametrize("total", [None, "12", 12.0, "many"], ids=["none", "text", "float", "word"])
def test_a_listing_whose_next_page_adds_nothing_while_more_are_announced_is_an_api_error(total):
    """Review2 P3: a server ignoring ?page without a usable integer total gave page 1 only, silently;
    recovery would have decided "never made" on it."""

    def pages(page: int) -> dict:
        if server.requests_served > GIVE_UP:
            return listing("", total=None, has_more=False)
        return listing("abcde", total=total, has_more=True)  # page 1, whatever page was asked

    with ListingServer(pages) as server, pytest.raises(ApiError, match=f"client {CLIENT}.*page 2 added nothing"):
        fast_api(server.url).list_batches(CLIENT)


@pytest.mark.parametrize("total", ["3", 3.0, "3.0"], ids=["text", "float", "decimal-text"])
def test_a_short_listing_whose_total_is_not_an_int_is_still_an_api_error(total):
    short = ListingServer(lambda page: listing("ab", total=total, has_more=False))
    with short, pytest.raises(ApiError, match=f"client {CLIENT}.* 2 of the 3"):
        fast_api(short.url).list_batches(CLIENT)


def test_a_recovery_whose_manifest_changed_creates_in_the_group_of_its_new_attributes(sandbox, write_manifest, state):
    """Review2 P4: recoveries were grouped by what their intents asked, but one that found nothing
    created what the manifest says now. Here each manifest entry was changed into what the other's
    intent had asked, so each create ran beside a recovery looking for exactly that batch: the
    second lookup adopted the first's fresh batch, and both addresses recorded one id."""
    before = write_manifest(
        manifest_text(
            ("a", "        name: Q1\n        startingBalance: 100"),
            ("b", "        name: Q1\n        startingBalance: 200"),
        ),
        name="before.yaml",
    )
    for address, spec in load([before]).batches.items():
        open_intent(state, address, spec)  # neither create reached the server before the kill
    manifest = write_manifest(
        manifest_text(
            ("a", "        name: Q1\n        startingBalance: 200"),
            ("b", "        name: Q1\n        startingBalance: 100"),
        )
    )
    created = threading.Event()
    gets: list[ProxiedRequest] = []

    def a_lookup_may_see_the_others_create() -> None:
        # The second lookup comes once the first recovery has either created (its batch is
        # listed) or let its intent go: whichever this version does.
        while not created.is_set() and len(read_state(state).pending) == 2:
            created.wait(0.01)

    def rule(request: ProxiedRequest):
        if request.method == "GET":
            gets.append(request)
            if len(gets) == 2:
                a_lookup_may_see_the_others_create()
            return Forward()
        if request.number == 1:  # made at once, answered once the other address holds a batch
            return Forward(after_upstream=created.set, answer_when=lambda: bool(recorded_ids(state)))
        return Forward()

    progress: list[str] = []
    with FaultProxy(sandbox.url, rule) as proxy:
        result = apply_watched(manifest, state, fast_api(proxy.url), recovery_wait=0, progress=progress)

    recorded = recorded_ids(state)
    assert recorded["c0/a"] != recorded["c0/b"], "two addresses record one batch"
    assert result.ok, result.failed
    live = live_by_id(sandbox)
    assert live[recorded["c0/a"]]["startingBalance"] == 200
    assert live[recorded["c0/b"]]["startingBalance"] == 100
    assert_each_live_batch_recorded_once(sandbox, state, declared=2)
    counted = [line.split("]", 1)[0] for line in progress if line.startswith("[")]
    assert counted[-1] == "[2/2", f"the progress count does not reach its total: {counted}"


def test_an_intent_dated_in_the_future_delays_recovery_by_the_window_at_most(sandbox, write_manifest, state):
    """Review2 P5a: an intent written by a run whose clock was ahead made the next apply wait for
    the difference as well, hours if need be."""
    manifest = write_manifest(manifest_text(one_batch()))
    in_six_hours = format_timestamp(datetime.now(timezone.utc) + timedelta(hours=6))
    open_intent(state, "c0/q1", load([manifest]).batches["c0/q1"], at=in_six_hours, server_at=in_six_hours)
    stop = RecordingStop(cap=2.0)
    progress: list[str] = []

    result = apply_watched(manifest, state, fast_api(sandbox.url), recovery_wait=0.2, stop=stop, progress=progress)

    assert stop.waits and max(stop.waits) <= 0.2, f"waited {stop.waits} s for a window of 0.2 s"
    assert result.ok and result.created == ["c0/q1"], result.failed
    assert_each_live_batch_recorded_once(sandbox, state, declared=1)


def test_an_interrupt_ends_the_wait_before_an_ambiguous_create_is_looked_up(sandbox, write_manifest, state):
    """Review2 P5b: the wait after an unanswered create slept through Ctrl-C (time.sleep), so the
    first interrupt did not stop the run for the whole recovery window."""
    manifest = write_manifest(manifest_text(one_batch()))
    stop = threading.Event()
    window = 3.0
    lands_after = window / 2  # within the window: only a run that waited it out would find it

    def rule(request: ProxiedRequest):
        if request.method == "POST":
            stop.set()  # Ctrl-C while the create is in progress
            return DropThenCommit(after=lands_after)
        return Forward()

    with FaultProxy(sandbox.url, rule) as proxy:
        result = apply_watched(manifest, state, fast_api(proxy.url), recovery_wait=window, stop=stop)
        proxy.commit_late_requests()

    assert [address for address, _ in result.failed] == ["c0/q1"], "the run waited out the window"
    assert "interrupted while checking" in result.failed[0][1]
    assert proxy.posts() == 1
    assert set(read_state(state).pending) == {"c0/q1"}, "the interrupted create's intent was lost"


def leave_lock_of_a_dead_run(state: Path) -> str:
    """The lock file of a run on this host that was killed; returns its lock ID."""
    finished = subprocess.Popen(["true"])
    finished.wait()
    lock_id = "0d1e2a3d-0000-4000-8000-000000000001"
    info = {
        "id": lock_id,
        "pid": finished.pid,
        "host": socket.gethostname(),
        "user": "ci",
        "command": "apply",
        "created": "2026-01-01T00:00:00+00:00",
        "process_start": None,
    }
    state.parent.mkdir(parents=True, exist_ok=True)
    lock_path(state).write_text(json.dumps(info))
    return lock_id


def test_force_unlock_never_removes_the_lock_of_a_run_that_started_meanwhile(state, monkeypatch):
    """force-unlock checked the lock, then unlinked the file: an apply that took the lock in
    between lost it, and a third run could then lock a fresh file beside it: two applies at once."""
    dead_lock = leave_lock_of_a_dead_run(state)
    started_meanwhile = StateLock(state, command="apply", warn=lambda message: None)
    real_unlink = Path.unlink

    def unlink_once_a_run_tried_to_start(self: Path, *args, **kwargs):
        if self == lock_path(state) and started_meanwhile.info is None:
            try:
                started_meanwhile.acquire()
            except LockError:
                pass  # refused while force-unlock holds the lock: it will try again
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", unlink_once_a_run_tried_to_start)
    force_unlock(state, dead_lock)
    monkeypatch.undo()

    if started_meanwhile.info is None:
        started_meanwhile.acquire()
    try:
        with pytest.raises(LockError, match="locked by another run"):
            StateLock(state, command="apply").acquire()
    finally:
        started_meanwhile.release()


def test_the_batch_of_an_intent_dated_in_the_future_is_adopted_not_created_again(sandbox, write_manifest, state):
    """Review2 P5a, its money side: a killed run whose clock was hours ahead dated its intent in the
    future; the batch its create made was listed as created before that date minus the clock
    allowance, so it was ruled out, "never happened", and the credits were issued again."""
    manifest = write_manifest(manifest_text(one_batch()))
    spec = load([manifest]).batches["c0/q1"]
    open_intent(state, "c0/q1", spec, at=format_timestamp(datetime.now(timezone.utc) + timedelta(hours=6)))
    made_by_the_killed_run = fast_api(sandbox.url).create_batch(CLIENT, spec.attributes())["id"]
    stop = RecordingStop(cap=2.0)  # a version waiting for the clocks' difference fails, not hangs

    result = apply_watched(manifest, state, fast_api(sandbox.url), recovery_wait=0.1, stop=stop)

    assert result.ok and result.adopted == ["c0/q1"], (result.created, result.failed)
    assert recorded_ids(state) == {"c0/q1": made_by_the_killed_run}
    assert_each_live_batch_recorded_once(sandbox, state, declared=1)


@pytest.mark.parametrize("total", ["inf", "1e400", "nan"])
def test_an_unreadable_total_leaves_the_walk_to_decide_instead_of_crashing(total):
    complete = ListingServer(lambda page: listing("ab", total=total, has_more=False))
    with complete:
        listed = fast_api(complete.url).list_batches(CLIENT)

    assert sorted(batch["id"] for batch in listed) == ["a", "b"]


def test_the_server_clock_is_read_from_date_headers_and_trusted_only_while_readings_agree(sandbox):
    """createdAt is written on the server's clock: an intent carries its time on that clock too."""
    from email.utils import format_datetime

    from provisioner.api.client import CreditsApi

    api = CreditsApi(sandbox.url, TEST_KEY)
    assert api.clock.now() is None, "no answer yet: the server's time is unknown"
    api.list_batches(ACME_ID)
    assert abs(api.clock.offset) < 5, "the sandbox's Date header is read"

    six_hours_behind = datetime.now(timezone.utc) - timedelta(hours=6)
    api.clock.observe({"Date": format_datetime(six_hours_behind, usegmt=True)})
    assert api.clock.now() is None and api.clock.offset is None, "readings 6 hours apart are not trusted"
    assert "disagree" in api.clock.describe()


def test_a_batch_made_before_its_intent_on_the_servers_clock_is_a_look_alike_not_adopted():
    from provisioner.applying.matching import find

    attributes = {"clientId": ACME_ID, "name": "Q1", "startingBalance": 100}
    server_at = datetime.now(timezone.utc) - timedelta(hours=6)  # the writer's clock was 6 hours ahead
    intent = Intent(
        address="acme/q1",
        client_id=ACME_ID,
        attributes=attributes,
        digest=request_digest(ACME_ID, attributes),
        at=utc_now_text(),
        server_at=format_timestamp(server_at),
    )
    made = {**attributes, "id": "b1", "createdAt": format_timestamp(server_at + timedelta(seconds=1))}
    older = {**attributes, "id": "b0", "createdAt": format_timestamp(server_at - timedelta(hours=1))}

    assert find([made], intent, claimed=set()).adoptable == made, "on the server's clock it is after the intent"
    findings = find([older], intent, claimed=set())
    assert findings.adoptable is None and findings.look_alikes == (older,), "older: never adopted, never ignored"


# --- the server's two clocks: Date ahead of the clock that stamps createdAt --------------------------------


def test_a_lost_answer_is_adopted_though_the_servers_date_is_two_minutes_ahead_of_created_at(
    sandbox, write_manifest, state
):
    """A frontend (or proxy) whose Date is 120 s ahead of the database clock that stamps
    createdAt: the batch the lost create made was judged "made before the intent", a look-alike, and
    every later apply stopped on it, the message blaming name spacing."""
    manifest = write_manifest(manifest_text(one_batch()))

    with FaultProxy(sandbox.url, posting(DropThenCommit(after=LATE_COMMIT))) as proxy:
        proxy.date_shift = 120
        result = apply_in_process(manifest, state, fast_api(proxy.url), recovery_wait=RECOVERY_WAIT)
        proxy.commit_late_requests()

    assert result.ok, result.failed
    assert result.created == ["c0/q1"] and proxy.posts() == 1
    assert_each_live_batch_recorded_once(sandbox, state, declared=1)


def test_a_look_alike_ruled_out_by_the_servers_clocks_says_so_not_name_spacing(sandbox, write_manifest, state):
    manifest = write_manifest(manifest_text(one_batch()))

    with FaultProxy(sandbox.url, posting(DropThenCommit(after=LATE_COMMIT))) as proxy:
        proxy.date_shift = 3600  # far more than two server clocks may be allowed to disagree
        result = apply_in_process(manifest, state, fast_api(proxy.url), recovery_wait=RECOVERY_WAIT)
        proxy.commit_late_requests()

    assert not result.ok and proxy.posts() == 1, "never sent again"
    message = result.failed[0][1]
    assert "before the intent by the server's clock" in message and "Date" in message, message
    assert "spacing" not in message
