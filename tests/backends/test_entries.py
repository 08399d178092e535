"""The journal's entries: each kind written as provisioner has always written it, and a journal an
earlier release wrote read back whole, its events with it."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from conftest import run_subprocess

from provisioner.backends.entries import parse_entry
from provisioner.backends.file import FileBackend, FileWriter, journal_path, read_state
from provisioner.core.audit_trail import FORCE_UNLOCK, Note
from provisioner.core.models import Intent, Resource

# Written by the release before the entries were typed, with the writer's calls below and the clock at AT.
EARLIER_RUN = [
    '{"intent":{"address":"acme/q1","at":"2026-12-01T09:29:59.000Z","attributes":{"name":"Q1","startingBalance":100},"client_id":"c1","digest":"d1"},"op":"intent"}',
    '{"address":"acme/q1","events":[{"action":"create","actor":"ci","address":"acme/q1","at":"2026-12-01T09:30:00.000Z","batch_id":"B-1","clock":"api","credits":100,"digest":"cfe403acb3be8513b202966b3a6b5a5a015ea5f7e9e94a66ef68c7974c8d2644","prev":"0000000000000000000000000000000000000000000000000000000000000000","seq":1}],"op":"record","resource":{"attributes":{"name":"Q1","startingBalance":100},"batch_id":"B-1","client_id":"c1","remote":{}}}',
    '{"intent":{"address":"acme/q2","at":"2026-12-01T09:29:59.000Z","attributes":{"name":"Q2"},"client_id":"c1","digest":"d2","server_at":"2026-12-01T09:30:00.000Z"},"op":"intent"}',
    '{"address":"acme/q2","op":"clear"}',
    '{"events":[{"action":"generate","actor":"ci","address":"acme/q3","at":"2026-12-01T09:30:00.000Z","batch_id":"B-3","clock":"api","credits":300,"digest":"f204ee49e63e4053d885acf51d7ab1b018e5bafae8916d99d250fc6f9c4b584f","prev":"cfe403acb3be8513b202966b3a6b5a5a015ea5f7e9e94a66ef68c7974c8d2644","seq":2},{"action":"generate","actor":"ci","address":"acme/q4","at":"2026-12-01T09:30:00.000Z","batch_id":"B-4","clock":"api","credits":400,"digest":"9ab047a6487d16b08e1bf533d172b547811c438e5e254f259aa8ec89720027d9","prev":"f204ee49e63e4053d885acf51d7ab1b018e5bafae8916d99d250fc6f9c4b584f","seq":3}],"instance":"https://x.example","op":"record_all","resources":{"acme/q3":{"attributes":{"name":"Q3","startingBalance":300},"batch_id":"B-3","client_id":"c1","remote":{}},"acme/q4":{"attributes":{"name":"Q4","startingBalance":400},"batch_id":"B-4","client_id":"c1","remote":{}}}}',
    '{"events":[{"action":"state-mv","actor":"ci","address":"acme/q5","at":"2026-12-01T09:30:00.000Z","batch_id":"B-3","clock":"api","credits":300,"digest":"f953fd155b0eef6d11964af050d3c3721e5a7703b451f4de9d61760ad8090932","from_address":"acme/q3","prev":"9ab047a6487d16b08e1bf533d172b547811c438e5e254f259aa8ec89720027d9","seq":4}],"from":"acme/q3","op":"move","to":"acme/q5"}',
    '{"address":"acme/q4","events":[{"action":"state-rm","actor":"ci","address":"acme/q4","at":"2026-12-01T09:30:00.000Z","batch_id":"B-4","clock":"api","credits":400,"digest":"f344f4beccd69a1a3bca0469cc242588764d2cd359175cb8c32396451d7d7d73","prev":"f953fd155b0eef6d11964af050d3c3721e5a7703b451f4de9d61760ad8090932","seq":5}],"op":"forget"}',
    '{"events":[{"action":"force-unlock","actor":"ci","at":"2026-12-01T09:30:00.000Z","clock":"api","detail":"lock x","digest":"769f1e18302357cf1837d44f673f9e1181f07d57b23b6af6aa39b56a3832b256","prev":"f344f4beccd69a1a3bca0469cc242588764d2cd359175cb8c32396451d7d7d73","seq":6}],"op":"event"}',
]
EARLIER_BINDING = [
    '{"name":"https://x.example","op":"instance"}',
    '{"events":[{"action":"generate","actor":"ci","address":"acme/q3","at":"2026-12-01T09:30:00.000Z","batch_id":"B-3","clock":"api","credits":300,"digest":"8ec723f6d8b91fab5a64c41a7ad9462213f103401056afb5032402fa68f22e1c","prev":"0000000000000000000000000000000000000000000000000000000000000000","seq":1}],"op":"record_all","resources":{"acme/q3":{"attributes":{"name":"Q3","startingBalance":300},"batch_id":"B-3","client_id":"c1","remote":{}}}}',
]

AT = datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)
NEVER = 1e9


def batch(number: int) -> Resource:
    attributes = {"name": f"Q{number}", "startingBalance": 100 * number}
    return Resource(batch_id=f"B-{number}", client_id="c1", attributes=attributes)


def journaled(path) -> list[str]:
    """The journal's lines after its begin line."""
    return journal_path(path).read_text().splitlines()[1:]


