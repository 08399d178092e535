"""Five stories of recovery (lost answers, crashes, skewed clocks, normalising servers), replayed through
the CLI as real processes: each declared batch ends up issued exactly once with its id in state, or the
run stops with a clear message and sends no second create.

Clocks are shifted on the real apply process with libfaketime (LD_PRELOAD): its wall clock moves, its
monotonic clock does not, exactly as on a machine whose clock is wrong. The API is the sandbox, a real
HTTP server on loopback, with its commit delay and the quirks of servers that normalise what they store;
a mistyped client goes through a gateway (tests/faultproxy.py) that answers 502 to creates.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from apply_processes import assert_issued_once_and_recorded, cli_env, kill_after_its_create_left, posts, start_apply
from conftest import ACCOUNT_ID, ACME_ID, GLOBEX_ID, TEST_KEY, run_subprocess, wait_until
from faultproxy import Answer, FaultProxy, Forward, ProxiedRequest

from provisioner.backends.file import read_state
from provisioner.sandbox import Faults, Quirks, Sandbox

# The manifest's id for acme with two digits swapped: a UUID like any other, of no client at all.
MISTYPED_ACME_ID = "6a0c1d7e-3b2f-4c1a-9e8d-7f6a5b4c3d12"
DEFAULT_WINDOW = 60.0  # apply's default --recovery-wait: what a run that waits before it looks would wait
# A 404 proves nothing until the window has passed; the stories of a 404 need not wait a whole minute.
SHORT_WINDOW = ("--recovery-wait", "2")
# forget-intent's own wait is tested on its own; here it is the way out, whatever the machine's load.
NO_WINDOW = ("--recovery-wait", "0")


# --- scenery ------------------------------------------------------------------------------------------------


def faketime_env(shift_seconds: int) -> dict[str, str]:
    """The environment that runs a process with its wall clock shifted and its monotonic clock left alone."""
    import libfaketime  # the test extra's: a missing one fails the test, it is not skipped

    _, env = libfaketime.get_reload_information()
    return {**env, "DONT_FAKE_MONOTONIC": "1", "FAKETIME": f"{shift_seconds:+d}s"}


def clocks_of_a_process(env: dict[str, str]) -> tuple[float, float]:
    """(wall clock minus ours, monotonic clock minus ours) of a process started with ``env``, in seconds."""
    code = "import time; print(time.time(), time.monotonic())"
    before_wall, before_monotonic = time.time(), time.monotonic()
    output = subprocess.run(
        [sys.executable, "-c", code], env={**_base_env(), **env}, capture_output=True, text=True, check=True
    ).stdout.split()
    return float(output[0]) - before_wall, float(output[1]) - before_monotonic


def _base_env() -> dict[str, str]:
    import os

    return dict(os.environ)


@pytest.fixture(scope="module")
def shifted():
    """shifted(seconds) -> env of a process whose wall clock is that far off; checked once per shift."""
    checked: dict[int, dict[str, str]] = {}

    def env_for(seconds: int) -> dict[str, str]:
        if seconds not in checked:
            env = faketime_env(seconds)
            wall, monotonic = clocks_of_a_process(env)
            assert abs(wall - seconds) < 5, f"libfaketime did not shift the wall clock by {seconds} s ({wall:.1f})"
            assert 0 <= monotonic < 5, f"libfaketime moved the monotonic clock too ({monotonic:.1f} s)"
            checked[seconds] = env
        return checked[seconds]

    return env_for


@pytest.fixture
def serve():
    """serve(faults=..., quirks=..., known_clients=...) -> a started sandbox; all stopped at the end."""
    started: list[Sandbox] = []

    def start(faults: Faults | None = None, **options) -> Sandbox:
        sandbox = Sandbox(api_key=TEST_KEY, page_size=5, faults=faults, **options).start()
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.stop()


def acme_manifest(write_manifest, client_id: str = ACME_ID, name: str = "Acme Q1") -> Path:
    return write_manifest(
        f"""
        clients:
          acme:
            id: {client_id}
            batches:
              q1:
                name: "{name}"
                startingBalance: 5000
        """
    )


def apply(
    manifest: Path, state: Path, url: str, *options: str, shift: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess, float]:
    """A whole apply as a real process: (its result, its wall time in seconds)."""
    started = time.monotonic()
    result = run_subprocess(
        "apply", manifest, "--state", state, "--auto-approve", *options, env=cli_env(url, shift), timeout=180
    )
    return result, time.monotonic() - started


# --- 1. the writer's clock is ahead --------------------------------------------------------------------------


@pytest.mark.parametrize("duplicate_check", [True, False], ids=["guarded", "no-duplicate-check"])
def test_story1_a_create_sent_from_a_clock_330s_ahead_is_adopted_by_the_next_apply(
    serve, shifted, write_manifest, state, duplicate_check
):
    """Apply #1 runs 330 s ahead; its create commits and it is killed before the answer comes back.
    Apply #2 on a correct clock, default options, used to call the create "dated in the future",
    "never happened", and send it again. It must adopt it: the intent carries the server's time too.
    With and without the duplicate guard (whose listing is the first reading of the server's clock)."""
    sandbox = serve(Faults(commit_delay=1.0))
    manifest = acme_manifest(write_manifest)
    options = () if duplicate_check else ("--no-duplicate-check",)

    killed = start_apply(manifest, state, sandbox.url, *options, shift=shifted(330))
    kill_after_its_create_left(killed, state, after=0.3)
    wait_until(lambda: len(sandbox.all_batches(ACME_ID)) == 1, "the server committed the create")
    intent = read_state(state).pending["acme/q1"]
    assert intent.at > intent.server_at, "the intent is dated on both clocks: the writer's is ahead"

    second, elapsed = apply(manifest, state, sandbox.url)

    assert second.returncode == 0, second.stderr
    assert "found and recorded" in second.stderr
    assert "never happened" not in second.stderr
    assert posts(sandbox) == 1, "the create was sent again"
    assert_issued_once_and_recorded(sandbox, state, {"acme/q1": ACME_ID})
    assert elapsed < DEFAULT_WINDOW / 3, f"a batch that was there was adopted only after {elapsed:.1f} s"


# --- 2. the writer's clock is behind (and ahead) while the server is still committing -----------------------


@pytest.mark.parametrize("shift", [-300, 330], ids=["5-min-behind", "330s-ahead"])
def test_story2_a_create_the_server_commits_after_the_writer_died_is_waited_for_on_the_servers_clock(
    serve, shifted, write_manifest, state, shift
):
    """The server commits a create some seconds after receiving it; apply #1 (clock off by minutes)
    is killed 2 s after the POST, and apply #2 starts at once on a correct clock. Its first look finds
    nothing; the intent only looked minutes old on the writer's clock, so it used to send the create
    again at once, and the first one committed after. On the server's clock the intent is 2 s old:
    apply #2 waits out the rest of the window, looks again, and adopts.

    Time is scaled down (commit after 4 s, window 8 s, instead of 20 s and 60 s); the clocks'
    difference, minutes, still dwarfs the window, which is what the story needs."""
    commit_delay, window = 4.0, 8.0
    sandbox = serve(Faults(commit_delay=commit_delay))
    manifest = acme_manifest(write_manifest)

    killed = start_apply(manifest, state, sandbox.url, "--recovery-wait", str(window), shift=shifted(shift))
    kill_after_its_create_left(killed, state, after=2.0)
    assert not sandbox.all_batches(ACME_ID), "the create is still being committed"

    second, elapsed = apply(manifest, state, sandbox.url, "--recovery-wait", str(window))

    assert second.returncode == 0, second.stderr
    assert "found and recorded" in second.stderr, second.stderr
    assert posts(sandbox) == 1, "the create was sent again before the first one committed"
    assert_issued_once_and_recorded(sandbox, state, {"acme/q1": ACME_ID})
    assert elapsed < window + 5, f"waited {elapsed:.1f} s: more than what was left of an {window:.0f} s window"


# --- 3. servers that normalise what they store ---------------------------------------------------------------


def start_sandbox_process(tmp_path: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    """``provisioner sandbox`` as a real process on a free port; (the process, its URL)."""
    log = tmp_path / "sandbox.log"
    with open(log, "w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "provisioner", "sandbox", "--port", "0", "--api-key", TEST_KEY, *flags],
            stdout=subprocess.DEVNULL,
            stderr=output,
        )
    try:
        wait_until(lambda: "listening on" in log.read_text() or process.poll() is not None, "the sandbox listens")
    except AssertionError:
        process.kill()
        raise
    line = next((line for line in log.read_text().splitlines() if "listening on" in line), None)
    assert line is not None, log.read_text()
    return process, line.rsplit(" ", 1)[-1]


def listed(url: str, client_id: str) -> list[dict]:
    import requests

    answer = requests.get(
        f"{url}/incoming/v2/clients/{client_id}/creditBatches",
        params={"clientId": client_id},
        headers={"Authorization": f"Bearer {TEST_KEY}"},
        timeout=10,
    )
    answer.raise_for_status()
    return answer.json()["data"]["APICreditBatchesByClientAndCreditAccount"]["creditBatches"]


def test_story3_every_lost_answer_of_a_normalising_server_is_adopted_exactly_once(tmp_path, write_manifest, state):
    """The sandbox process lists clientId as null and expiresOn as a bare date, and trims names; every
    create's answer is lost after its commit. Each create must be matched through the quirks, and
    adopted, never sent again."""
    server, url = start_sandbox_process(tmp_path, "--quirk", "all", "--drop-after-commit-rate", "1")
    try:
        manifest = write_manifest(
            f"""
            clients:
              acme:
                id: {ACME_ID}
                creditAccountId: {ACCOUNT_ID}
                batches:
                  q1:
                    name: Acme Q1
                    startingBalance: 5000
                    expiresOn: 2030-03-31T23:59:59Z
                  q2:
                    name: Acme Q2
                    startingBalance: 5000
                    expiresOn: 2030-06-30T23:59:59Z
              globex:
                id: {GLOBEX_ID}
                batches:
                  starter:
                    startingBalance: 1200
            """
        )
        first, _ = apply(manifest, state, url)
        again, _ = apply(manifest, state, url)
        # A bare date is the same expiry in the server's form: no drift, and refresh records none.
        refreshed = run_subprocess("plan", manifest, "--state", state, "--refresh", env=cli_env(url))
        recorded_live = run_subprocess("refresh", manifest, "--state", state, env=cli_env(url))
        after_refresh = run_subprocess("plan", manifest, "--state", state, env=cli_env(url))
        live = {client: listed(url, client) for client in (ACME_ID, GLOBEX_ID)}
    finally:
        server.kill()
        server.wait()

    assert first.returncode == 0, first.stderr
    assert first.stderr.count("created (its answer was lost; found by listing)") == 3, first.stderr
    assert "No changes" in again.stdout, again.stdout
    assert recorded_live.returncode == 0, recorded_live.stderr
    for plan in (refreshed, after_refresh):
        assert plan.returncode == 0 and "No changes" in plan.stdout, plan.stdout + plan.stderr
    batches = [batch for client in live.values() for batch in client]
    assert all(batch["clientId"] is None for batch in batches), "the quirk is on: clientId is listed as null"
    assert sorted(batch["expiresOn"] for batch in live[ACME_ID]) == ["2030-03-31", "2030-06-30"], "bare dates"
    recorded = read_state(state)
    assert sorted(resource.batch_id for resource in recorded.resources.values()) == sorted(b["id"] for b in batches)
    assert len(batches) == 3 and not recorded.pending
    by_address = {address: resource.remote["name"] for address, resource in recorded.resources.items()}
    assert by_address == {"acme/q1": "Acme Q1", "acme/q2": "Acme Q2", "globex/starter": "starter"}, (
        "each address adopted its own batch, though both of acme's have the same balance and null clientId"
    )


def test_story3_a_name_with_spaces_at_its_ends_is_refused_before_anything_is_sent(serve, write_manifest, state):
    """A server may store "Acme Q1 " as "Acme Q1", and then a lost answer could not be recognised: such a
    name is refused with the file, line and field, and nothing is sent."""
    sandbox = serve(quirks=Quirks(trim_names=True))
    manifest = acme_manifest(write_manifest, name="Acme Q1 ")

    refused, _ = apply(manifest, state, sandbox.url)

    assert refused.returncode == 1
    assert f"{manifest}:" in refused.stderr and "name" in refused.stderr and "spaces" in refused.stderr, refused.stderr
    assert not sandbox.request_log, "nothing is sent for a manifest that is refused"


def test_story3_a_name_stored_otherwise_stops_the_address_and_import_settles_it(cli, serve, write_manifest, state):
    """A name whose inner spaces the server collapses comes back otherwise than sent: the batch is only a
    look-alike. The run stops for that address, names the batch and `provisioner import`, and never sends
    the create again, on this run or the next; importing the candidate settles it."""
    sandbox = serve(Faults(drop_after_commit_rate=1.0), quirks=Quirks(trim_names=True))
    manifest = acme_manifest(write_manifest, name="Acme  Q1")

    first, _ = apply(manifest, state, sandbox.url)
    second, _ = apply(manifest, state, sandbox.url)

    [made] = sandbox.all_batches(ACME_ID)
    assert made["name"] == "Acme Q1"
    for run in (first, second):
        assert run.returncode == 1, run.stderr
        assert "Traceback" not in run.stderr
        assert made["id"] in run.stderr and "provisioner import acme/q1" in run.stderr, run.stderr
        assert "will not create it again" in run.stderr
    assert posts(sandbox) == 1, "a look-alike was followed by a second create"
    assert set(read_state(state).pending) == {"acme/q1"}

    sandbox.set_faults(Faults())
    imported = run_subprocess("import", "acme/q1", made["id"], manifest, "--state", state, env=cli_env(sandbox.url))
    assert imported.returncode == 0, imported.stderr
    settled, _ = apply(manifest, state, sandbox.url)

    assert settled.returncode == 0, settled.stderr
    assert posts(sandbox) == 1
    assert_issued_once_and_recorded(sandbox, state, {"acme/q1": ACME_ID})


def test_story3_a_create_answered_otherwise_than_sent_is_reported(serve, write_manifest, state):
    """Every create's answer is checked against what was sent: a name stored otherwise is said, not hidden."""
    sandbox = serve(quirks=Quirks(trim_names=True))
    manifest = acme_manifest(write_manifest, name="Acme  Q1")

    result, _ = apply(manifest, state, sandbox.url)

    assert result.returncode == 0, result.stderr
    assert "the API stored it differently: name 'Acme  Q1' came back as 'Acme Q1'" in result.stderr, result.stderr
    assert_issued_once_and_recorded(sandbox, state, {"acme/q1": ACME_ID})


# --- 4. the wedge: a mistyped client id -----------------------------------------------------------------------


def gateway_answering_502_to_creates(request: ProxiedRequest):
    return Answer(502) if request.method == "POST" else Forward()


def test_story4_a_mistyped_client_is_refused_by_the_duplicate_guard_before_any_create(serve, write_manifest, state):
    """With the duplicate guard (the default), the client is listed before its first create: a 404 there
    stops the address before anything is sent, and no intent is left to wedge the next apply."""
    sandbox = serve(known_clients={ACME_ID})
    with FaultProxy(sandbox.url, gateway_answering_502_to_creates) as gateway:
        mistyped, _ = apply(acme_manifest(write_manifest, client_id=MISTYPED_ACME_ID), state, gateway.url)
        assert gateway.posts() == 0

    assert mistyped.returncode == 1
    assert MISTYPED_ACME_ID in mistyped.stderr and "Check the id" in mistyped.stderr, mistyped.stderr
    assert not read_state(state).pending

    fixed, _ = apply(acme_manifest(write_manifest), state, sandbox.url)
    assert fixed.returncode == 0, fixed.stderr
    assert_issued_once_and_recorded(sandbox, state, {"acme/q1": ACME_ID})


def test_story4_after_a_502_and_a_404_listing_the_intent_waits_for_a_person(serve, write_manifest, state):
    """The create for a mistyped client is answered 502 (a gateway), so its outcome is unknown; the listing
    then says 404. Even with the API's address proven (the fixed client lists fine), a 404 alone does not
    prove the create made nothing (the same answer comes from a replica that does not know a client yet):
    the intent stays open and the message names the way out, `state forget-intent`; after it, the fixed
    manifest converges."""
    sandbox = serve(known_clients={ACME_ID})
    with FaultProxy(sandbox.url, gateway_answering_502_to_creates) as gateway:
        first, _ = apply(
            acme_manifest(write_manifest, client_id=MISTYPED_ACME_ID), state, gateway.url, "--no-duplicate-check"
        )
        assert gateway.posts() == 1
    assert first.returncode == 1, first.stderr
    assert "Traceback" not in first.stderr
    assert set(read_state(state).pending) == {"acme/q1"}, "the 502 left the create's outcome unknown"

    fixed = acme_manifest(write_manifest)
    second, _ = apply(fixed, state, sandbox.url, *SHORT_WINDOW)

    assert second.returncode == 1, second.stderr
    assert f"the API answers 404 for client {MISTYPED_ACME_ID}" in second.stderr, second.stderr
    assert "provisioner state forget-intent acme/q1" in second.stderr, second.stderr
    assert set(read_state(state).pending) == {"acme/q1"} and not sandbox.all_batches(ACME_ID)

    given_up = run_subprocess(
        "state", "forget-intent", "acme/q1", "--state", state, "--auto-approve", *NO_WINDOW, env=cli_env(sandbox.url)
    )
    third, _ = apply(fixed, state, sandbox.url)
    fourth, _ = apply(fixed, state, sandbox.url, "--refresh")

    assert given_up.returncode == 0, given_up.stderr
    assert third.returncode == 0, third.stderr
    assert "No changes" in fourth.stdout, fourth.stdout + fourth.stderr
    assert_issued_once_and_recorded(sandbox, state, {"acme/q1": ACME_ID})


def test_story4_forget_intent_is_the_documented_way_out_of_any_open_intent(serve, write_manifest, state):
    """When the API's address cannot be proven (every client answers 404, as behind a wrong TI_BASE_URL),
    the intent is not closed on a guess; the message names `state forget-intent`, which shows what it
    would give up, asks, keeps a backup, and lets the next apply create the batch."""
    sandbox = serve(known_clients={ACME_ID})
    manifest = acme_manifest(write_manifest, client_id=MISTYPED_ACME_ID)
    with FaultProxy(sandbox.url, gateway_answering_502_to_creates) as gateway:
        first, _ = apply(manifest, state, gateway.url, "--no-duplicate-check")
    assert first.returncode == 1 and set(read_state(state).pending) == {"acme/q1"}

    stuck, _ = apply(manifest, state, sandbox.url, *SHORT_WINDOW)
    assert stuck.returncode == 1
    assert "provisioner state forget-intent acme/q1" in stuck.stderr, stuck.stderr
    assert not sandbox.all_batches(ACME_ID)

    refused = run_subprocess(
        "state", "forget-intent", "acme/q1", "--state", state, *NO_WINDOW, env=cli_env(sandbox.url)
    )
    assert refused.returncode == 1 and "--auto-approve" in refused.stderr, refused.stderr
    assert set(read_state(state).pending) == {"acme/q1"}, "no 'yes', nothing given up"

    given_up = run_subprocess(
        "state", "forget-intent", "acme/q1", "--state", state, "--auto-approve", *NO_WINDOW, env=cli_env(sandbox.url)
    )
    assert given_up.returncode == 0, given_up.stderr
    assert "cannot be shown" in given_up.stdout and "404" in given_up.stdout, given_up.stdout
    assert not read_state(state).pending
    assert state.with_name(state.name + ".backup").exists(), "the state before it was given up is kept"

    converged, _ = apply(acme_manifest(write_manifest), state, sandbox.url)
    assert converged.returncode == 0, converged.stderr
    assert_issued_once_and_recorded(sandbox, state, {"acme/q1": ACME_ID})


# --- 5. look first, wait only to prove a negative ------------------------------------------------------------


def five_batches(write_manifest) -> tuple[Path, dict[str, str]]:
    lines = ["clients:", "  acme:", f"    id: {ACME_ID}", "    batches:"]
    for number in range(5):
        lines += [f"      b{number}:", f"        name: Acme {number}", f"        startingBalance: {1000 + number}"]
    return write_manifest("\n".join(lines) + "\n"), {f"acme/b{number}": ACME_ID for number in range(5)}


def test_story5_lost_answers_of_committed_creates_are_adopted_without_waiting_the_window(serve, write_manifest, state):
    """Every create commits and its answer is lost. With the default 60 s window, a run that waited
    before looking would take a minute at least; looking first adopts each batch at once."""
    sandbox = serve(Faults(drop_after_commit_rate=1.0))
    manifest, declared = five_batches(write_manifest)

    result, elapsed = apply(manifest, state, sandbox.url)

    assert result.returncode == 0, result.stderr
    assert result.stderr.count("created (its answer was lost; found by listing)") == 5, result.stderr
    assert posts(sandbox) == 5
    assert_issued_once_and_recorded(sandbox, state, declared)
    assert elapsed < DEFAULT_WINDOW / 3, f"the apply took {elapsed:.1f} s: it waited before looking"


def test_story5_after_a_crash_the_batches_found_are_adopted_at_once(serve, write_manifest, state):
    """Apply #1 is killed while its creates are committed but unanswered. Apply #2, default window,
    adopts them at its first look instead of waiting the window before it."""
    sandbox = serve()
    manifest, declared = five_batches(write_manifest)

    def committed_but_answered_late(request: ProxiedRequest):
        return Forward(answer_when=lambda: False, wait_limit=30.0) if request.method == "POST" else Forward()

    with FaultProxy(sandbox.url, committed_but_answered_late) as gateway:
        killed = start_apply(manifest, state, gateway.url, "--parallelism", "5")
        wait_until(lambda: sandbox.stats["creates"] == 5, "the creates are committed")
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    assert len(read_state(state).pending) == 5

    result, elapsed = apply(manifest, state, sandbox.url)

    assert result.returncode == 0, result.stderr
    assert result.stderr.count("found and recorded") == 5, result.stderr
    assert posts(sandbox) == 5
    assert_issued_once_and_recorded(sandbox, state, declared)
    assert elapsed < DEFAULT_WINDOW / 3, f"the apply took {elapsed:.1f} s: it waited before looking"
