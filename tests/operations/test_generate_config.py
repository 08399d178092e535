"""import --generate-config-out: manifests and state from the batches an instance already has.

Against the sandbox (five batches a page, so that every client here takes several pages), on a state
file and on PostgreSQL, in-process and as real processes. The pure parts (keys from names, the
manifest's text) are tested with plain values at the end.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import yaml
from conftest import ACCOUNT_ID, ACME_ID, GLOBEX_ID, call_api, run_subprocess

from provisioner.backends import StateError, open_backend
from provisioner.backends.file import FileBackend, backup_path, journal_path, read_state
from provisioner.core.models import Intent, Resource
from provisioner.manifest.loader import load
from provisioner.render.manifest_yaml import (
    Declaration,
    declaration,
    double_quoted,
    in_key_order,
    key_from_name,
    render_manifest,
    unique_keys,
)

INITECH_ID = "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
OTHER_ACCOUNT = "11111111-2222-4333-8444-555555555555"
FAST = ("--rate-limit", "0")


def batches_path(client_id: str) -> str:
    return f"/incoming/v2/clients/{client_id}/creditBatches"


def make(sandbox, client_id: str, **body) -> dict:
    return call_api(sandbox, "POST", batches_path(client_id), {"clientId": client_id, **body})


def listed(sandbox, client_id: str) -> list[dict]:
    found, page = [], 1
    while True:
        answer = call_api(sandbox, "GET", f"{batches_path(client_id)}?clientId={client_id}&page={page}")
        found += answer["creditBatches"]
        if not answer["pageInfo"]["hasMore"]:
            return found
        page += 1


@pytest.fixture
def instance(sandbox):
    """Batches made by hand: acme's twelve over three pages (twins, an empty name, names no key can be, one
    expired, one used up), all on one credit account; globex's on two accounts and none; initech none."""
    acme = {}
    for name in [
        "Acme Q1 2027",
        "Acme Q1 2027",
        "",
        "Ünïcode  Name!",
        "2027",
        "yes",
        "日本語",
        "acme-q1-2027-2",
        "Spring / Summer (2027)",
        "Acme Q1 2027",
    ]:
        acme.setdefault(name, []).append(
            make(
                sandbox,
                ACME_ID,
                name=name,
                startingBalance=100,
                creditAccountId=ACCOUNT_ID,
                expiresOn="2031-01-01T01:00:00+01:00",
            )
        )
    expired = make(
        sandbox,
        ACME_ID,
        name="Acme 2020",
        startingBalance=5,
        creditAccountId=ACCOUNT_ID,
        expiresOn="2020-06-30T23:59:59Z",
    )
    used_up = make(sandbox, ACME_ID, name="Acme trial", startingBalance=50, creditAccountId=ACCOUNT_ID)
    call_api(sandbox, "PUT", f"/incoming/v2/clients/creditBatches/{used_up['id']}", {"currentBalance": 0})
    globex = [
        make(sandbox, GLOBEX_ID, name="Starter", startingBalance=1200),
        make(sandbox, GLOBEX_ID, name="Certification", startingBalance=20000, creditAccountId=ACCOUNT_ID),
        make(sandbox, GLOBEX_ID, name="Partner", startingBalance=300, creditAccountId=OTHER_ACCOUNT),
    ]
    return {"acme": acme, "expired": expired, "used_up": used_up, "globex": globex}


@pytest.fixture(params=["file", "postgres"])
def state_at(request, tmp_path):
    """Where the state is (a file, or a PostgreSQL database), created empty by 'provisioner init'."""
    if request.param == "file":
        location = str(tmp_path / "state" / "default.json")
    else:
        location = request.getfixturevalue("pg_url")
    with open_backend(location) as backend:
        backend.create()
    return location


def read(location: str):
    with open_backend(location) as backend:
        return backend.read()


def generate(cli, out, state_at, *clients, extra=()):
    options = [item for client in clients for item in ("--client", client)]
    return cli("import", "--generate-config-out", out, *options, "--state", state_at, *FAST, *extra)


def refused(result, *phrases):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    message = result.output[result.output.index("Error: ") :]
    for phrase in phrases:
        assert phrase in message, message
    return message


