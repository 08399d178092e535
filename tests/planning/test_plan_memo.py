"""The plan memo: a plan that reuses the last plan's parts is the plan made from scratch.

The property test walks a tree through edits, state changes and the clock passing expiries,
planning each time with the memo and from scratch (load, make_plan, render), and requires
the same plan and the same text. The CLI tests check what is reused and what is not.
"""

from __future__ import annotations

import json
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import init_state
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioner.core.models import Intent, Policy, Resource, State
from provisioner.manifest import fast_reader
from provisioner.manifest.cache import ManifestCache
from provisioner.manifest.loader import read_declarations
from provisioner.planning import plan_memo, planner
from provisioner.planning.plan_memo import PlanMemo
from provisioner.planning.planner import make_plan
from provisioner.render.text import render_text

NAMESPACE = uuid.UUID("3c1b2a4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d")
NOW = datetime(2026, 6, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
# Expiries around NOW, so that moving the clock makes creates blocked.
EXPIRIES = ["2026-06-01T12:00:00.123Z", "2026-06-01T12:00:00.124Z", "2026-05-01T00:00:00Z", "2027-01-01T00:00:00Z"]
CLIENTS = ["a", "a-b", "a.b", "a0", "b"]  # keys that sort around "/"


def client_id(client: str) -> str:
    return str(uuid.uuid5(NAMESPACE, client))


def batch_text(key: str, balance: int, expiry: str | None, name: str | None) -> list[str]:
    lines = [f"      {key}:", f"        startingBalance: {balance}"]
    if expiry is not None:
        lines.append(f"        expiresOn: {expiry}")
    if name is not None:
        lines.append(f"        name: {name}")
    return lines


BATCHES = st.dictionaries(
    st.sampled_from(["q1", "q2", "q3"]),
    st.tuples(
        st.sampled_from([0, 10, 600, 2_000_000]),
        st.sampled_from([None, *EXPIRIES]),
        st.sampled_from([None, "Launch", "Second"]),
    ),
    max_size=3,
)


def file_text(clients: dict[str, dict]) -> str:
    lines = ["clients:"]
    for client, batches in clients.items():
        lines += [f"  {client}:", f"    id: {client_id(client)}", "    batches:"]
        for key, (balance, expiry, name) in sorted(batches.items()):
            lines += batch_text(key, balance, expiry, name)
    return "\n".join(lines) + "\n"


@st.composite
def trees(draw) -> list[dict[str, dict]]:
    """Two or three files, each client in one of them."""
    files: list[dict[str, dict]] = [{} for _ in range(draw(st.integers(2, 3)))]
    for client in draw(st.lists(st.sampled_from(CLIENTS), unique=True, min_size=1)):
        files[draw(st.integers(0, len(files) - 1))][client] = draw(BATCHES)
    return files


ADDRESSES = st.tuples(st.sampled_from([*CLIENTS, "gone"]), st.sampled_from(["q1", "q2", "q9"]))


@st.composite
def states(draw) -> State:
    """Recorded batches (as declared, renamed, of another balance), interrupted creates, anywhere."""
    resources, pending = {}, {}
    for client, key in draw(st.lists(ADDRESSES, unique=True, max_size=5)):
        attributes = {
            "clientId": client_id(client),
            "name": draw(st.sampled_from([key, "Launch", "Old"])),
            "startingBalance": draw(st.sampled_from([0, 10, 600])),
        }
        if draw(st.booleans()):
            attributes["expiresOn"] = draw(st.sampled_from(EXPIRIES[2:]))
        resources[f"{client}/{key}"] = Resource(
            batch_id=str(uuid.uuid5(NAMESPACE, f"{client}/{key}")), client_id=client_id(client), attributes=attributes
        )
    for client, key in draw(st.lists(ADDRESSES, unique=True, max_size=2)):
        attributes = {"clientId": client_id(client), "name": key, "startingBalance": 10}
        pending[f"{client}/{key}"] = Intent(
            address=f"{client}/{key}",
            client_id=client_id(client),
            attributes=attributes,
            digest="d" * 64,
            at="2026-05-31T10:00:00.000Z",
        )
    return State(resources=resources, pending=pending)


STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("edit"), trees()),
        st.tuples(st.just("state"), states()),
        st.tuples(st.just("clock"), st.sampled_from([timedelta(0), timedelta(microseconds=900), timedelta(days=400)])),
        st.tuples(st.just("policy"), st.sampled_from([Policy(), Policy(max_batch_credits=500, max_creates=2)])),
    ),
    min_size=1,
    max_size=6,
)


