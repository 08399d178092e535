"""Regression tests of the second money-safety review: five ways a credit batch was issued twice (or its
id lost), each replayed through the real CLI against the sandbox, with a real ``kill -9`` where the story
has a crash in it.

The sandbox holds every create for a few seconds before it commits it, as a busy server still working on
it (so a run can be killed while the create is in progress, and a recovery can look too early); a fault
proxy in front of it (tests/faultproxy.py) plays the server habits each story needs: a client unknown to
a replica for a moment, a page past the end answered 404, a Date clock that moved between two runs, a
balance listed as null. Windows and delays are scaled down from the review's (60 s, 15-20 s) to seconds;
what each story needs is only their order: the create commits inside the window.
"""

from __future__ import annotations

import sqlite3
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from apply_processes import (
    assert_issued_once_and_recorded,
    cli_env,
    kill_after_its_create_left,
    posts,
    start_apply,
)
from conftest import ACME_ID, GLOBEX_ID, TEST_KEY, call_api, run_subprocess, wait_until
from faultproxy import Answer, FaultProxy, Forward, ProxiedRequest

from provisioner.backends.file import read_state
from provisioner.core.timestamps import format_timestamp
from provisioner.sandbox import Faults, Sandbox

# --- scenery ------------------------------------------------------------------------------------------------


@pytest.fixture
def serve():
    """serve(page_size=..., data_path=...) -> a started sandbox; all stopped at the end."""
    with ExitStack() as sandboxes:
        yield lambda **options: sandboxes.enter_context(Sandbox(api_key=TEST_KEY, **{"page_size": 5, **options}))


@pytest.fixture
def proxy_to():
    """proxy_to(sandbox, rule) -> a started FaultProxy in front of it; all stopped at the end."""
    with ExitStack() as proxies:
        yield lambda sandbox, *rule: proxies.enter_context(FaultProxy(sandbox.url, *rule))


class HeldCreates:
    """From now on the sandbox holds every create ``seconds`` before it commits it."""

    def __init__(self, sandbox: Sandbox, seconds: float):
        self.sandbox = sandbox
        self.committed_before = sandbox.stats["creates"]
        sandbox.set_faults(Faults(commit_delay=seconds))

    def in_progress(self) -> int:
        stats = self.sandbox.stats
        return stats["delayed_commits"] - (stats["creates"] - self.committed_before)

    def wait_until_committed(self) -> None:
        wait_until(lambda: self.in_progress() == 0, "every create the server received is committed")


def manifest_of(write_manifest, *batches: str, globex: bool = False) -> Path:
    """acme with the batches named (name Q1 with balance 100, Q2 with 200, ...), and globex's starter."""
    lines = ["clients:", "  acme:", f"    id: {ACME_ID}", "    batches:"]
    for number, key in enumerate(batches, start=1):
        lines += [f"      {key}:", f"        name: {key.upper()}", f"        startingBalance: {number * 100}"]
    if globex:
        lines += ["  globex:", f"    id: {GLOBEX_ID}", "    batches:", "      starter:", "        startingBalance: 5"]
    return write_manifest("\n".join(lines) + "\n")


def cli(*args, url: str):
    """The CLI as a real process, through ``url``."""
    return run_subprocess(*args, env=cli_env(url), timeout=120)


def killed_while_its_create_is_in_progress(manifest: Path, state: Path, held: HeldCreates, url: str) -> None:
    """An apply as a real process, killed (SIGKILL) while the server holds its create: the create
    reached the server, which commits it some seconds later."""
    process = start_apply(manifest, state, url)
    try:
        wait_until(lambda: held.in_progress() > 0 or process.poll() is not None, "the server holds the create")
        kill_after_its_create_left(process, state, after=0)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert held.in_progress() == 1, "the create is still in progress"


def named(sandbox: Sandbox, name: str) -> list[str]:
    return [batch["id"] for batch in sandbox.all_batches(ACME_ID) if batch["name"] == name]


# --- A2. a listing answered 404 for a moment ----------------------------------------------------------------