def test_the_manifests_and_state_plan_no_changes_against_state_and_api(
    cli, api_env, sandbox, instance, tmp_path, state_at
):
    out = tmp_path / "generated"
    result = generate(cli, out, state_at, f"acme={ACME_ID}", f"globex={GLOBEX_ID.upper()}", f"initech={INITECH_ID}")
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in out.iterdir()) == [
        "acme.yaml",
        "globex.yaml",
        "initech.yaml",
        "manifest.schema.json",
    ]
    assert "Imported 15 batches of 3 clients" in result.output

    acme_text = (out / "acme.yaml").read_text()
    assert acme_text.splitlines()[0] == "# yaml-language-server: $schema=manifest.schema.json"
    acme = yaml.safe_load(acme_text)["clients"]["acme"]
    assert acme["id"] == ACME_ID and acme["creditAccountId"] == ACCOUNT_ID  # shared by all: the client's default
    assert sorted(acme["batches"]) == sorted(
        [
            "acme-q1-2027",
            "acme-q1-2027-3",
            "acme-q1-2027-4",
            "batch",
            "unicode-name",
            "2027",
            "yes",
            "batch-2",
            "acme-q1-2027-2",
            "spring-summer-2027",
            "acme-2020",
            "acme-trial",
        ]
    )
    # The oldest batch of a name keeps the plain key; a name whose own key is that of a later twin keeps it.
    twins = instance["acme"]["Acme Q1 2027"]
    first_twin, second_twin, third_twin = sorted(twins, key=lambda batch: (batch["createdAt"], batch["id"].lower()))
    recorded = read(state_at)
    ids = {address: resource.batch_id for address, resource in recorded.resources.items()}
    assert ids["acme/acme-q1-2027"] == first_twin["id"]
    assert ids["acme/acme-q1-2027-3"] == second_twin["id"]
    assert ids["acme/acme-q1-2027-4"] == third_twin["id"]
    assert ids["acme/acme-q1-2027-2"] == instance["acme"]["acme-q1-2027-2"][0]["id"]
    assert acme["batches"]["batch"]["name"] == ""  # kept verbatim
    assert acme["batches"]["batch-2"]["name"] == "日本語"
    assert acme["batches"]["2027"]["name"] == "2027"
    assert acme["batches"]["yes"] == {
        "name": "yes",
        "startingBalance": 100,
        "expiresOn": datetime(2031, 1, 1, tzinfo=timezone.utc),
    }
    assert '"2027":' in acme_text and '"yes":' in acme_text  # YAML 1.1 would read them as a number, a boolean
    assert "expiresOn: 2031-01-01T00:00:00.000Z" in acme_text  # the canonical form
    lines = acme_text.splitlines()
    assert any(line.strip().startswith("acme-2020:  # expired at 2020-06-30T23:59:59.000Z") for line in lines)
    assert any(line.strip().startswith("acme-trial:  # exhausted: 0 of 50 credits left") for line in lines)

    globex = yaml.safe_load((out / "globex.yaml").read_text())["clients"]["globex"]
    assert globex["id"] == GLOBEX_ID and "creditAccountId" not in globex  # canonical id; accounts differ
    assert globex["batches"]["starter"] == {"name": "Starter", "startingBalance": 1200}
    assert globex["batches"]["partner"]["creditAccountId"] == OTHER_ACCOUNT
    assert yaml.safe_load((out / "initech.yaml").read_text())["clients"] == {"initech": {"id": INITECH_ID}}

    assert len(recorded.resources) == 15 and not recorded.pending and recorded.instance is not None
    assert {resource.batch_id for resource in recorded.resources.values()} == {
        batch["id"] for client in (ACME_ID, GLOBEX_ID) for batch in listed(sandbox, client)
    }

    assert cli("validate", out).exit_code == 0
    for refresh in ((), ("--refresh",)):
        plan = cli("plan", out, "--state", state_at, *FAST, *refresh, "--detailed-exitcode")
        assert plan.exit_code == 0, plan.output
        assert "No changes." in plan.output
    before = len(listed(sandbox, ACME_ID)) + len(listed(sandbox, GLOBEX_ID))
    apply = cli("apply", out, "--state", state_at, *FAST, "--refresh", "--auto-approve")
    assert apply.exit_code == 0 and "No changes." in apply.output
    assert len(listed(sandbox, ACME_ID)) + len(listed(sandbox, GLOBEX_ID)) == before