def write_tree(directory: Path, files: list[dict[str, dict]]) -> None:
    for old in directory.glob("*.yaml"):
        old.unlink()
    for number, clients in enumerate(files):
        if clients:
            (directory / f"m{number}.yaml").write_text(file_text(clients))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(first=trees(), state=states(), steps=STEPS)
def test_a_plan_with_the_memo_is_the_plan_from_scratch_whatever_changes_between_plans(
    tmp_path_factory, first, state, steps
):
    root = tmp_path_factory.mktemp("tree")
    manifests = root / "manifests"
    manifests.mkdir()
    write_tree(manifests, first)
    cache, memo = ManifestCache(root / "cache"), PlanMemo(root / "cache")
    now, policy = NOW, Policy()
    for kind, value in [("start", None), *steps]:
        if kind == "edit":
            write_tree(manifests, value)
        elif kind == "state":
            state = value
        elif kind == "clock":
            now += value
        elif kind == "policy":
            policy = value
        if not list(manifests.glob("*.yaml")):
            continue
        declarations = read_declarations([manifests], cache)
        assert plan_memo.usable(declarations, state)
        reused = plan_memo.plan(declarations, state, now, policy, memo)
        scratch = make_plan(read_declarations([manifests]).desired(), state, now, policy=policy)
        assert reused == scratch
        assert render_text(reused) == render_text(scratch)


# --------------------------------------------------------------------------- through the CLI


def client_file(number: int, balance: int = 1000) -> str:
    client = f"client-{number:03d}"
    return file_text(
        {client: {"q1": (balance, "2031-03-31T23:59:59+02:00", f"Client {number}"), "q2": (balance * 2, None, None)}}
    )


@pytest.fixture
def tree(tmp_path):
    directory = tmp_path / "manifests"
    directory.mkdir()
    for number in range(30):
        (directory / f"client-{number:03d}.yaml").write_text(client_file(number))
    return directory