def test_a_404_while_the_interrupted_create_is_in_progress_closes_nothing(serve, proxy_to, write_manifest, state):
    """The killed run's create is still being saved; the next apply's first two listings of acme answer 404
    (a replica that does not know the client yet, a gateway mid-deploy), then 200. Recovery used to take the
    404 for "no such client", close the intent, and create the batch again with the duplicate guard on (the
    first create was not listed yet). A 404 before the window has passed proves nothing: it waits, looks
    again, and adopts the batch."""
    sandbox = serve()
    proxy = proxy_to(sandbox)
    assert (
        cli(
            "apply", manifest_of(write_manifest, globex=True), "--state", state, "--auto-approve", url=proxy.url
        ).returncode
        == 0
    )  # globex answers: the API's address is proven
    held = HeldCreates(sandbox, seconds=3.0)
    manifest = manifest_of(write_manifest, "q1", globex=True)
    killed_while_its_create_is_in_progress(manifest, state, held, proxy.url)
    lagging = {"listings": 0}

    def replica_lags(request: ProxiedRequest):
        if request.method == "GET" and ACME_ID in request.path and lagging["listings"] < 2:
            lagging["listings"] += 1
            return Answer(404, body={"error": "not_found", "message": "client not found"})
        return Forward()

    proxy.rule = replica_lags

    recovery = cli("apply", manifest, "--state", state, "--auto-approve", "--recovery-wait", 5, url=proxy.url)
    held.wait_until_committed()

    assert lagging["listings"] == 2, "the scenery: two listings of acme answered 404"
    assert posts(sandbox) == 2, f"acme/q1 was created again: {sandbox.all_batches(ACME_ID)}\n{recovery.stderr}"
    assert recovery.returncode == 0, recovery.stderr
    assert "found and recorded (made by an interrupted apply)" in recovery.stderr, recovery.stderr
    assert "does not exist" not in recovery.stderr
    assert_issued_once_and_recorded(sandbox, state, {"acme/q1": ACME_ID, "globex/starter": GLOBEX_ID})


def test_a_404_that_outlasts_the_window_stops_that_client_and_closes_nothing(serve, proxy_to, write_manifest, state):
    """The killed run's create is still being saved; on the next apply every listing of acme answers 404 (a
    gateway that lost the client for a while), past the whole window. Recovery used to take that for "no such
    client" (globex had proven the API's address), close the intent, and, with --no-duplicate-check, send
    the create again: two batches, one id lost (with the guard, the next apply wedged on the unclaimed one).
    A 404 alone closes nothing: acme's work stops with a message naming the way out, globex's goes on, and
    once acme answers again its batch is adopted."""
    sandbox = serve()
    proxy = proxy_to(sandbox)
    starter = manifest_of(write_manifest, globex=True)
    assert cli("apply", starter, "--state", state, "--auto-approve", url=proxy.url).returncode == 0
    held = HeldCreates(sandbox, seconds=2.0)
    manifest = manifest_of(write_manifest, "q1", globex=True)
    killed_while_its_create_is_in_progress(manifest, state, held, proxy.url)
    manifest.write_text(manifest.read_text() + "      bonus:\n        startingBalance: 7\n")

    def acme_unknown_for_a_while(request: ProxiedRequest):
        if request.method == "GET" and ACME_ID in request.path:
            return Answer(404, body={"error": "not_found", "message": "client not found"})
        return Forward()

    proxy.rule = acme_unknown_for_a_while
    stopped = cli(
        "apply",
        manifest,
        "--state",
        state,
        "--auto-approve",
        "--recovery-wait",
        3,
        "--no-duplicate-check",
        url=proxy.url,
    )
    held.wait_until_committed()
    recorded = read_state(state)

    assert len(named(sandbox, "Q1")) == 1, f"acme/q1 was issued twice:\n{stopped.stderr}"
    assert "acme/q1" in recorded.pending, f"the intent was closed on a 404:\n{stopped.stderr}"
    assert stopped.returncode == 1, stopped.stderr
    assert f"the API answers 404 for client {ACME_ID}" in stopped.stderr, stopped.stderr
    assert "provisioner state forget-intent acme/q1" in stopped.stderr
    assert "does not exist" not in stopped.stderr and "Traceback" not in stopped.stderr
    assert "globex/bonus" in recorded.resources, f"another client's work stopped too:\n{stopped.stderr}"

    proxy.rule = lambda request: Forward()
    again = cli("apply", manifest, "--state", state, "--auto-approve", "--recovery-wait", 3, url=proxy.url)

    assert again.returncode == 0, again.stderr
    assert "found and recorded (made by an interrupted apply)" in again.stderr, again.stderr
    assert_issued_once_and_recorded(
        sandbox, state, {"acme/q1": ACME_ID, "globex/starter": GLOBEX_ID, "globex/bonus": GLOBEX_ID}
    )