def test_a_second_run_over_the_same_clients_changes_nothing_and_says_so(cli, api_env, instance, tmp_path, state_at):
    assert generate(cli, tmp_path / "first", state_at, f"acme={ACME_ID}").exit_code == 0
    before = read(state_at)

    again = generate(cli, tmp_path / "second", state_at, f"acme={ACME_ID}")
    assert again.exit_code == 0, again.output
    assert "No changes." in again.output and "nothing was written" in again.output
    assert (
        "Left out: 12 batches of acme recorded already (acme/2027, acme/acme-2020, acme/acme-q1-2027 and 9 more)"
        in again.output
    )
    assert not (tmp_path / "second").exists()
    after = read(state_at)
    assert after.serial == before.serial and after.resources == before.resources


def test_a_batch_recorded_under_another_address_is_left_out_and_named(
    cli, api_env, sandbox, instance, tmp_path, state_at, write_manifest
):
    starter = instance["globex"][0]
    manifest = write_manifest(
        f"clients:\n  legacy:\n    id: {GLOBEX_ID}\n    batches:\n      old:\n"
        "        name: Starter\n        startingBalance: 1200\n"
    )
    assert cli("import", "legacy/old", starter["id"], manifest, "--state", state_at, *FAST).exit_code == 0

    result = generate(cli, tmp_path / "out", state_at, f"globex={GLOBEX_ID}")
    assert result.exit_code == 0, result.output
    assert "Left out: 1 batch of globex recorded already (legacy/old)" in result.output
    assert "So globex is declared in another manifest too" in result.output
    globex = yaml.safe_load((tmp_path / "out" / "globex.yaml").read_text())["clients"]["globex"]
    assert sorted(globex["batches"]) == ["certification", "partner"]
    recorded = read(state_at)
    assert sorted(recorded.resources) == ["globex/certification", "globex/partner", "legacy/old"]


def test_names_no_manifest_can_hold_are_left_out_and_named(cli, api_env, sandbox, tmp_path, state_at):
    padded = make(sandbox, INITECH_ID, name=" padded ", startingBalance=1)
    two_lines = make(sandbox, INITECH_ID, name="two\nlines", startingBalance=1)
    good = make(sandbox, INITECH_ID, name="Tab\u2028free", startingBalance=1)
    result = generate(cli, tmp_path / "out", state_at, f"initech={INITECH_ID}")
    assert result.exit_code == 0, result.output
    assert f'Left out: batch {padded["id"]} of initech: its name " padded " starts or ends with spaces' in result.output
    assert f'Left out: batch {two_lines["id"]} of initech: its name "two\\nlines" has a line break' in result.output
    assert f"'provisioner import initech/BATCH_KEY {padded['id']} PATHS...'" in result.output
    assert [resource.batch_id for resource in read(state_at).resources.values()] == [good["id"]]
    text = (tmp_path / "out" / "initech.yaml").read_text()
    assert '"Tab\\u2028free"' in text  # a line separator YAML would fold, written as an escape
    assert cli("plan", tmp_path / "out", "--state", state_at, *FAST, "--refresh").output.count("No changes.") == 1


# --- refusals: one message, nothing written ------------------------------------------------------------


def assert_nothing_written(state_at, out, serial=0):
    assert read(state_at).serial == serial and not read(state_at).resources
    assert not out.exists() or not any(path.suffix in (".yaml", ".tmp") for path in out.iterdir())


def test_a_file_that_exists_is_refused(cli, api_env, instance, tmp_path, state_at):
    out = tmp_path / "out"
    out.mkdir()
    (out / "globex.yaml").write_text("# mine\n")
    result = generate(cli, out, state_at, f"acme={ACME_ID}", f"globex={GLOBEX_ID}")
    refused(result, f"{out / 'globex.yaml'} exists already", "Nothing was written")
    assert (out / "globex.yaml").read_text() == "# mine\n"
    assert sorted(path.name for path in out.iterdir()) == ["globex.yaml"]
    assert read(state_at).serial == 0 and not read(state_at).resources