@pytest.fixture
def planning(tmp_path, monkeypatch, cli):
    """plan(*options) -> the CLI's output; ``plan.planned``: the clients whose parts were not reused."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    state = init_state(tmp_path / "state.json")
    planned: list[str] = []  # the clients whose parts were not reused
    original = plan_memo._Planner.add_planned

    def counting(self, file, client_key, *rest):
        planned.append(client_key)
        return original(self, file, client_key, *rest)

    monkeypatch.setattr(plan_memo._Planner, "add_planned", counting)

    def plan(*options, manifests=None):
        planned.clear()
        result = cli("plan", manifests or tmp_path / "manifests", "--state", state, *options)
        refused = "Error: this plan cannot be applied: " in result.stderr  # printed whole, then refused
        assert result.exit_code == (1 if refused else 0), result.output
        return result.output

    plan.planned = planned
    plan.state = state
    return plan


def test_a_second_plan_reuses_every_part_and_prints_the_same(tree, planning):
    cold = planning("--no-cache")
    assert planning() == cold
    assert len(planning.planned) == 30
    assert planning() == cold
    assert planning.planned == []


def test_only_the_clients_of_a_changed_file_are_planned_again(tree, planning, monkeypatch):
    planning()
    (tree / "client-007.yaml").write_text(client_file(7, balance=4242))
    fast = []
    monkeypatch.setattr(fast_reader, "read", lambda data, read=fast_reader.read: fast.append(1) or read(data))
    warm = planning()
    assert planning.planned == ["client-007"] and len(fast) == 1
    assert warm == planning("--no-cache")
    assert "+ startingBalance = 4242" in warm


def test_a_client_whose_recorded_batches_changed_is_planned_again(tree, planning):
    planning()
    state = json.loads(planning.state.read_text())
    state["resources"]["client-003/q2"] = {
        "batch_id": "b-1",
        "client_id": str(uuid.uuid5(NAMESPACE, "client-003")),
        "remote": {},
        "attributes": {"clientId": str(uuid.uuid5(NAMESPACE, "client-003")), "name": "q2", "startingBalance": 2000},
    }
    planning.state.write_text(json.dumps(state))
    warm = planning()
    assert planning.planned == ["client-003"]
    assert warm == planning("--no-cache")


def test_an_expiry_passing_makes_its_client_planned_again(tree, planning, monkeypatch):
    planning()
    later = datetime(2031, 4, 1, tzinfo=timezone.utc)  # client q1 batches expire 2031-03-31
    monkeypatch.setattr(sys.modules["provisioner.cli.options"], "now_utc", lambda: later)
    warm = planning()
    assert sorted(planning.planned) == [f"client-{n:03d}" for n in range(30)]
    assert "is in the past" in warm and warm == planning("--no-cache")
    assert planning("--at", "2031-03-01T00:00:00Z") == planning("--at", "2031-03-01T00:00:00Z", "--no-cache")


def test_a_guardrail_on_one_batch_of_a_reused_part_is_the_same(tree, planning):
    planning()
    limited = planning("--max-batch-credits", "1500")
    assert planning.planned == []
    assert limited == planning("--max-batch-credits", "1500", "--no-cache")
    assert "client-000/q2 issues 2,000 credits, more than the largest batch allowed (1,500" in limited


def test_formats_colours_and_saved_plans_take_the_general_path(tree, planning, tmp_path):
    planning()
    for options in (["--format", "json"], ["--format", "markdown"], ["--out", str(tmp_path / "saved.plan")]):
        general = planning(*options)
        assert planning.planned == []  # the memo was not asked
        assert general == planning(*options, "--no-cache")


@pytest.mark.parametrize(
    "damage",
    [lambda raw: raw[: len(raw) // 2], lambda raw: raw.replace(b"Client 1", b"Client 9"), lambda raw: b"garbage"],
)
def test_a_damaged_memo_is_ignored_and_written_again(tree, planning, tmp_path, damage):
    cold = planning()
    (memo_file,) = (tmp_path / "xdg" / "provisioner").glob("plans-*.cache")
    memo_file.write_bytes(damage(memo_file.read_bytes()))
    assert planning() == cold
    assert len(planning.planned) == 30
    assert planning() == cold
    assert planning.planned == []


def test_the_memo_grows_by_appending_and_is_written_again_when_mostly_stale(tree, planning, tmp_path):
    planning()
    (memo_file,) = (tmp_path / "xdg" / "provisioner").glob("plans-*.cache")
    size = memo_file.stat().st_size
    (tree / "client-001.yaml").write_text(client_file(1, balance=7))
    planning()
    assert size < memo_file.stat().st_size < size * 1.2  # one part appended
    for number in range(30):
        (tree / f"client-{number:03d}.yaml").write_text(client_file(number, balance=9))
    planning()
    assert memo_file.stat().st_size < size * 1.2  # written again with the parts in use only
    warm = planning()
    assert planning.planned == [] and warm == planning("--no-cache")


def test_another_version_of_the_tool_does_not_use_the_memo(tree, planning, monkeypatch):
    planning()
    monkeypatch.setattr(plan_memo, "__version__", "99.0")
    warm = planning()
    assert len(planning.planned) == 30 and warm == planning("--no-cache")


def test_a_state_with_grant_periods_takes_the_general_path(tree, planning):
    planning()
    state = json.loads(planning.state.read_text())
    state["resources"]["client-001/monthly@2026-01"] = {
        "batch_id": "b-2",
        "client_id": str(uuid.uuid5(NAMESPACE, "client-001")),
        "remote": {},
        "attributes": {"clientId": str(uuid.uuid5(NAMESPACE, "client-001")), "name": "m", "startingBalance": 5},
    }
    planning.state.write_text(json.dumps(state))
    warm = planning()
    assert planning.planned == [] and "grant client-001/monthly is no longer declared" in warm
    assert warm == planning("--no-cache")


def test_the_planner_is_asked_only_for_the_clients_it_must_plan(tree, planning, monkeypatch):
    """The memo calls the planner itself (no second planner): one make_plan per batch of misses."""
    calls = []
    monkeypatch.setattr(plan_memo, "make_plan", lambda *a, **k: calls.append(1) or planner.make_plan(*a, **k))
    planning()
    assert len(calls) == 1
    calls.clear()
    planning()
    assert calls == []


def test_a_tree_that_declares_a_grant_takes_the_general_path(tree, planning):
    planning()
    (tree / "grant.yaml").write_text(f"""\
clients:
  granted:
    id: {uuid.uuid5(NAMESPACE, "granted")}
    grants:
      monthly:
        every: month
        from: 2026-01-01
        startingBalance: 100
""")
    warm = planning("--at", "2026-03-15T00:00:00Z")
    assert planning.planned == [] and "granted/monthly@2026-03" in warm
    assert warm == planning("--at", "2026-03-15T00:00:00Z", "--no-cache")