# --- A. a 404 on a later page -------------------------------------------------------------------------------


def pages_end_in_a_404(request: ProxiedRequest) -> Forward:
    """A server's paging habit the contract does not rule out: a full page says hasMore, and the page
    past the end answers 404."""
    if request.method != "GET":
        return Forward()
    page = int(parse_qs(urlsplit(request.path).query).get("page", ["1"])[0])

    def habit(answer: dict) -> dict | Answer:
        listing = answer["data"]["APICreditBatchesByClientAndCreditAccount"]
        if page > 1 and not listing["creditBatches"]:
            return Answer(404, body={"error": "not_found", "message": "page not found"})
        if len(listing["creditBatches"]) == listing["pageInfo"]["perPage"]:
            listing["pageInfo"]["hasMore"] = True
        return answer

    return Forward(rewrite=habit)


@pytest.mark.parametrize("guard", [(), ("--no-duplicate-check",)], ids=["guarded", "no-duplicate-check"])
def test_a_404_on_a_later_page_is_not_taken_for_no_such_client(serve, proxy_to, write_manifest, state, guard):
    """Pages of two; q2's create is in progress when its apply is killed, and then commits: acme has two
    batches, a full page, and page 2 answers 404. The next apply used to take that for "client does not
    exist" and close q2's intent: its id lost (guarded), or the batch issued twice (--no-duplicate-check).
    It must stop with the intent open and send nothing; once the listing pages normally, it adopts."""
    sandbox = serve(page_size=2)
    proxy = proxy_to(sandbox, pages_end_in_a_404)
    assert (
        cli("apply", manifest_of(write_manifest, "q1"), "--state", state, "--auto-approve", url=proxy.url).returncode
        == 0
    )
    held = HeldCreates(sandbox, seconds=1.0)
    manifest = manifest_of(write_manifest, "q1", "q2")
    killed_while_its_create_is_in_progress(manifest, state, held, proxy.url)
    held.wait_until_committed()
    assert len(sandbox.all_batches(ACME_ID)) == 2, "the scenery: a full page, and a page past it"

    stopped = cli("apply", manifest, "--state", state, "--auto-approve", "--recovery-wait", 1, *guard, url=proxy.url)
    held.wait_until_committed()
    recorded = read_state(state)

    assert any("page=2" in path for method, path, _ in proxy.log if method == "GET"), "the scenery: page 2 asked"
    assert len(named(sandbox, "Q2")) == 1, f"q2 was issued twice:\n{stopped.stderr}"
    assert "acme/q2" in recorded.pending, f"q2's intent closed: the batch it made is nobody's:\n{stopped.stderr}"
    assert stopped.returncode == 1, stopped.stdout + stopped.stderr
    assert "page 2 answered 404 although the API said more follow" in stopped.stderr, stopped.stderr
    assert "does not exist" not in stopped.stderr

    proxy.rule = lambda request: Forward()
    again = cli("apply", manifest, "--state", state, "--auto-approve", "--recovery-wait", 1, *guard, url=proxy.url)

    assert again.returncode == 0, again.stderr
    assert "found and recorded (made by an interrupted apply)" in again.stderr, again.stderr
    assert posts(sandbox) == 2
    assert_issued_once_and_recorded(sandbox, state, {"acme/q1": ACME_ID, "acme/q2": ACME_ID})


# --- B. the server's Date clock moved between two runs -------------------------------------------------------