def test_a_client_declared_in_the_manifests_given_is_refused(
    cli, api_env, instance, tmp_path, state_at, write_manifest
):
    manifest = write_manifest(f"clients:\n  globex-corp:\n    id: {GLOBEX_ID}\n")
    out = tmp_path / "out"
    by_id = cli(
        "import",
        "--generate-config-out",
        out,
        "--client",
        f"globex={GLOBEX_ID}",
        manifest.parent,
        "--state",
        state_at,
        *FAST,
    )
    refused(by_id, f"client globex ({GLOBEX_ID}) is declared already, as globex-corp", "m.yaml:2")
    by_key = cli(
        "import",
        "--generate-config-out",
        out,
        "--client",
        f"globex-corp={ACME_ID}",
        manifest,
        "--state",
        state_at,
        *FAST,
    )
    refused(by_key, "declared already, as globex-corp")
    assert_nothing_written(state_at, out)


@pytest.mark.parametrize(
    "clients, message",
    [
        (["acme"], "--client 'acme': expected KEY=CLIENT_ID"),
        (["Acme=" + ACME_ID], "the client key 'Acme' is not a key; a key is 1-64 characters"),
        (["acme=not-a-uuid"], "'not-a-uuid' is not a client id (a UUID)"),
        ([f"acme={ACME_ID}", f"acme={GLOBEX_ID}"], "the client key acme is given twice"),
        ([f"acme={ACME_ID}", f"other={ACME_ID.upper()}"], f"the client id {ACME_ID} is given twice"),
        ([], "no clients to import"),
    ],
)
def test_clients_given_wrong_are_refused(cli, api_env, tmp_path, state_at, clients, message):
    result = generate(cli, tmp_path / "out", state_at, *clients)
    refused(result, message)
    assert_nothing_written(state_at, tmp_path / "out")


def test_a_clients_file(cli, api_env, instance, tmp_path, state_at):
    listing = tmp_path / "clients.csv"
    listing.write_text(f"key,id\n# the two of them\nacme,{ACME_ID}\n\nglobex , {GLOBEX_ID}\n")
    result = cli("import", "--generate-config-out", tmp_path / "out", "--clients", listing, "--state", state_at, *FAST)
    assert result.exit_code == 0, result.output
    assert min(read(state_at).resources).startswith("acme/") and len(read(state_at).resources) == 15

    listing.write_text(f"acme,{ACME_ID}\nglobex\n")
    refused(
        cli("import", "--generate-config-out", tmp_path / "again", "--clients", listing, "--state", state_at),
        f"{listing}:2: expected two columns, key and id",
    )


def test_an_open_create_for_a_client_is_refused(cli, api_env, instance, tmp_path, state_at):
    intent = Intent(
        address="acme/new",
        client_id=ACME_ID,
        attributes={"clientId": ACME_ID, "startingBalance": 1},
        digest="x",
        at="2026-01-01T00:00:00.000Z",
    )
    with open_backend(state_at) as backend, backend.writing("test") as writer:
        writer.record_intent(intent)
    serial = read(state_at).serial
    result = generate(cli, tmp_path / "out", state_at, f"acme={ACME_ID}")
    refused(result, "an interrupted apply was creating acme/new", "Run 'provisioner apply' first")
    assert read(state_at).serial == serial and not read(state_at).resources
    assert not (tmp_path / "out").exists()


def test_the_one_batch_form_still_works_and_the_forms_do_not_mix(
    cli, api_env, sandbox, tmp_path, state_at, write_manifest
):
    batch = make(sandbox, GLOBEX_ID, name="Starter", startingBalance=1200)
    manifest = write_manifest(
        f"clients:\n  globex:\n    id: {GLOBEX_ID}\n    batches:\n      starter:\n"
        "        name: Starter\n        startingBalance: 1200\n"
    )
    assert cli("import", "globex/starter", batch["id"], manifest, "--state", state_at, *FAST).exit_code == 0
    assert "Missing argument 'PATHS...'" in cli("import", "globex/starter", batch["id"], "--state", state_at).output
    mixed = cli("import", "globex/starter", batch["id"], manifest, "--client", f"a={ACME_ID}", "--state", state_at)
    assert mixed.exit_code == 1 and "--client and --clients go with --generate-config-out" in mixed.output


