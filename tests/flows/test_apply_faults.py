"""Apply exactly once, proven under faults: every declared batch exists once in the API and in state.

Each fault runs on its own against the real sandbox (seeded), through the real
applier, lock, state writer and HTTP client; kills, Ctrl-C and concurrent
applies run the CLI as real processes. After each scenario the list endpoint is
the judge: one live batch per declared address, every live id recorded.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import TEST_KEY, init_state, run_subprocess, wait_until
from conftest import start_apply as start_apply_process

from provisioner.api.client import CreditsApi
from provisioner.applying.applier import Applier, ApplyResult, request_digest
from provisioner.applying.matching import is_exact as attributes_match
from provisioner.backends.file import FileWriter, read_state
from provisioner.backends.filelock import StateLock
from provisioner.core.models import Desired, Intent
from provisioner.core.timestamps import utc_now_text
from provisioner.manifest.loader import load
from provisioner.planning.planner import make_plan
from provisioner.sandbox import Faults, Sandbox

FAST_RETRY_AFTER = 0.05  # seconds the sandbox sends in Retry-After for injected 429/503
MAX_APPLY_RUNS = 6
# The sandbox commits a create before it adds any latency: a create it received is done within
# milliseconds, so recovery need not wait the production default (the client's 30 s read timeout).
RECOVERY_WAIT = 0.5


# --- scenery: manifests, sandboxes, processes ---------------------------------------------------


def client_id(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"provisioner-tests/{name}"))


def manifest_text(clients: int = 2, batches_per_client: int = 5, twins: bool = True) -> str:
    """Batches with distinct names, plus (with ``twins``) two of one client with identical attributes:
    their creates send the very same request, the hardest case for recovery to tell apart."""
    lines = ["clients:"]
    for number in range(clients):
        lines += [f"  c{number}:", f"    id: {client_id(f'c{number}')}", "    batches:"]
        for batch in range(batches_per_client):
            lines += [
                f"      b{batch}:",
                f"        name: Client {number} batch {batch}",
                f"        startingBalance: {100 * (batch + 1)}",
                "        expiresOn: 2031-06-30T23:59:59Z",
            ]
        if twins and number == 0:
            for twin in ("twin-a", "twin-b"):
                lines += [f"      {twin}:", "        name: Twin", "        startingBalance: 777"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def manifest(tmp_path) -> Path:
    path = tmp_path / "manifests" / "m.yaml"
    path.parent.mkdir()
    path.write_text(manifest_text(), encoding="utf-8")
    return path


@pytest.fixture
def state_path(tmp_path) -> Path:
    return init_state(tmp_path / "state" / "default.json")


@pytest.fixture
def faulty():
    """faulty(**faults) -> a started sandbox with those faults (seeded); all are stopped at the end."""
    started: list[Sandbox] = []

    def start(**faults) -> Sandbox:
        faults = {"seed": 7, "retry_after": FAST_RETRY_AFTER, **faults}
        sandbox = Sandbox(api_key=TEST_KEY, page_size=5, faults=Faults(**faults)).start()
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.stop()


def fast_api(
    sandbox: Sandbox,
    *,
    read_timeout: float = 5.0,
    max_attempts: int = 6,
    pool_size: int = 4,
    give_up_after: float | None = 25.0,
) -> CreditsApi:
    return CreditsApi(
        sandbox.url,
        TEST_KEY,
        timeout=(1.0, read_timeout),
        max_attempts=max_attempts,
        backoff_base=0.01,
        backoff_cap=0.1,
        pool_size=pool_size,
        give_up_after=give_up_after,
    )


def apply_in_process(
    manifest: Path, state_path: Path, api: CreditsApi, parallelism: int = 4, duplicate_check: bool = True
) -> ApplyResult:
    """What `provisioner apply --auto-approve` does, with short waits before each lookup."""
    desired = load([manifest])
    with StateLock(state_path, command="apply"):
        with FileWriter(state_path) as writer:
            plan = make_plan(desired, writer.state, datetime.now(timezone.utc))
            applier = Applier(
                api,
                writer,
                parallelism=parallelism,
                settle_seconds=0.05,
                recovery_wait=RECOVERY_WAIT,
                duplicate_check=duplicate_check,
            )
            return applier.apply(plan, desired)


def apply_until_success(manifest: Path, state_path: Path, api: CreditsApi) -> list[ApplyResult]:
    results = [apply_in_process(manifest, state_path, api)]
    while not results[-1].ok:
        assert len(results) < MAX_APPLY_RUNS, f"no success after {len(results)} applies: {results[-1].failed}"
        results.append(apply_in_process(manifest, state_path, api))
    return results


def assert_each_declared_batch_exists_once(sandbox: Sandbox, manifest: Path, state_path: Path) -> None:
    """Judged through the list endpoint (all pages), with the faults switched off."""
    sandbox.set_faults(Faults())
    desired = load([manifest])
    api = fast_api(sandbox)
    try:
        live = [batch for client in desired.clients.values() for batch in api.list_batches(client.id)]
    finally:
        api.close()
    state = read_state(state_path)
    live_by_id = {batch["id"]: batch for batch in live}
    recorded_ids = [resource.batch_id for resource in state.resources.values()]

    assert not state.pending, f"open intents left: {sorted(state.pending)}"
    assert len(live_by_id) == len(live), "the list endpoint showed one id twice"
    assert len(live) == len(desired.batches), duplicates_report(live, desired)
    assert sorted(recorded_ids) == sorted(live_by_id), "a live batch is not in state, or state names a dead id"
    for address, spec in desired.batches.items():
        assert attributes_match(live_by_id[state.resources[address].batch_id], spec.attributes()), address


def duplicates_report(live: list[dict], desired: Desired) -> str:
    wanted = Counter(request_digest(spec.client_id, spec.attributes()) for spec in desired.batches.values())
    made = Counter(
        request_digest(spec.client_id, spec.attributes())
        for batch in live
        for spec in desired.batches.values()
        if spec.client_id == batch["clientId"] and attributes_match(batch, spec.attributes())
    )
    return f"{len(live)} live batches for {len(desired.batches)} declared; per request made-wanted: {made - wanted}"


def posts(sandbox: Sandbox, status: int | None = None) -> int:
    return sum(1 for method, _, code in sandbox.request_log if method == "POST" and (status is None or code == status))


def cli_env(sandbox: Sandbox) -> dict:
    return {"TI_BASE_URL": sandbox.url, "TI_API_KEY": TEST_KEY}


def start_apply(manifest: Path, state_path: Path, sandbox: Sandbox, *extra: str) -> subprocess.Popen:
    return start_apply_process(manifest, state_path, sandbox.url, "--rate-limit", "0", *extra)


def run_apply(manifest: Path, state_path: Path, sandbox: Sandbox, *extra: str) -> subprocess.CompletedProcess:
    return run_subprocess(
        "apply",
        manifest,
        "--state",
        state_path,
        "--auto-approve",
        "--rate-limit",
        "0",
        "--recovery-wait",
        str(RECOVERY_WAIT),
        *extra,
        env=cli_env(sandbox),
    )


def planned_actions(manifest: Path, state_path: Path, sandbox: Sandbox) -> dict[str, str]:
    planned = run_subprocess("plan", manifest, "--state", state_path, "--format", "json", env=cli_env(sandbox))
    assert planned.returncode == 0, planned.stderr
    return {change["address"]: change["action"] for change in json.loads(planned.stdout)["changes"]}


def finish(process: subprocess.Popen, timeout: float = 30.0) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"the apply did not finish in {timeout}s:\n{err}") from None
    return process.returncode, out, err


# --- each fault on its own ------------------------------------------------------------------------


def test_5xx_before_commit_is_looked_up_then_sent_again_never_twice(faulty, manifest, state_path):
    sandbox = faulty(error_rate=0.3)
    api = fast_api(sandbox)

    apply_until_success(manifest, state_path, api)

    assert sandbox.stats["injected_errors"] > 0
    assert sandbox.stats["creates"] == len(load([manifest]).batches)
    assert_each_declared_batch_exists_once(sandbox, manifest, state_path)


@pytest.mark.parametrize("fault", ["error_after_commit_rate", "drop_after_commit_rate"])
def test_answer_lost_after_commit_is_adopted_without_a_second_post(faulty, manifest, state_path, fault):
    sandbox = faulty(**{fault: 0.5})
    api = fast_api(sandbox)

    results = apply_until_success(manifest, state_path, api)

    declared = len(load([manifest]).batches)
    lost_answers = sandbox.stats["errors_after_commit"] + sandbox.stats["drops"]
    assert lost_answers > 0
    assert posts(sandbox) == declared, "a create whose answer was lost was sent again blindly"
    # Found by listing, each counts as created by the run that sent it: its credits were issued then.
    assert sum(len(result.created) + len(result.adopted) for result in results) == declared
    assert_each_declared_batch_exists_once(sandbox, manifest, state_path)


def test_latency_beyond_the_read_timeout_leaves_intents_the_next_apply_adopts(faulty, manifest, state_path):
    sandbox = faulty(latency=0.5)
    declared = len(load([manifest]).batches)

    # Without the duplicate guard, whose listing would time out before any create is sent; and
    # without the run-wide outage watcher (tests/api/test_outage.py), so that each lookup gives up alone.
    slow = apply_in_process(
        manifest,
        state_path,
        fast_api(sandbox, read_timeout=0.2, max_attempts=2, give_up_after=None),
        duplicate_check=False,
    )

    # Every create sent committed but its answer timed out, and so did every lookup: nothing is
    # resent, and a look-alike (the twin) is not even started while its double is unresolved.
    failed = {address for address, _ in slow.failed}
    assert slow.skipped == 1 and len(failed) == declared - 1
    assert sandbox.stats["creates"] == posts(sandbox) == len(failed)
    assert set(read_state(state_path).pending) == failed

    sandbox.set_faults(Faults())
    recovered = apply_in_process(manifest, state_path, fast_api(sandbox))

    assert recovered.ok and set(recovered.adopted) == failed and len(recovered.created) == 1
    assert posts(sandbox) == declared
    assert_each_declared_batch_exists_once(sandbox, manifest, state_path)


def test_429_storms_are_waited_out_and_creates_sent_again_in_the_same_run(faulty, manifest, state_path):
    sandbox = faulty(burst_429_rate=0.15, burst_429_length=3)

    # A 429 is a refusal before any work: retried at once after Retry-After, no lookup, no second run.
    result = apply_in_process(manifest, state_path, fast_api(sandbox, max_attempts=12))

    declared = len(load([manifest]).batches)
    assert result.ok, result.failed
    assert posts(sandbox, 429) > 0
    clients = len(load([manifest]).clients)
    listings = [status for method, _, status in sandbox.request_log if method == "GET" and status != 429]
    assert len(listings) == clients, "one listing per client (the duplicate guard), none for a 429"
    assert sandbox.stats["creates"] == posts(sandbox, 201) == declared
    assert_each_declared_batch_exists_once(sandbox, manifest, state_path)


# --- recovery of open intents -------------------------------------------------------------------


def open_intent(state_path: Path, address: str, manifest: Path) -> Intent:
    """The journal line the applier writes before each create, left open as a crash leaves it."""
    spec = load([manifest]).batches[address]
    intent = Intent(
        address=address,
        client_id=spec.client_id,
        attributes=spec.attributes(),
        digest=request_digest(spec.client_id, spec.attributes()),
        at=utc_now_text(),
    )
    with StateLock(state_path, command="test"), FileWriter(state_path) as writer:
        writer.record_intent(intent)
    return intent


def test_an_intent_whose_create_never_happened_is_created_once(cli, api_env, sandbox, manifest, state_path):
    open_intent(state_path, "c0/b0", manifest)

    assert planned_actions(manifest, state_path, sandbox)["c0/b0"] == "recover"

    applied = cli(
        "apply", manifest, "--state", state_path, "--auto-approve", "--rate-limit", "0", "--recovery-wait", "0"
    )
    assert applied.exit_code == 0, applied.output
    assert "never happened" in applied.output
    assert_each_declared_batch_exists_once(sandbox, manifest, state_path)


def test_recovery_refuses_to_guess_between_two_matching_batches(cli, api_env, sandbox, manifest, state_path):
    intent = open_intent(state_path, "c0/b0", manifest)
    api = fast_api(sandbox)
    made_by_the_crash = api.create_batch(intent.client_id, intent.attributes)["id"]
    made_by_hand = api.create_batch(intent.client_id, intent.attributes)["id"]

    applied = cli(
        "apply", manifest, "--state", state_path, "--auto-approve", "--rate-limit", "0", "--recovery-wait", "0"
    )

    assert applied.exit_code == 1
    assert "will not guess" in applied.output and "Traceback" not in applied.output
    assert made_by_the_crash in applied.output and made_by_hand in applied.output
    assert "provisioner import c0/b0" in applied.output
    # Only c0/b0 waits for a person; the changes no listing could confuse with it went ahead.
    declared = load([manifest]).batches
    candidates = [b for b in sandbox.all_batches() if b["id"] in (made_by_the_crash, made_by_hand)]
    assert len(candidates) == 2 and len(sandbox.all_batches()) == 2 + len(declared) - 1
    state = read_state(state_path)
    assert set(state.pending) == {"c0/b0"} and set(state.resources) == set(declared) - {"c0/b0"}


def test_sigkilled_apply_leaves_intents_that_plan_shows_and_apply_adopts(faulty, manifest, state_path):
    sandbox = faulty(latency=1.0)
    declared = load([manifest]).batches

    killed = start_apply(manifest, state_path, sandbox, "--parallelism", "3")
    wait_until(lambda: sandbox.stats["creates"] >= 3, "three creates are committed and awaiting their answer")
    killed.send_signal(signal.SIGKILL)
    finish(killed)

    in_flight = set(read_state(state_path).pending)
    assert len(in_flight) == 3 and not read_state(state_path).resources
    actions = planned_actions(manifest, state_path, sandbox)
    assert {address for address, action in actions.items() if action == "recover"} == in_flight

    sandbox.set_faults(Faults())
    applied = run_apply(manifest, state_path, sandbox)

    assert applied.returncode == 0, applied.stderr
    assert "taking over the lock" in applied.stderr  # the killed run's lock: its holder is provably dead
    assert applied.stderr.count("found and recorded") == 3
    assert posts(sandbox) == len(declared)
    assert_each_declared_batch_exists_once(sandbox, manifest, state_path)


# --- two applies at once ------------------------------------------------------------------------


def holder_pid(state_path: Path) -> int | None:
    try:
        return json.loads(state_path.with_name(state_path.name + ".lock").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.mark.parametrize("lock_timeout", ["0", "60"])
def test_two_concurrent_applies_create_each_batch_once(faulty, manifest, state_path, lock_timeout):
    sandbox = faulty(latency=0.3)
    first = start_apply(manifest, state_path, sandbox, "--parallelism", "2")
    wait_until(lambda: holder_pid(state_path) == first.pid, "the first apply holds the lock")

    second = run_apply(manifest, state_path, sandbox, "--lock-timeout", lock_timeout)
    first_code, _, first_err = finish(first)

    assert first_code == 0, first_err
    if lock_timeout == "0":
        assert second.returncode == 1
        assert f"pid {first.pid}" in second.stderr and "still going" in second.stderr
        assert "Traceback" not in second.stderr
    else:
        assert second.returncode == 0, second.stderr
        assert "No changes" in second.stdout
    assert posts(sandbox) == len(load([manifest]).batches)
    assert_each_declared_batch_exists_once(sandbox, manifest, state_path)


# --- Ctrl-C ---------------------------------------------------------------------------------------


def test_ctrl_c_starts_nothing_new_and_records_what_was_in_flight(faulty, manifest, state_path):
    sandbox = faulty(latency=1.0)
    process = start_apply(manifest, state_path, sandbox, "--parallelism", "2")
    wait_until(lambda: sandbox.stats["creates"] >= 2, "two creates are in flight")

    process.send_signal(signal.SIGINT)
    code, _, err = finish(process)

    assert code == 1, err
    assert "Interrupt" in err and "Traceback" not in err
    assert sandbox.stats["creates"] == posts(sandbox) == 2, "a request was started after Ctrl-C"
    state = read_state(state_path)
    assert len(state.resources) == 2 and not state.pending
    assert {resource.batch_id for resource in state.resources.values()} == {b["id"] for b in sandbox.all_batches()}

    sandbox.set_faults(Faults())
    assert run_apply(manifest, state_path, sandbox).returncode == 0
    assert_each_declared_batch_exists_once(sandbox, manifest, state_path)


def test_second_ctrl_c_exits_at_once_and_the_next_apply_converges(faulty, manifest, state_path):
    sandbox = faulty(latency=5.0)
    process = start_apply(manifest, state_path, sandbox, "--parallelism", "2")
    wait_until(lambda: sandbox.stats["creates"] >= 2, "two creates are in flight")

    process.send_signal(signal.SIGINT)
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    code, _, err = finish(process, timeout=4.0)  # well before the in-flight answers could arrive

    assert code != 0 and "Traceback" not in err
    state = read_state(state_path)
    assert len(state.pending) == 2 and not state.resources, "in-flight creates must stay open intents"

    sandbox.set_faults(Faults())
    applied = run_apply(manifest, state_path, sandbox)
    assert applied.returncode == 0, applied.stderr
    assert applied.stderr.count("found and recorded") == 2
    assert_each_declared_batch_exists_once(sandbox, manifest, state_path)