def test_a_date_clock_stepped_ahead_between_runs_does_not_shorten_the_window(serve, proxy_to, write_manifest, state):
    """The killed run read the server's Date clock; the next run reads one 30 s ahead (the server's clock
    stepped by NTP, or another frontend behind the load balancer). Counted on that clock alone, the intent
    looked 30 s old, past the 6 s window: the next apply listed at once, found nothing (the create was
    still in progress), and created the batch again. Counted on both clocks, the smaller age winning, it
    waits out the window and adopts."""
    sandbox = serve()
    proxy = proxy_to(sandbox)
    held = HeldCreates(sandbox, seconds=3.0)
    manifest = manifest_of(write_manifest, "q1")
    killed_while_its_create_is_in_progress(manifest, state, held, proxy.url)
    proxy.date_shift = 30.0

    recovery = cli("apply", manifest, "--state", state, "--auto-approve", "--recovery-wait", 6, url=proxy.url)
    held.wait_until_committed()

    assert posts(sandbox) == 1, f"the create was sent again while the first was in progress:\n{recovery.stderr}"
    assert recovery.returncode == 0, recovery.stderr
    assert "found and recorded (made by an interrupted apply)" in recovery.stderr, recovery.stderr
    assert "never happened" not in recovery.stderr
    assert_issued_once_and_recorded(sandbox, state, {"acme/q1": ACME_ID})


# --- C. forget-intent while the create is in progress ------------------------------------------------------


def test_forget_intent_refuses_while_the_killed_create_is_still_in_progress(serve, proxy_to, write_manifest, state):
    """Right after the crash, `state forget-intent` listed once, found nothing (the create was still being
    saved), said "giving it up loses nothing", and the next apply created the batch again. It must refuse
    (the default 60 s window is still running) and change nothing; apply then waits and adopts."""
    sandbox = serve()
    proxy = proxy_to(sandbox)
    held = HeldCreates(sandbox, seconds=4.0)
    manifest = manifest_of(write_manifest, "q1")
    killed_while_its_create_is_in_progress(manifest, state, held, proxy.url)
    before = read_state(state)

    forget = cli("state", "forget-intent", "acme/q1", "--state", state, "--auto-approve", url=proxy.url)
    after = read_state(state)
    recovery = cli("apply", manifest, "--state", state, "--auto-approve", "--recovery-wait", 6, url=proxy.url)
    held.wait_until_committed()

    assert posts(sandbox) == 1, f"the create was sent again:\n{forget.stdout}\n{recovery.stderr}"
    assert "acme/q1" in after.pending, f"forget-intent gave the create up:\n{forget.stdout}"
    assert after.content_digest() == before.content_digest()
    assert forget.returncode == 1, forget.stdout
    assert "may still be in progress on the server" in forget.stderr, forget.stderr
    assert "loses nothing" not in forget.stdout
    assert "Traceback" not in forget.stderr
    assert recovery.returncode == 0, recovery.stderr
    assert "found and recorded (made by an interrupted apply)" in recovery.stderr, recovery.stderr
    assert_issued_once_and_recorded(sandbox, state, {"acme/q1": ACME_ID})


# --- D. a balance listed as null ---------------------------------------------------------------------------


def balances_unknown(answer: dict) -> dict:
    for batch in answer.get("data", {}).get("APICreditBatchesByClientAndCreditAccount", {}).get("creditBatches", []):
        batch["startingBalance"] = None
    return answer