def test_each_kind_of_change_is_journaled_byte_for_byte_as_before(tmp_path):
    run, binding = tmp_path / "run.json", tmp_path / "binding.json"
    for path in (run, binding):
        FileBackend(path).create()
    writer = FileWriter(run, checkpoint_seconds=NEVER)
    writer.attribute({"actor": "ci"}, server_clock=lambda: AT)
    attributes = {"name": "Q1", "startingBalance": 100}
    writer.record_intent(
        Intent(address="acme/q1", client_id="c1", attributes=attributes, digest="d1", at="2026-12-01T09:29:59.000Z")
    )
    writer.record("acme/q1", batch(1), action="create")
    writer.record_intent(
        Intent(
            address="acme/q2",
            client_id="c1",
            attributes={"name": "Q2"},
            digest="d2",
            at="2026-12-01T09:29:59.000Z",
            server_at="2026-12-01T09:30:00.000Z",
        )
    )
    writer.clear_intent("acme/q2")
    writer.record_all({"acme/q3": batch(3), "acme/q4": batch(4)}, instance="https://x.example")
    writer.move("acme/q3", "acme/q5")
    writer.forget("acme/q4")
    writer.record_event(Note(FORCE_UNLOCK, detail="lock x"))
    other = FileWriter(binding, checkpoint_seconds=NEVER)
    other.attribute({"actor": "ci"}, server_clock=lambda: AT)
    other.bind_instance("https://x.example")
    other.record_all({"acme/q3": batch(3)})

    assert journaled(run) == EARLIER_RUN
    assert journaled(binding) == EARLIER_BINDING


def test_a_journal_an_earlier_release_left_is_folded_in_with_its_events(tmp_path):
    path = tmp_path / "default.json"
    FileBackend(path).create()
    lineage = json.loads(path.read_text())["lineage"]
    begin = json.dumps({"op": "begin", "lineage": lineage, "serial": 0})
    journal_path(path).write_text("".join(line + "\n" for line in [begin, *EARLIER_RUN]))

    state = read_state(path)
    history = FileBackend(path).read_history()

    assert {address: resource.batch_id for address, resource in state.resources.items()} == {
        "acme/q1": "B-1",
        "acme/q5": "B-3",
    }
    assert state.pending == {} and state.instance == "https://x.example"
    assert [(event["seq"], event["action"]) for event in history] == [
        (1, "create"),
        (2, "generate"),
        (3, "generate"),
        (4, "state-mv"),
        (5, "state-rm"),
        (6, "force-unlock"),
    ]
    FileWriter(path).close()
    assert not journal_path(path).exists() and json.loads(path.read_text())["serial"] == 1
    verified = run_subprocess("log", "--verify", "--state", path)
    assert verified.returncode == 0, verified.stderr


def test_every_kind_of_line_reads_back_to_the_same_bytes():
    marks = ['{"lineage":"l","op":"begin","serial":3}', '{"op":"checkpoint","serial":4}']
    for line in [*marks, *EARLIER_RUN, *EARLIER_BINDING]:
        entry = parse_entry(json.loads(line))
        assert json.dumps(entry.to_json(), sort_keys=True, separators=(",", ":")) == line