def test_as_a_real_process_with_its_progress(api_env, instance, tmp_path):
    state = tmp_path / "state.json"
    FileBackend(state).create()
    out = tmp_path / "out"
    result = run_subprocess(
        "import", "--generate-config-out", out, "--client", f"acme={ACME_ID}", "--state", state, *FAST, env=api_env
    )
    assert result.returncode == 0, result.stderr
    assert "listing the batches of 1 client(s)" in result.stderr and "12 batches found" in result.stderr
    assert f"Wrote {out / 'acme.yaml'} (12 batches)." in result.stdout
    assert f"Next: provisioner plan {out} --state {state}" in result.stdout
    plan = run_subprocess("plan", out, "--state", state, "--refresh", *FAST, env=api_env)
    assert plan.returncode == 0 and "No changes." in plan.stdout, plan.stdout + plan.stderr
    assert not journal_path(state).exists() and len(read_state(state).resources) == 12


# --- the state write: one step, all or nothing ------------------------------------------------------------


def resources(count: int) -> dict[str, Resource]:
    return {
        f"acme/b{number}": Resource(
            batch_id=f"id-{number}",
            client_id=ACME_ID,
            attributes={"clientId": ACME_ID, "name": "", "startingBalance": number},
        )
        for number in range(count)
    }


def test_record_all_on_a_state_file_is_one_new_snapshot(tmp_path):
    path = tmp_path / "state.json"
    backend = FileBackend(path)
    backend.create()
    with backend.writing("import") as writer:
        writer.record_all(resources(300), instance="https://one.example")
        assert not journal_path(path).exists()  # written once, as the snapshot: renamed into place whole
        state = read_state(path)
        assert len(state.resources) == 300 and state.instance == "https://one.example" and state.serial == 1
        assert "id-299" in writer.claimed_ids()
    assert read_state(path).serial == 1  # nothing more to checkpoint
    with backend.writing("import") as writer:
        writer.record_all(resources(3), instance="https://one.example")  # recorded as they are already
    assert read_state(path).serial == 1
    assert json.loads(backup_path(path).read_text())["resources"] == {}  # the state before it, as after any write