def test_a_balance_listed_as_null_is_a_look_alike_never_a_stranger(serve, proxy_to, write_manifest, state):
    """The listing gives startingBalance as null; the create is saved and answered 500. Recovery used to
    take "balance unknown" for "another balance", wait out the window, and send the create again. It must
    stop and name the batch; importing it (made after the intent: no --force) settles the create."""
    sandbox = serve()

    def saved_then_500(request: ProxiedRequest):
        if request.method == "POST" and request.number == 1:
            return Forward(rewrite=lambda _: Answer(500, body={"error": "internal_error", "message": "boom"}))
        return Forward(rewrite=balances_unknown if request.method == "GET" else None)

    proxy = proxy_to(sandbox, saved_then_500)
    manifest = manifest_of(write_manifest, "q1")

    stopped = cli("apply", manifest, "--state", state, "--auto-approve", "--recovery-wait", 1, url=proxy.url)

    assert posts(sandbox) == 1, f"the create was sent again: {sandbox.all_batches(ACME_ID)}\n{stopped.stderr}"
    (made,) = named(sandbox, "Q1")
    assert stopped.returncode == 1, stopped.stderr
    assert f"{made} (name 'Q1', credits not listed" in stopped.stderr, stopped.stderr
    assert "acme/q1" in read_state(state).pending
    imported = cli("import", "acme/q1", made, manifest, "--state", state, url=proxy.url)
    assert imported.returncode == 0, imported.stderr
    assert_issued_once_and_recorded(sandbox, state, {"acme/q1": ACME_ID})


def test_the_duplicate_guard_stops_at_a_batch_whose_balance_is_listed_as_null(serve, proxy_to, write_manifest, state):
    """The same listing habit before a first create: a batch "Q1" made by hand, its balance listed as null,
    used to count as another balance, and apply issued q1 beside it. The guard must stop that create."""
    sandbox = serve()
    by_hand = call_api(
        sandbox, "POST", f"/incoming/v2/clients/{ACME_ID}/creditBatches", {"name": "Q1", "startingBalance": 100}
    )
    proxy = proxy_to(sandbox, lambda request: Forward(rewrite=balances_unknown if request.method == "GET" else None))

    stopped = cli("apply", manifest_of(write_manifest, "q1"), "--state", state, "--auto-approve", url=proxy.url)

    assert named(sandbox, "Q1") == [by_hand["id"]], f"q1 was issued beside the batch made by hand:\n{stopped.stderr}"
    assert stopped.returncode == 1, stopped.stderr
    assert by_hand["id"] in stopped.stderr and "credits not listed" in stopped.stderr, stopped.stderr
    assert read_state(state).is_empty()


# --- import while an intent is open ------------------------------------------------------------------------


def test_import_refuses_a_batch_made_before_the_open_intent_unless_forced(tmp_path, serve, write_manifest, state):
    """Acme has a batch of the same balance made by hand last month. An apply is killed while its create
    of q1 is in progress. Importing last month's batch as q1 would close the intent, and the batch the
    create made would be nobody's: refused, nothing changed; --force (you are sure) imports it."""
    data = tmp_path / "sandbox.sqlite"
    sandbox = serve(data_path=data)
    by_hand = call_api(
        sandbox,
        "POST",
        f"/incoming/v2/clients/{ACME_ID}/creditBatches",
        {"name": "Spring promo", "startingBalance": 100},
    )
    last_month = format_timestamp(datetime.now(timezone.utc) - timedelta(days=30))
    with sqlite3.connect(data) as connection:  # made by hand last month
        connection.execute("UPDATE creditBatches SET createdAt = ? WHERE id = ?", (last_month, by_hand["id"]))
    held = HeldCreates(sandbox, seconds=1.0)
    manifest = manifest_of(write_manifest, "q1")
    killed_while_its_create_is_in_progress(manifest, state, held, sandbox.url)
    held.wait_until_committed()
    before = read_state(state)

    refused = cli("import", "acme/q1", by_hand["id"], manifest, "--state", state, url=sandbox.url)
    unchanged = read_state(state).content_digest() == before.content_digest() and "acme/q1" in before.pending
    forced = cli("import", "acme/q1", by_hand["id"], manifest, "--state", state, "--force", url=sandbox.url)

    assert refused.returncode == 1, f"imported a batch made before the create:\n{refused.stdout}"
    assert unchanged, "the refused import changed the state"
    assert f"batch {by_hand['id']} was made before that create" in refused.stderr, refused.stderr
    assert "--force" in refused.stderr and "Traceback" not in refused.stderr
    assert forced.returncode == 0, forced.stderr
    recorded = read_state(state)
    assert recorded.resources["acme/q1"].batch_id == by_hand["id"]
    assert not recorded.pending
