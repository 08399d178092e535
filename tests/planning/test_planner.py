"""The planner as a pure function (Desired × Recorded × Observed → Plan), and `plan` as a user sees it."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from conftest import ACCOUNT_ID, ACME_ID, GLOBEX_ID, init_state, two_client_manifest

from provisioner.backends.file import State, read_state, write_snapshot
from provisioner.core.models import BatchSpec, Desired, Intent, Policy, Resource
from provisioner.manifest.loader import load
from provisioner.planning.planner import make_plan

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
FUTURE = "2030-03-31T23:59:59.000Z"
OTHER_ACCOUNT = "11111111-2222-4333-8444-555555555555"
BATCH_ID = "b0000000-0000-4000-8000-000000000001"
ANSI = re.compile(r"\x1b\[")


# --------------------------------------------------------------------------- plain values


def spec(
    address: str = "acme/q1",
    *,
    balance: int = 5000,
    name: str | None = None,
    expires: str | None = FUTURE,
    account: str | None = ACCOUNT_ID,
    client_id: str | None = None,
    source: str = "m.yaml:5:5",
) -> BatchSpec:
    client_key, batch_key = address.split("/")
    return BatchSpec(
        client_key=client_key,
        batch_key=batch_key,
        client_id=client_id or (ACME_ID if client_key == "acme" else GLOBEX_ID),
        name=name or batch_key,
        starting_balance=balance,
        expires_on=expires,
        credit_account_id=account,
        source=source,
    )


def desired(*specs: BatchSpec, policy: Policy | None = None) -> Desired:
    return Desired(batches={s.address: s for s in specs}, policy=policy or Policy())


def recorded(batch: BatchSpec, batch_id: str = BATCH_ID, **changed) -> Resource:
    """A resource as an earlier apply recorded it; ``changed`` overrides recorded attributes."""
    attributes = {**batch.attributes(), **changed}
    return Resource(batch_id=batch_id, client_id=batch.client_id, attributes=attributes, remote={"id": batch_id})


def state_of(resources: dict[str, Resource] | None = None, pending: dict[str, Intent] | None = None) -> State:
    return State(resources=resources or {}, pending=pending or {})


def intent_for(batch: BatchSpec, **changed) -> Intent:
    return Intent(
        address=batch.address,
        client_id=batch.client_id,
        attributes={**batch.attributes(), **changed},
        digest="d" * 64,
        at="2026-05-31T10:00:00.000Z",
    )


def only_change(plan):
    assert len(plan.changes) == 1, plan.changes
    return plan.changes[0]


def live(batch: BatchSpec, batch_id: str = BATCH_ID, **changed) -> dict:
    """The batch as the API lists it (its own field set), with ``changed`` values."""
    return {
        "id": batch_id,
        **batch.attributes(),
        "currentBalance": batch.starting_balance - 300,
        "allocatedCredits": 300,
        "status": "active",
        "createdAt": "2026-01-01T00:00:00.000Z",
        **changed,
    }


# --------------------------------------------------------------------------- create / unchanged / update


def test_declared_and_not_recorded_is_a_create_with_its_credits():
    batch = spec(balance=5000)
    change = only_change(make_plan(desired(batch), state_of(), NOW))
    assert change.action == "create"
    assert change.before is None
    assert change.after == batch.attributes()
    assert change.credits == 5000
    assert change.client_key == "acme"


def test_matching_record_is_counted_as_unchanged_and_not_listed():
    batch = spec()
    plan = make_plan(desired(batch), state_of({batch.address: recorded(batch)}), NOW)
    assert plan.changes == ()
    assert plan.unchanged == 1
    assert not plan.has_changes
    assert plan.total_credits == 0


def test_name_differs_is_an_update_in_place_before_to_after():
    batch = spec(name="Acme Q1 2026")
    plan = make_plan(desired(batch), state_of({batch.address: recorded(batch, name="Acme Q1")}), NOW)
    change = only_change(plan)
    assert change.action == "update"
    assert (change.before["name"], change.after["name"]) == ("Acme Q1", "Acme Q1 2026")
    assert change.credits == 0
    assert change.reasons == ()
    assert plan.unchanged == 0


def test_expiry_differs_is_an_update_in_place():
    batch = spec(expires="2031-01-31T00:00:00.000Z")
    state = state_of({batch.address: recorded(batch, expiresOn="2030-12-31T00:00:00.000Z")})
    change = only_change(make_plan(desired(batch), state, NOW))
    assert change.action == "update"
    assert change.before["expiresOn"] == "2030-12-31T00:00:00.000Z"
    assert change.after["expiresOn"] == "2031-01-31T00:00:00.000Z"


def test_expiry_added_later_is_an_update():
    batch = spec(expires=FUTURE)
    change = only_change(make_plan(desired(batch), state_of({"acme/q1": recorded(spec(expires=None))}), NOW))
    assert change.action == "update"
    assert "expiresOn" not in change.before and change.after["expiresOn"] == FUTURE


def test_expiry_removed_is_blocked_since_an_update_can_only_set_one():
    batch = spec(expires=None)
    change = only_change(make_plan(desired(batch), state_of({"acme/q1": recorded(spec(expires=FUTURE))}), NOW))
    assert change.action == "blocked"
    assert change.before["expiresOn"] == FUTURE and "expiresOn" not in change.after
    assert any(reason.startswith("Fix:") and "far-future" in reason for reason in change.reasons)


@pytest.mark.parametrize(
    "recorded_form",
    ["2030-03-31T23:59:59Z", "2030-03-31T23:59:59+00:00", "2030-04-01T01:59:59+02:00", "2030-03-31T23:59:59.000000Z"],
)
def test_same_instant_written_differently_is_not_a_change(recorded_form):
    batch = spec(expires="2030-03-31T23:59:59.000Z")
    plan = make_plan(desired(batch), state_of({batch.address: recorded(batch, expiresOn=recorded_form)}), NOW)
    assert plan.changes == ()
    assert plan.unchanged == 1


def test_ids_differing_only_in_letter_case_are_not_a_change():
    batch = spec()
    state = state_of({batch.address: recorded(batch, clientId=ACME_ID.upper(), creditAccountId=ACCOUNT_ID.upper())})
    assert make_plan(desired(batch), state, NOW).changes == ()


# --------------------------------------------------------------------------- blocked


@pytest.mark.parametrize(
    ("field", "old_value"),
    [("startingBalance", 4000), ("clientId", GLOBEX_ID), ("creditAccountId", OTHER_ACCOUNT)],
)
def test_a_field_the_api_cannot_change_blocks_with_reason_and_fix(field, old_value):
    batch = spec()
    plan = make_plan(desired(batch), state_of({batch.address: recorded(batch, **{field: old_value})}), NOW)
    change = only_change(plan)
    assert change.action == "blocked"
    assert change.before[field] == old_value
    assert change.after[field] == batch.attributes()[field]
    assert any(field in reason and "cannot be changed" in reason for reason in change.reasons)
    assert any(reason.startswith("Fix:") and "declare a new batch" in reason for reason in change.reasons)
    assert change.credits == 0
    assert plan.blocked == (change,)


def test_credit_account_added_later_is_blocked_too():
    batch = spec(account=ACCOUNT_ID)
    change = only_change(make_plan(desired(batch), state_of({"acme/q1": recorded(spec(account=None))}), NOW))
    assert change.action == "blocked"
    assert any("creditAccountId" in reason for reason in change.reasons)


def test_fixed_field_with_a_name_change_is_blocked_naming_only_the_fixed_field():
    batch = spec(name="New name", balance=6000)
    state = state_of({batch.address: recorded(batch, name="Old name", startingBalance=5000)})
    change = only_change(make_plan(desired(batch), state, NOW))
    assert change.action == "blocked"
    assert not any(reason.startswith("name") for reason in change.reasons)
    assert any(reason.startswith("startingBalance") for reason in change.reasons)


def test_create_expiring_in_the_past_is_blocked_with_its_source():
    batch = spec(expires="2026-05-31T23:59:59.000Z", source="manifests/acme.yaml:12:7")
    plan = make_plan(desired(batch), state_of(), NOW)
    change = only_change(plan)
    assert change.action == "blocked"
    assert change.reasons[0].startswith("manifests/acme.yaml:12:7: expiresOn 2026-05-31T23:59:59.000Z is in the past")
    assert any(reason.startswith("Fix:") for reason in change.reasons)
    assert change.credits == 0
    assert plan.total_credits == 0


def test_create_expiring_exactly_now_is_blocked_one_millisecond_later_is_not():
    at_now = spec("acme/now", expires="2026-06-01T12:00:00.000Z")
    just_after = spec("acme/later", expires="2026-06-01T12:00:00.001Z")
    plan = make_plan(desired(at_now, just_after), state_of(), NOW)
    assert [(c.address, c.action) for c in plan.changes] == [("acme/later", "create"), ("acme/now", "blocked")]


def test_recorded_batch_that_has_since_expired_is_not_blocked():
    batch = spec(expires="2026-01-01T00:00:00.000Z")
    plan = make_plan(desired(batch), state_of({batch.address: recorded(batch)}), NOW)
    assert plan.changes == ()
    assert plan.unchanged == 1


# --------------------------------------------------------------------------- undeclared and interrupted


def test_recorded_but_no_longer_declared_is_a_warning_and_no_change():
    gone = spec("acme/old")
    plan = make_plan(desired(), state_of({gone.address: recorded(gone, batch_id=BATCH_ID)}), NOW)
    assert plan.changes == ()
    assert plan.unchanged == 0
    (warning,) = plan.warnings
    assert "acme/old" in warning and BATCH_ID in warning
    assert "left as is; the API cannot delete batches" in warning
    assert "provisioner state rm acme/old" in warning


def test_pending_intent_of_a_declared_batch_is_a_recover_not_a_second_create():
    batch = spec(balance=700)
    plan = make_plan(desired(batch), state_of(pending={batch.address: intent_for(batch)}), NOW)
    change = only_change(plan)
    assert change.action == "recover"
    assert change.after == batch.attributes()
    assert change.credits == 700
    assert "interrupted" in change.reasons[0] and "2026-05-31T10:00:00.000Z" in change.reasons[0]
    assert plan.count("create") == 0


def test_pending_intent_whose_manifest_changed_since_says_so():
    batch = spec(name="Renamed")
    state = state_of(pending={batch.address: intent_for(batch, name="Original")})
    change = only_change(make_plan(desired(batch), state, NOW))
    assert change.action == "recover"
    assert change.after["name"] == "Original"  # what may already exist, not the new wish
    assert any("manifest changed" in reason for reason in change.reasons)


def test_pending_intent_of_an_undeclared_batch_is_still_recovered():
    batch = spec("globex/dropped", balance=300)
    plan = make_plan(desired(), state_of(pending={batch.address: intent_for(batch)}), NOW)
    change = only_change(plan)
    assert (change.action, change.client_key, change.credits) == ("recover", "globex", 300)
    assert any("no longer declared" in reason for reason in change.reasons)


# --------------------------------------------------------------------------- observed (refresh)


def test_name_changed_by_hand_is_updated_back_showing_the_live_value():
    batch = spec(name="Acme Q1")
    observed = {BATCH_ID: live(batch, name="Renamed in the UI")}
    plan = make_plan(desired(batch), state_of({batch.address: recorded(batch)}), NOW, observed=observed)
    change = only_change(plan)
    assert change.action == "update"
    assert change.before["name"] == "Renamed in the UI"
    assert change.after["name"] == "Acme Q1"


def test_live_values_in_the_api_forms_equal_to_the_manifest_are_no_change():
    batch = spec(expires="2030-03-31T23:59:59.000Z", balance=5000)
    observed = {
        BATCH_ID: live(batch, expiresOn="2030-04-01T01:59:59+02:00", startingBalance=5000.0, clientId=ACME_ID.upper())
    }
    plan = make_plan(desired(batch), state_of({batch.address: recorded(batch)}), NOW, observed=observed)
    assert plan.changes == ()
    assert plan.unchanged == 1


def test_recorded_batch_the_api_no_longer_lists_is_missing_not_created_again():
    batch = spec(balance=5000)
    plan = make_plan(desired(batch), state_of({batch.address: recorded(batch)}), NOW, observed={})
    change = only_change(plan)
    assert change.action == "missing"
    assert change.credits == 0
    assert change.after is None
    assert BATCH_ID in change.reasons[0]
    assert any("--replace acme/q1" in reason for reason in change.reasons)
    assert plan.blocked == (change,)
    assert plan.count("create") == 0
    assert not plan.has_changes


def test_replace_plans_a_new_batch_with_its_credits():
    batch = spec(balance=2500)
    plan = make_plan(desired(batch), state_of({batch.address: recorded(batch)}), NOW, replace=["acme/q1"])
    change = only_change(plan)
    assert change.action == "replace"
    assert change.before == batch.attributes()
    assert change.after == batch.attributes()
    assert change.credits == 2500
    assert plan.total_credits == 2500
    assert any("--replace" in reason for reason in change.reasons)


def test_replace_of_a_missing_batch_recreates_it():
    batch = spec(balance=2500)
    state = state_of({batch.address: recorded(batch)})
    plan = make_plan(desired(batch), state, NOW, observed={}, replace=["acme/q1"])
    assert only_change(plan).action == "replace"


def test_usage_rows_come_from_the_observed_batches_sorted_by_address():
    q1, q2, gone = spec("acme/q1"), spec("acme/q2", balance=1000), spec("acme/q0")
    ids = {q1.address: "b-1", q2.address: "b-2", gone.address: "b-0"}
    state = state_of({s.address: recorded(s, batch_id=ids[s.address]) for s in (q2, q1, gone)})
    observed = {"b-2": live(q2, "b-2", currentBalance=250, allocatedCredits=750), "b-1": live(q1, "b-1")}
    plan = make_plan(desired(q1, q2), state, NOW, observed=observed)
    assert [row["address"] for row in plan.info] == ["acme/q1", "acme/q2"]  # b-0 not listed by the API
    assert plan.info[1] == {
        "address": "acme/q2",
        "batchId": "b-2",
        "startingBalance": 1000,
        "currentBalance": 250,
        "allocatedCredits": 750,
        "status": "active",
        "expiresOn": FUTURE,
    }
    assert make_plan(desired(q1, q2), state, NOW).info == ()


# --------------------------------------------------------------------------- guardrails and credits


def test_batch_over_max_batch_credits_is_a_violation_at_the_limit_is_not():
    policy = Policy(max_batch_credits=1000)
    plan = make_plan(
        desired(spec("acme/ok", balance=1000), spec("acme/big", balance=1001)), state_of(), NOW, policy=policy
    )
    (violation,) = plan.violations
    assert (violation.rule, violation.limit, violation.actual, violation.address) == (
        "maxBatchCredits",
        1000,
        1001,
        "acme/big",
    )
    assert "acme/big" in violation.message and "1,001" in violation.message and "maxBatchCredits" in violation.message


def test_total_over_max_apply_credits_is_a_violation():
    batches = [spec(f"acme/b{i}", balance=400) for i in range(3)]
    assert make_plan(desired(*batches), state_of(), NOW, policy=Policy(max_apply_credits=1200)).violations == ()
    (violation,) = make_plan(desired(*batches), state_of(), NOW, policy=Policy(max_apply_credits=1199)).violations
    assert (violation.rule, violation.limit, violation.actual, violation.address) == (
        "maxApplyCredits",
        1199,
        1200,
        None,
    )
    assert "1,200" in violation.message and "maxApplyCredits" in violation.message


def test_more_creates_than_max_creates_is_a_violation():
    batches = [spec(f"acme/b{i}", balance=1) for i in range(3)]
    assert make_plan(desired(*batches), state_of(), NOW, policy=Policy(max_creates=3)).violations == ()
    (violation,) = make_plan(desired(*batches), state_of(), NOW, policy=Policy(max_creates=2)).violations
    assert (violation.rule, violation.limit, violation.actual, violation.address) == ("maxCreates", 2, 3, None)
    assert "creates 3 batches" in violation.message and "maxCreates" in violation.message


def test_policy_from_the_manifests_applies_when_none_is_passed():
    plan = make_plan(desired(spec(balance=50), policy=Policy(max_batch_credits=10)), state_of(), NOW)
    assert len(plan.violations) == 1
    assert (
        make_plan(
            desired(spec(balance=50), policy=Policy(max_batch_credits=10)), state_of(), NOW, policy=Policy()
        ).violations
        == ()
    )


def test_blocked_changes_count_toward_no_guardrail():
    expired = [spec(f"acme/old{i}", balance=9_000_000, expires="2020-01-01T00:00:00.000Z") for i in range(3)]
    policy = Policy(max_batch_credits=1, max_apply_credits=1, max_creates=0)
    plan = make_plan(desired(*expired), state_of(), NOW, policy=policy)
    assert [c.action for c in plan.changes] == ["blocked"] * 3
    assert plan.violations == ()


def test_credits_in_total_and_per_client():
    acme_q1, acme_q2 = spec("acme/q1", balance=5000), spec("acme/q2", balance=2500)
    globex = spec("globex/starter", balance=1200)
    renamed = spec("initech/a", name="New", client_id="77777777-0000-4000-8000-000000000000")
    state = state_of({renamed.address: recorded(renamed, name="Old")})
    plan = make_plan(desired(acme_q1, acme_q2, globex, renamed), state, NOW)
    assert plan.total_credits == 8700
    assert plan.credits_by_client() == {"acme": 7500, "globex": 1200}  # initech only updates: no credits
    assert list(plan.credits_by_client()) == ["acme", "globex"]
    assert (plan.count("create"), plan.count("update")) == (3, 1)


# --------------------------------------------------------------------------- purity and order


class _FileAndNetworkWatch:
    """Audit events for opening files and sockets, recorded only while watching."""

    watched = ("open", "os.open", "socket.connect", "socket.__new__", "subprocess.Popen", "os.listdir", "os.scandir")

    def __init__(self):
        self.active = False
        self.seen: list[tuple[str, tuple]] = []
        sys.addaudithook(self)  # hooks cannot be removed: this one is inert unless active

    def __call__(self, event: str, args: tuple) -> None:
        if self.active and event in self.watched:
            self.seen.append((event, args))


_WATCHES: list[_FileAndNetworkWatch] = []


def io_watch() -> _FileAndNetworkWatch:
    """One watch per process, installed only when a test asks for it."""
    if not _WATCHES:
        _WATCHES.append(_FileAndNetworkWatch())
    return _WATCHES[0]


def test_planner_does_no_io_on_a_state_never_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    batch, gone, pending = spec("acme/q1"), spec("acme/gone"), spec("globex/p")
    state = state_of(
        {gone.address: recorded(gone), "acme/q1": recorded(batch, name="Old")},
        pending={pending.address: intent_for(pending)},
    )
    everything = desired(batch, spec("acme/new"), pending)
    watch = io_watch()
    watch.seen.clear()
    watch.active = True
    try:
        plan = make_plan(everything, state, NOW, observed={BATCH_ID: live(batch)}, replace=[])
    finally:
        watch.active = False
    assert watch.seen == []
    assert list(tmp_path.iterdir()) == []
    assert plan.changes  # it did plan something


def test_the_watch_sees_file_access_so_the_no_io_test_can_fail(tmp_path):
    watch = io_watch()
    watch.seen.clear()
    watch.active = True
    try:
        read_state(tmp_path / "absent.json")
    finally:
        watch.active = False
    assert any(event == "open" for event, _ in watch.seen)


def test_changes_are_sorted_by_address_and_planning_is_deterministic():
    specs = [spec("globex/z"), spec("acme/b"), spec("globex/a", name="renamed"), spec("acme/a")]
    undeclared_pending = spec("acme/c")
    state = state_of(
        {"globex/a": recorded(spec("globex/a"))}, pending={undeclared_pending.address: intent_for(undeclared_pending)}
    )
    first = make_plan(desired(*specs), state, NOW)
    again = make_plan(desired(*reversed(specs)), state, NOW)
    assert [c.address for c in first.changes] == ["acme/a", "acme/b", "acme/c", "globex/a", "globex/z"]
    assert first == again


def test_warnings_and_usage_rows_do_not_depend_on_state_order():
    a, b = spec("acme/a"), spec("acme/b")
    forward = state_of({"acme/a": recorded(a, "b-a"), "acme/b": recorded(b, "b-b")})
    backward = state_of({"acme/b": recorded(b, "b-b"), "acme/a": recorded(a, "b-a")})
    observed = {"b-a": live(a, "b-a"), "b-b": live(b, "b-b")}
    assert (
        make_plan(desired(), forward, NOW, observed=observed).info
        == make_plan(desired(), backward, NOW, observed=observed).info
    )
    assert make_plan(desired(), forward, NOW).warnings == make_plan(desired(), backward, NOW).warnings


# --------------------------------------------------------------------------- the plan command


def record_everything(manifest, state_path) -> None:
    """A state in which every declared batch is recorded as declared: the next plan has nothing to do."""
    declared = load([manifest])
    resources = {
        address: Resource(
            batch_id=f"b0000000-0000-4000-8000-{index:012d}", client_id=batch.client_id, attributes=batch.attributes()
        )
        for index, (address, batch) in enumerate(declared.batches.items())
    }
    write_snapshot(state_path, State(resources=resources))


def test_plan_lists_creates_and_update_before_to_after_and_exits_0(cli, write_manifest, tmp_path):
    state = init_state(tmp_path / "state.json")
    record_everything(write_manifest(two_client_manifest(acme_name="Acme Q1"), "applied-earlier.yaml"), state)
    manifest = write_manifest(two_client_manifest(acme_name="Acme Q1 2026"))
    result = cli("plan", manifest, "--state", state, "--no-color")
    assert result.exit_code == 0, result.output
    assert "~ name" in result.output and '"Acme Q1" -> "Acme Q1 2026"' in result.output
    assert "Plan: 0 to create, 1 to update, 0 blocked, 2 unchanged." in result.output


def test_plan_with_nothing_to_do_says_no_changes(cli, write_manifest, tmp_path):
    manifest = write_manifest(two_client_manifest())
    state = init_state(tmp_path / "state.json")
    record_everything(manifest, state)
    result = cli("plan", manifest, "--state", state, "--no-color")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "No changes. Your credit batches match the manifests."


def test_detailed_exitcode_is_2_with_changes_and_0_without(cli, write_manifest, tmp_path):
    manifest = write_manifest(two_client_manifest())
    state = init_state(tmp_path / "state.json")
    with_changes = cli("plan", manifest, "--state", state, "--detailed-exitcode")
    assert with_changes.exit_code == 2, with_changes.output
    assert "Plan: 3 to create" in with_changes.output
    record_everything(manifest, state)
    without = cli("plan", manifest, "--state", state, "--detailed-exitcode")
    assert without.exit_code == 0, without.output
    assert "No changes" in without.output


def run_on_terminal(*args: str, timeout: float = 60) -> tuple[int, str]:
    """`python -m provisioner ARGS` with stdout on a pseudo-terminal, as a user at a shell sees it."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "provisioner", *map(str, args)],
        stdout=terminal,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    process.stderr.close()
    return process.wait(timeout=timeout), b"".join(chunks).decode("utf-8")


def test_colour_on_a_terminal_and_none_with_no_color(write_manifest, tmp_path):
    manifest = write_manifest(two_client_manifest())
    state = init_state(tmp_path / "state.json")
    code, coloured = run_on_terminal("plan", manifest, "--state", state)
    assert code == 0
    assert ANSI.search(coloured), coloured
    code, plain = run_on_terminal("plan", manifest, "--state", state, "--no-color")
    assert code == 0
    assert "+ batch" in plain and "Plan: 3 to create" in plain
    assert not ANSI.search(plain), plain