def test_record_all_after_changes_journaled_is_one_journal_line_that_a_crash_keeps_or_drops(tmp_path):
    path = tmp_path / "state.json"
    backend = FileBackend(path)
    backend.create()
    writer = backend.open_writer()
    writer.record("acme/first", Resource(batch_id="first", client_id=ACME_ID, attributes={}))
    writer.record_all(resources(300), instance="https://one.example")
    lines = journal_path(path).read_bytes().splitlines(keepends=True)
    assert [json.loads(line)["op"] for line in lines] == ["begin", "record", "record_all"]
    state = read_state(path)  # journaled: a reader sees all of them, and the instance
    assert len(state.resources) == 301 and state.instance == "https://one.example"

    journal_path(path).write_bytes(b"".join(lines[:2]) + lines[2][: len(lines[2]) // 2])  # a crash in mid-write
    assert list(read_state(path).resources) == ["acme/first"] and read_state(path).instance is None  # none of it
    journal_path(path).write_bytes(b"".join(lines))
    writer.close()
    assert not journal_path(path).exists() and read_state(path).serial == 1 and len(read_state(path).resources) == 301


def test_record_all_on_postgres_is_one_transaction(pg_url):
    with open_backend(pg_url) as backend:
        backend.create()
        with backend.writing("import") as writer:
            writer.record_all(resources(500), instance="https://one.example")
            claimed = writer.claimed_ids()
            assert "id-499" in claimed
    recorded = read(pg_url)
    assert len(recorded.resources) == 500 and recorded.serial == 1 and recorded.instance == "https://one.example"
    assert recorded.resources["acme/b7"].attributes["startingBalance"] == 7
    with open_backend(pg_url) as backend, backend.writing("import") as writer:
        with pytest.raises(StateError, match="records the batches of https://one.example"):
            writer.record_all(
                {"acme/other": Resource(batch_id="x", client_id=ACME_ID, attributes={})}, instance="https://two.example"
            )
    assert read(pg_url).resources.keys() == recorded.resources.keys() and read(pg_url).serial == 1


# --- the pure parts ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, key",
    [
        ("Acme Q1 2027", "acme-q1-2027"),
        ("  Spring / Summer (2027)  ", "spring-summer-2027"),
        ("Ünïcode Ça", "unicode-ca"),
        ("v1.2_final", "v1.2_final"),
        ("...hidden", "hidden"),
        ("", "batch"),
        ("日本語", "batch"),
        ("---", "batch"),
        ("x" * 70 + "-y", "x" * 64),
    ],
)
def test_keys_from_names(name, key):
    assert key_from_name(name) == key


def test_keys_are_unique_and_do_not_depend_on_the_listing_order():
    names = ["Q1", "q1", "Q1-2", "", "", "x" * 64, "x" * 64]
    assert unique_keys(names) == ["q1", "q1-3", "q1-2", "batch", "batch-2", "x" * 64, "x" * 62 + "-2"]
    assert unique_keys(["Q1", "Q1"], taken={"q1", "q1-2"}) == ["q1-3", "q1-4"]
    made = [
        Declaration(
            batch_id=f"id-{n}",
            name="Same",
            starting_balance=1,
            expires_on=None,
            credit_account_id=None,
            created_at=f"2026-01-0{n}T00:00:00.000Z",
        )
        for n in (3, 1, 2)
    ]
    ordered = in_key_order(made)
    assert [item.batch_id for item in ordered] == ["id-1", "id-2", "id-3"]
    assert in_key_order(list(reversed(made))) == ordered


@pytest.mark.parametrize(
    "name", ["", "plain", 'quote " and \\ backslash', "é\u00a0\u2028\u2029\ufeff\U0001f600", "#x: y"]
)
def test_names_are_written_verbatim(name):
    assert yaml.safe_load(f"name: {double_quoted(name)}")["name"] == name


def test_a_rendered_manifest_loads_as_what_was_recorded(tmp_path):
    now = datetime(2026, 6, 1, tzinfo=timezone.utc)
    listed_batches = [
        {
            "id": "b-1",
            "name": "",
            "startingBalance": 10.0,
            "expiresOn": "2027-01-01",
            "clientId": ACME_ID.upper(),
            "creditAccountId": ACCOUNT_ID.upper(),
            "createdAt": "2026-01-01T00:00:00.000Z",
        },
        {
            "id": "b-2",
            "name": "On",
            "startingBalance": 0,
            "expiresOn": "2026-01-01T00:00:00Z",
            "currentBalance": 0,
            "creditAccountId": None,
        },
    ]
    made = [declaration(batch, ACME_ID, now) for batch in listed_batches]
    assert (
        made[0].expires_on == "2027-01-01T00:00:00.000Z" and "listed with the date 2027-01-01 only" in made[0].notes[0]
    )
    assert made[1].notes == ("expired at 2026-01-01T00:00:00.000Z", "exhausted: 0 of 0 credits left")
    keys = unique_keys([item.name for item in made])
    path = tmp_path / "acme.yaml"
    path.write_text(render_manifest("acme", ACME_ID, list(zip(keys, made, strict=True)), "2026-06-01T00:00:00.000Z"))
    desired = load([path])
    assert {address: spec.attributes() for address, spec in desired.batches.items()} == {
        f"acme/{key}": item.attributes(ACME_ID) for key, item in zip(keys, made, strict=True)
    }
    assert declaration({"id": "b", "name": "x", "startingBalance": 1.5}, ACME_ID, now).startswith(
        "its startingBalance 1.5 is not a whole number"
    )
    assert declaration({"id": "b", "name": "x", "startingBalance": 1, "clientId": GLOBEX_ID}, ACME_ID, now).startswith(
        "it is listed with clientId"
    )


def test_a_batch_made_since_gets_a_key_no_recorded_address_has(cli, api_env, sandbox, instance, tmp_path, state_at):
    assert generate(cli, tmp_path / "first", state_at, f"acme={ACME_ID}").exit_code == 0
    newer = make(sandbox, ACME_ID, name="Acme Q1 2027", startingBalance=7, creditAccountId=ACCOUNT_ID)
    result = generate(cli, tmp_path / "second", state_at, f"acme={ACME_ID}")
    assert result.exit_code == 0, result.output
    assert (
        "Imported 1 batch of 1 client" in result.output
        and "So acme is declared in another manifest too" in result.output
    )
    batches = yaml.safe_load((tmp_path / "second" / "acme.yaml").read_text())["clients"]["acme"]["batches"]
    assert list(batches) == ["acme-q1-2027-5"]  # -2 to -4 are recorded
    assert read(state_at).resources["acme/acme-q1-2027-5"].batch_id == newer["id"]
