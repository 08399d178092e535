"""Tests for the manifest loader: YAML files -> Desired, and every way a manifest can be wrong."""

from __future__ import annotations

import json
import sys
import textwrap
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from provisioner.backends.file import State
from provisioner.core.addresses import KEY_PATTERN
from provisioner.core.models import Desired, Policy
from provisioner.manifest import documents, fast_reader, fields
from provisioner.manifest.files import find_files
from provisioner.manifest.issues import ManifestError, ManifestIssue
from provisioner.manifest.loader import load
from provisioner.manifest.schema import manifest_schema
from provisioner.planning.planner import make_plan
from provisioner.planning.saved_plan import is_saved_plan, save_plan

ACME_ID = "6a0c1d7e-2f3b-4c5d-9e8f-0a1b2c3d4e5f"
BETA_ID = "7b1d2e8f-3a4c-4d6e-8f90-1b2c3d4e5f60"
ACCOUNT_ID = "5e4d3c2b-1a09-4f8e-9d7c-6b5a49382716"
OTHER_ACCOUNT_ID = "0f1e2d3c-4b5a-4697-8877-665544332211"
NEEDS_311 = pytest.mark.skipif(sys.version_info < (3, 11), reason="fromisoformat reads +0100 from Python 3.11 on")


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Run in tmp_path so that file names in messages are short and relative."""
    monkeypatch.chdir(tmp_path)


def write(name: str, text: str) -> Path:
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def problems(*files: tuple[str, str]) -> list[str]:
    """Write the (name, text) files, load them, return the error lines."""
    for name, text in files:
        write(name, text)
    with pytest.raises(ManifestError) as caught:
        load([name for name, _ in files])
    return str(caught.value).splitlines()


def batch_text(fields: str) -> str:
    """A manifest with one batch, acme/q1, holding ``fields`` (one per line); they start on line 6."""
    head = f"clients:\n  acme:\n    id: {ACME_ID}\n    batches:\n      q1:\n"
    return head + textwrap.indent(fields, " " * 8)


def batch_problems(fields: str) -> list[str]:
    """Error lines for the one-batch manifest holding ``fields``."""
    return problems(("m.yaml", batch_text(fields)))


def one_batch(fields: str):
    write("m.yaml", batch_text(fields))
    return load(["m.yaml"]).batches["acme/q1"]


FULL = f"""\
    # yaml-language-server: $schema=./manifest.schema.json
    policy:
      maxBatchCredits: 20000
      maxCreates: 5
    clients:
      acme:
        id: {ACME_ID.upper()}
        creditAccountId: {ACCOUNT_ID}
        batches:
          2026-q2:
            name: Acme Q2 2026
            startingBalance: 5000
            expiresOn: 2026-12-31T23:59:59+01:00
          2026-q1:
            startingBalance: 0
            creditAccountId: {OTHER_ACCOUNT_ID}
      beta:
        id: {BETA_ID}
    """


# --------------------------------------------------------------------------- the happy path


def test_full_manifest_loads_into_desired():
    write("acme.yaml", FULL)
    desired = load(["acme.yaml"])

    assert list(desired.clients) == ["acme", "beta"]
    assert desired.clients["acme"].id == ACME_ID  # canonical lower-case
    assert desired.clients["acme"].source == "acme.yaml:6:3"
    assert list(desired.batches) == ["acme/2026-q1", "acme/2026-q2"]  # sorted by address

    q2 = desired.batches["acme/2026-q2"]
    assert q2.attributes() == {
        "clientId": ACME_ID,
        "name": "Acme Q2 2026",
        "startingBalance": 5000,
        "expiresOn": "2026-12-31T22:59:59.000Z",
        "creditAccountId": ACCOUNT_ID,  # the client's default
    }
    assert q2.source == "acme.yaml:10:7"

    q1 = desired.batches["acme/2026-q1"]
    assert q1.name == "2026-q1"  # defaults to the batch key
    assert q1.starting_balance == 0
    assert q1.expires_on is None
    assert q1.credit_account_id == OTHER_ACCOUNT_ID  # the batch overrides the client

    assert desired.policy == Policy(max_batch_credits=20000, max_creates=5)  # the rest keeps defaults
    assert desired.policy_source == "acme.yaml:2"
    assert len(desired.digest) == 64


def test_client_without_credit_account_leaves_it_unset():
    batch = one_batch("startingBalance: 10")
    assert batch.credit_account_id is None
    assert "creditAccountId" not in batch.attributes()


def test_files_combine_and_batches_sort_across_files():
    write("m/b.yaml", f"clients:\n  beta:\n    id: {BETA_ID}\n    batches:\n      a: {{startingBalance: 1}}\n")
    write("m/a.yaml", f"clients:\n  acme:\n    id: {ACME_ID}\n    batches:\n      z: {{startingBalance: 2}}\n")
    write("m/policy.yml", "policy:\n  maxCreates: 3\n")
    desired = load(["m"])
    assert list(desired.batches) == ["acme/z", "beta/a"]
    assert list(desired.clients) == ["acme", "beta"]
    assert desired.policy.max_creates == 3
    assert desired.policy_source == "m/policy.yml:1"


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n", "~\n", "{}\n", "clients:\n", "clients: {}\n"])
def test_empty_manifests_declare_nothing(text):
    write("empty.yaml", text)
    desired = load(["empty.yaml"])
    assert desired.clients == {} and desired.batches == {}
    assert desired.policy == Policy() and desired.policy_source is None


def test_policy_only_file_and_empty_policy():
    write("p.yaml", "policy:\n")
    desired = load(["p.yaml"])
    assert desired.policy == Policy()
    assert desired.policy_source == "p.yaml:1"


def test_client_without_batches_is_fine():
    write("m.yaml", f"clients:\n  acme:\n    id: {ACME_ID}\n    batches:\n")
    desired = load(["m.yaml"])
    assert list(desired.clients) == ["acme"] and desired.batches == {}


def test_yaml_merge_keys_share_defaults():
    write(
        "m.yaml",
        f"""\
        clients:
          acme:
            id: {ACME_ID}
            batches:
              q1: &defaults
                startingBalance: 100
                expiresOn: 2026-12-31T23:59:59Z
              q2:
                <<: *defaults
                startingBalance: 200
        """,
    )
    q2 = load(["m.yaml"]).batches["acme/q2"]
    assert (q2.starting_balance, q2.expires_on) == (200, "2026-12-31T23:59:59.000Z")


# --------------------------------------------------------------------------- finding files


def test_directories_give_their_manifests_sorted_and_hidden_ones_are_not_manifests():
    for name in ["m/z.yaml", "m/a.yml", "m/sub/b.yaml", "m/notes.txt", "m/.hidden.yaml", "m/.git/x.yaml"]:
        write(name, "")
    write("extra.conf", "")
    found = find_files(["m", "extra.conf"])
    assert found == ([Path("m/a.yml"), Path("m/sub/b.yaml"), Path("m/z.yaml"), Path("extra.conf")], [])


def test_a_file_named_twice_is_read_once():
    write("m/a.yaml", f"clients:\n  acme:\n    id: {ACME_ID}\n")
    assert find_files(["m", "m/a.yaml"]) == ([Path("m/a.yaml")], [])
    assert list(load(["m", "m/a.yaml"]).clients) == ["acme"]


def test_missing_path_is_an_error_naming_it():
    write("m/a.yaml", "")
    with pytest.raises(ManifestError) as caught:
        load(["m", "nowhere"])
    assert str(caught.value) == "nowhere: no such file or directory"


def test_no_manifest_found_is_an_error():
    Path("empty").mkdir()
    write("empty/readme.txt", "")
    with pytest.raises(ManifestError) as caught:
        load(["empty"])
    assert str(caught.value) == "no *.yaml or *.yml files found in empty"


# --------------------------------------------------------------------------- issues and errors


def test_issue_format():
    issue = ManifestIssue(
        "examples/acme.yaml",
        12,
        9,
        "clients.acme.batches.2026-q1.startingBalence",
        "unknown field; did you mean 'startingBalance'?",
    )
    assert str(issue) == (
        "examples/acme.yaml:12:9: clients.acme.batches.2026-q1.startingBalence: "
        "unknown field; did you mean 'startingBalance'?"
    )


def test_all_issues_of_all_files_are_reported_sorted():
    lines = problems(
        ("b.yaml", "clientz: {}\n"),
        (
            "a.yaml",
            f"clients:\n  acme:\n    id: {ACME_ID}\n    batches:\n      q1: {{}}\n      q2: {{startingBalance: -1}}\n",
        ),
    )
    assert lines == [
        "a.yaml:5:7: clients.acme.batches.q1.startingBalance: required field missing; add e.g. 'startingBalance: 5000'",
        "a.yaml:6:29: clients.acme.batches.q2.startingBalance: must be 0 or more, got -1",
        "b.yaml:1:1: clientz: unknown field; did you mean 'clients'?",
    ]


def test_error_keeps_issue_objects():
    write("m.yaml", "clients: []\n")
    with pytest.raises(ManifestError) as caught:
        load(["m.yaml"])
    (issue,) = caught.value.issues
    assert (issue.file, issue.line, issue.column, issue.field) == ("m.yaml", 1, 10, "clients")


def test_missing_path_is_reported_with_the_other_issues():
    write("a.yaml", "bogus: 1\n")
    with pytest.raises(ManifestError) as caught:
        load(["a.yaml", "gone.yaml"])
    assert [issue.file for issue in caught.value.issues] == ["a.yaml", "gone.yaml"]


# --------------------------------------------------------------------------- unknown fields


@pytest.mark.parametrize(
    "text, expected",
    [
        ("clientz: {}\n", "m.yaml:1:1: clientz: unknown field; did you mean 'clients'?"),
        ("polcy: {}\n", "m.yaml:1:1: polcy: unknown field; did you mean 'policy'?"),
        ("clients: {}\nstuff: 1\n", "m.yaml:2:1: stuff: unknown field; expected one of: policy, clients"),
        (
            f"clients: {{}}\nacme:\n  id: {ACME_ID}\n",
            "m.yaml:2:1: acme: unknown field; expected one of: policy, clients"
            " (if 'acme' is meant as an entry, put it under 'clients:')",
        ),
        ("policy:\n  maxCreate: 1\n", "m.yaml:2:3: policy.maxCreate: unknown field; did you mean 'maxCreates'?"),
        (
            f"clients:\n  acme:\n    id: {ACME_ID}\n    creditAcountId: {ACCOUNT_ID}\n",
            "m.yaml:4:5: clients.acme.creditAcountId: unknown field; did you mean 'creditAccountId'?",
        ),
        (
            f"clients:\n  acme:\n    id: {ACME_ID}\n    q1:\n      startingBalance: 1\n",
            "m.yaml:4:5: clients.acme.q1: unknown field; expected one of: id, creditAccountId, batches, grants"
            " (if 'q1' is meant as an entry, put it under 'batches:')",
        ),
    ],
)
def test_unknown_fields_are_rejected(text, expected):
    assert problems(("m.yaml", text)) == [expected]


def test_a_typo_of_a_required_field_is_reported_once():
    # Not also as "startingBalance: required field missing": that is the same mistake.
    assert batch_problems("startingBalence: 5000\n") == [
        "m.yaml:6:9: clients.acme.batches.q1.startingBalence: unknown field; did you mean 'startingBalance'?"
    ]
    assert problems(("m.yaml", f"clients:\n  acme:\n    ids: {ACME_ID}\n")) == [
        "m.yaml:3:5: clients.acme.ids: unknown field; did you mean 'id'?"
    ]


def test_a_required_field_is_still_missing_next_to_an_unrelated_unknown_field():
    assert batch_problems("colour: red\n") == [
        "m.yaml:5:7: clients.acme.batches.q1.startingBalance: required field missing; add e.g. 'startingBalance: 5000'",
        "m.yaml:6:9: clients.acme.batches.q1.colour: unknown field; expected one of: startingBalance, name, expiresOn, creditAccountId",
    ]


def test_a_typo_in_one_batch_does_not_excuse_another_batch():
    text = (
        f"clients:\n  acme:\n    id: {ACME_ID}\n    batches:\n      q1: {{startingBalence: 1}}\n      q2: {{name: x}}\n"
    )
    assert problems(("m.yaml", text)) == [
        "m.yaml:5:12: clients.acme.batches.q1.startingBalence: unknown field; did you mean 'startingBalance'?",
        "m.yaml:6:7: clients.acme.batches.q2.startingBalance: required field missing; add e.g. 'startingBalance: 5000'",
    ]


# --------------------------------------------------------------------------- other YAML and saved plans

NOT_A_MANIFEST = (
    "not a provisioner manifest (no 'clients' or 'policy' at its top level); "
    "pass the directory of your manifests, not a parent of other YAML files"
)
GITHUB_WORKFLOW = """\
    # A workflow: comments first, so its mapping starts on line 3.
    name: plan
    on:
      pull_request:
    jobs:
      plan:
        runs-on: ubuntu-latest
        steps:
          - id: plan
            run: provisioner plan manifests/
    """
GITLAB_CI = """\
    variables:
      PIP_DISABLE_PIP_VERSION_CHECK: "1"
    stages: [plan, apply]
    plan:
      stage: plan
      script: [provisioner plan manifests/]
    .commit_state: &commit
      - git push
    """
PRE_COMMIT_CONFIG = "repos:\n  - repo: local\n    hooks:\n      - id: validate\n"


@pytest.mark.parametrize("text", [GITHUB_WORKFLOW, GITLAB_CI, PRE_COMMIT_CONFIG, "on: push\non: push\n"])
def test_other_yaml_is_one_issue_for_the_file(text):
    # Not one "unknown field" per key with a hint to move 'jobs' under 'clients:'; duplicates are not its issue either.
    assert problems(("ci.yml", text)) == [f"ci.yml:1:1: {NOT_A_MANIFEST}"]


@pytest.mark.parametrize(
    "text, shape",
    [
        ("- id: validate\n  entry: provisioner validate\n", "a list"),
        ("just text\n", "text ('just text')"),
        ("42\n", "a number (42)"),
    ],
)
def test_a_top_level_that_is_no_mapping_is_not_a_manifest(text, shape):
    assert problems(("m.yaml", text)) == [
        f"m.yaml:1:1: not a provisioner manifest (its top level is {shape}, not a mapping with 'clients' or 'policy'); "
        "pass the directory of your manifests, not a parent of other YAML files"
    ]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("client:\n  acme: {}\n", "m.yaml:1:1: client: unknown field; did you mean 'clients'?"),
        ("cleints:\n  acme: {}\n", "m.yaml:1:1: cleints: unknown field; did you mean 'clients'?"),
        ("Clients: {}\n", "m.yaml:1:1: Clients: unknown field; did you mean 'clients'?"),
        ("polices:\n  maxCreates: 1\n", "m.yaml:1:1: polices: unknown field; did you mean 'policy'?"),
        ("maxCreates: 5\n", "m.yaml:1:1: maxCreates: unknown field; expected one of: policy, clients"),
        (
            f"acme:\n  id: {ACME_ID}\n",
            "m.yaml:1:1: acme: unknown field; expected one of: policy, clients"
            " (if 'acme' is meant as an entry, put it under 'clients:')",
        ),
        (
            "q1:\n  startingBalance: 5\n",
            "m.yaml:1:1: q1: unknown field; expected one of: policy, clients"
            " (if 'q1' is meant as an entry, put it under 'clients:')",
        ),
    ],
)
def test_a_manifest_gone_wrong_at_the_top_keeps_its_field_errors(text, expected):
    # A typo of 'clients', a policy limit or a client without 'clients:' around it: meant as a manifest.
    assert problems(("m.yaml", text)) == [expected]


def test_a_manifest_with_other_keys_as_well_reports_each_of_them():
    text = f"clients:\n  acme:\n    id: {ACME_ID}\njobs:\n  plan: {{}}\nstages: []\n"
    assert problems(("m.yaml", text)) == [
        "m.yaml:4:1: jobs: unknown field; expected one of: policy, clients (if 'jobs' is meant as an entry, put it under 'clients:')",
        "m.yaml:6:1: stages: unknown field; expected one of: policy, clients",
    ]


def test_other_yaml_does_not_hide_the_manifests_problems():
    lines = problems(("m/ci.yml", GITLAB_CI), ("m/acme.yaml", "clients:\n  acme: {}\n"))
    assert lines == [
        "m/acme.yaml:2:3: clients.acme.id: required field missing; add e.g. 'id: 6a0c1d7e-2f3b-4c5d-9e8f-0a1b2c3d4e5f'",
        f"m/ci.yml:1:1: {NOT_A_MANIFEST}",
    ]


def write_saved_plan(path: str) -> Path:
    """A saved plan written by the code behind 'provisioner plan --out'."""
    write("source/acme.yaml", batch_text("startingBalance: 5000\n"))
    desired = load(["source"])
    state = State()
    plan = make_plan(desired, state, datetime.now(timezone.utc))
    save_plan(path, desired, plan, state, desired.policy, [])
    assert is_saved_plan(path)  # what 'provisioner apply' takes for a saved plan
    return Path(path)


@pytest.mark.parametrize("name", ["m/provisioner.plan", "m/plan.yaml"])
def test_a_saved_plan_among_the_manifests_is_one_issue(name):
    write_saved_plan(name)
    write("m/acme.yaml", f"clients:\n  acme:\n    id: {ACME_ID}\n")
    with pytest.raises(ManifestError) as caught:
        load(["m", name])  # a directory holds it as *.yaml; any name when named directly
    assert str(caught.value) == (
        f"{name}: this is a saved plan, not a manifest: apply it with 'provisioner apply {name}', "
        "and keep it out of the manifests directory"
    )


def test_a_manifest_written_as_json_is_no_saved_plan():
    write("m.json", json.dumps({"clients": {"acme": {"id": ACME_ID}}}))
    assert list(load(["m.json"]).clients) == ["acme"]


def test_a_yaml_manifest_mentioning_the_marker_is_no_saved_plan():
    write("m.yaml", "# this is not a provisioner_saved_plan\nclients: {}\n")
    assert not is_saved_plan("m.yaml")
    assert load(["m.yaml"]).clients == {}


# --------------------------------------------------------------------------- duplicates


@pytest.mark.parametrize(
    "text, expected",
    [
        ("clients: {}\nclients: {}\n", "m.yaml:2:1: clients: duplicate key 'clients' (first on line 1)"),
        (
            f"clients:\n  acme:\n    id: {ACME_ID}\n  acme:\n    id: {BETA_ID}\n",
            "m.yaml:4:3: clients.acme: duplicate key 'acme' (first on line 2)",
        ),
        (
            f"clients:\n  acme:\n    id: {ACME_ID}\n    id: {BETA_ID}\n",
            "m.yaml:4:5: clients.acme.id: duplicate key 'id' (first on line 3)",
        ),
        (
            f"clients:\n  acme:\n    id: {ACME_ID}\n    batches:\n      q1: {{startingBalance: 1}}\n      q1: {{startingBalance: 2}}\n",
            "m.yaml:6:7: clients.acme.batches.q1: duplicate key 'q1' (first on line 5)",
        ),
        (
            f"clients:\n  acme:\n    id: {ACME_ID}\n    batches:\n      q1:\n        startingBalance: 1\n        startingBalance: 2\n",
            "m.yaml:7:9: clients.acme.batches.q1.startingBalance: duplicate key 'startingBalance' (first on line 6)",
        ),
        (
            "policy:\n  maxCreates: 1\n  maxCreates: 2\n",
            "m.yaml:3:3: policy.maxCreates: duplicate key 'maxCreates' (first on line 2)",
        ),
    ],
)
def test_duplicate_keys_are_rejected_naming_both_lines(text, expected):
    (line,) = problems(("m.yaml", text))
    assert line.startswith(expected + "; ")


def test_keys_that_read_the_same_are_duplicates():
    # `2026` (an int to YAML) and "2026" are the same batch key.
    text = f"clients:\n  acme:\n    id: {ACME_ID}\n    batches:\n      2026: {{startingBalance: 1}}\n      '2026': {{startingBalance: 2}}\n"
    (line,) = problems(("m.yaml", text))
    assert line.startswith("m.yaml:6:7: clients.acme.batches.2026: duplicate key '2026' (first on line 5)")


def test_client_declared_in_two_files():
    lines = problems(
        ("a.yaml", f"clients:\n  acme:\n    id: {ACME_ID}\n"),
        ("b.yaml", f"\nclients:\n  acme:\n    id: {ACME_ID}\n"),
    )
    assert lines == [
        "b.yaml:3:3: clients.acme: client 'acme' is also declared at a.yaml:2:3; declare each client in one file only"
    ]


@pytest.mark.parametrize("second_file", ["a.yaml", "b.yaml"])
def test_two_clients_may_not_share_an_id(second_file):
    first = f"clients:\n  acme:\n    id: {ACME_ID}\n"
    if second_file == "a.yaml":
        files = [("a.yaml", first + f"  acme-again:\n    id: {ACME_ID.upper()}\n")]
    else:
        files = [("a.yaml", first), ("b.yaml", f"clients:\n  acme-again:\n    id: {ACME_ID.upper()}\n")]
    (line,) = problems(*files)
    assert line.startswith(f"{second_file}:")
    assert f"clients.acme-again.id: client id {ACME_ID} is also used by client 'acme' at a.yaml:2:3" in line


def test_client_key_clash_is_found_even_when_its_id_is_wrong():
    lines = problems(
        ("a.yaml", "clients:\n  acme:\n    id: nope\n"), ("b.yaml", f"clients:\n  acme:\n    id: {ACME_ID}\n")
    )
    assert lines[0].startswith("a.yaml:3:9: clients.acme.id: 'nope' is not a UUID")
    assert lines[1].startswith("b.yaml:2:3: clients.acme: client 'acme' is also declared at a.yaml:2:3")


def test_policy_in_two_files():
    lines = problems(("a.yaml", "policy:\n  maxCreates: 1\n"), ("b.yaml", "policy:\n  maxCreates: 2\n"))
    assert lines == ["b.yaml:1:1: policy: policy is already declared at a.yaml:1; declare it in one file only"]


# --------------------------------------------------------------------------- ids and keys


@pytest.mark.parametrize(
    "written, stored",
    [
        (ACME_ID.upper(), ACME_ID),
        (ACME_ID.replace("-", ""), ACME_ID),
        ("'{" + ACME_ID + "}'", ACME_ID),
        ("'" + ACME_ID + "'", ACME_ID),
        ("12345678123456781234567812345678", "12345678-1234-5678-1234-567812345678"),  # YAML reads an int
    ],
)
def test_uuids_are_stored_canonical(written, stored):
    write("m.yaml", f"clients:\n  acme:\n    id: {written}\n    creditAccountId: {written}\n")
    desired = load(["m.yaml"])
    assert desired.clients["acme"].id == stored


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("id", "not-a-uuid", "'not-a-uuid' is not a UUID; expected e.g. "),
        ("id", "12345", "'12345' is not a UUID"),
        ("id", "[1, 2]", "expected a UUID, e.g. 6a0c1d7e-2f3b-4c5d-9e8f-0a1b2c3d4e5f, got a list"),
        ("id", "", "expected a UUID, e.g. 6a0c1d7e-2f3b-4c5d-9e8f-0a1b2c3d4e5f, got an empty value"),
        ("creditAccountId", "nope", "'nope' is not a UUID"),
    ],
)
def test_bad_client_ids_are_rejected(field, value, message):
    extra = "" if field == "id" else f"    id: {ACME_ID}\n"
    (line,) = problems(("m.yaml", f"clients:\n  acme:\n{extra}    {field}: {value}\n"))
    assert f": clients.acme.{field}: {message}" in line


def test_batch_credit_account_must_be_a_uuid():
    (line,) = batch_problems("startingBalance: 1\ncreditAccountId: 42\n")
    assert (
        line
        == "m.yaml:7:26: clients.acme.batches.q1.creditAccountId: '42' is not a UUID; expected e.g. 6a0c1d7e-2f3b-4c5d-9e8f-0a1b2c3d4e5f"
    )


def test_client_id_is_required():
    (line,) = problems(("m.yaml", "clients:\n  acme:\n    batches: {}\n"))
    assert line == f"m.yaml:2:3: clients.acme.id: required field missing; add e.g. 'id: {ACME_ID}'"


@pytest.mark.parametrize("key", ["2026", "2026-01-01", "q1.final", "a_b-c", "0", "a" * 64, "yes", "null", "1.5"])
def test_batch_keys_are_taken_as_written(key):
    write("m.yaml", f"clients:\n  acme:\n    id: {ACME_ID}\n    batches:\n      {key}:\n        startingBalance: 1\n")
    batch = load(["m.yaml"]).batches[f"acme/{key}"]
    assert batch.batch_key == key and batch.name == key


@pytest.mark.parametrize("key", ["Acme", "-acme", ".acme", "a" * 65, "ac me", "acme/x", "'acme!'", "''"])
def test_bad_client_keys_are_rejected(key):
    (line,) = problems(("m.yaml", f"clients:\n  {key}:\n    id: {ACME_ID}\n"))
    assert line.startswith("m.yaml:2:3: clients.")
    assert ": invalid client key '" in line
    assert "lower-case letters, digits, '.', '_' or '-', starting with a letter or digit" in line


def test_bad_batch_key_is_rejected():
    text = f"clients:\n  acme:\n    id: {ACME_ID}\n    batches:\n      Q1:\n        startingBalance: 1\n"
    (line,) = problems(("m.yaml", text))
    assert line.startswith("m.yaml:5:7: clients.acme.batches.Q1: invalid batch key 'Q1'; use 1-64 characters")


# --------------------------------------------------------------------------- startingBalance


@pytest.mark.parametrize(
    "written, value", [("0", 0), ("5000", 5000), ("5_000", 5000), ("+7", 7), ("10000000000", 10**10)]
)
def test_starting_balance_accepts_whole_numbers(written, value):
    assert one_batch(f"startingBalance: {written}\n").starting_balance == value


@pytest.mark.parametrize(
    "written, message",
    [
        ("true", "expected a whole number, e.g. 5000, got a boolean (true)"),
        ("yes", "expected a whole number, e.g. 5000, got a boolean (yes)"),
        ('"5000"', "expected a whole number, e.g. 5000, got text ('5000'); remove the quotes"),
        ("'5000'", "expected a whole number, e.g. 5000, got text ('5000'); remove the quotes"),
        ("5000.5", "expected a whole number, e.g. 5000, got a number (5000.5)"),
        ("5000.0", "expected a whole number, e.g. 5000, got 5000.0; whole numbers are written without a decimal point"),
        (".nan", "expected a whole number, e.g. 5000, got a number (.nan)"),
        (".inf", "expected a whole number, e.g. 5000, got a number (.inf)"),
        ("-.inf", "expected a whole number, e.g. 5000, got a number (-.inf)"),
        ("-1", "must be 0 or more, got -1"),
        ("0500", "'0500' has a leading zero, which YAML reads as an octal number; write it without the zero"),
        ("0x10", "'0x10' is not a plain decimal number; write it like 5000"),
        ("1:30", "'1:30' is not a plain decimal number; write it like 5000"),
        ("1e3", "expected a whole number, e.g. 5000, got text ('1e3')"),
        ("five", "expected a whole number, e.g. 5000, got text ('five')"),
        ("", "expected a whole number, e.g. 5000, got an empty value"),
        ("[5000]", "expected a whole number, e.g. 5000, got a list"),
        ("{a: 1}", "expected a whole number, e.g. 5000, got a mapping"),
        ("2026-01-01", "expected a whole number, e.g. 5000, got a date (2026-01-01)"),
    ],
)
def test_starting_balance_rejects_everything_else(written, message):
    (line,) = batch_problems(f"startingBalance: {written}\n")
    assert line.startswith("m.yaml:6:")
    assert line.endswith(f": clients.acme.batches.q1.startingBalance: {message}")


def test_starting_balance_is_required():
    (line,) = batch_problems("name: x\n")
    assert (
        line
        == "m.yaml:5:7: clients.acme.batches.q1.startingBalance: required field missing; add e.g. 'startingBalance: 5000'"
    )


@pytest.mark.parametrize("written", ["true", "-5", "1.0", "'10'"])
def test_policy_limits_are_whole_numbers(written):
    (line,) = problems(("m.yaml", f"policy:\n  maxApplyCredits: {written}\n"))
    assert line.startswith("m.yaml:2:20: policy.maxApplyCredits: ")


MAX_WHOLE = 9_007_199_254_740_991  # 2^53-1
TOO_LARGE = "at most 9,007,199,254,740,991 (2^53-1), the largest whole number JSON tools such as jq hold exactly"


def test_the_largest_whole_number_json_holds_exactly_is_allowed():
    assert one_batch(f"startingBalance: {MAX_WHOLE}\n").starting_balance == MAX_WHOLE
    write(
        "p.yaml",
        f"policy:\n  maxBatchCredits: {MAX_WHOLE}\n  maxApplyCredits: {MAX_WHOLE}\n  maxCreates: {MAX_WHOLE}\n",
    )
    assert load(["p.yaml"]).policy == Policy(
        max_batch_credits=MAX_WHOLE, max_apply_credits=MAX_WHOLE, max_creates=MAX_WHOLE
    )


@pytest.mark.parametrize(
    "written, shown",
    [
        ("9007199254740992", "9007199254740992"),
        ("9_007_199_254_740_992", "9_007_199_254_740_992"),
        ("99999999999999999999999", "99999999999999999999999"),
        ("1" + "0" * 5000, "1" + "0" * 36 + "..."),  # more digits than int() converts: no traceback
    ],
)
def test_starting_balance_above_two_to_the_53_is_rejected(written, shown):
    (line,) = batch_problems(f"startingBalance: {written}\n")
    assert line == f"m.yaml:6:26: clients.acme.batches.q1.startingBalance: too large: {shown}; {TOO_LARGE}"


def test_a_hugely_negative_balance_is_below_zero():
    (line,) = batch_problems("startingBalance: -" + "9" * 5000 + "\n")
    assert line == "m.yaml:6:26: clients.acme.batches.q1.startingBalance: must be 0 or more, got -" + "9" * 36 + "..."


@pytest.mark.parametrize("limit", ["maxBatchCredits", "maxApplyCredits", "maxCreates"])
def test_policy_limits_above_two_to_the_53_are_rejected(limit):
    (line,) = problems(("m.yaml", f"policy:\n  {limit}: 99999999999999999999999\n"))
    assert line == f"m.yaml:2:{len(limit) + 5}: policy.{limit}: too large: 99999999999999999999999; {TOO_LARGE}"


# --------------------------------------------------------------------------- name


@pytest.mark.parametrize(
    "written, name",
    [
        ("Acme Q1", "Acme Q1"),
        ('"2026"', "2026"),
        ("'true'", "true"),
        ("  padded  ", "padded"),
        ("x" * 255, "x" * 255),
        ('""', ""),
        ("''", ""),
    ],
)
def test_names_are_text(written, name):
    assert one_batch(f"startingBalance: 1\nname: {written}\n").name == name


@pytest.mark.parametrize(
    "written, message",
    [
        ("2026", 'expected text, got a number (2026); quote it: name: "2026"'),
        ("1.5", 'expected text, got a number (1.5); quote it: name: "1.5"'),
        ("true", 'expected text, got a boolean (true); quote it: name: "true"'),
        ("2026-01-01", 'expected text, got a date (2026-01-01); quote it: name: "2026-01-01"'),
        ("", "empty; write a name or remove the line (the default is the batch key)"),
        ("'   '", 'blank; write a name, "" for no name at all, or remove the line (the default is the batch key)'),
        ("[a]", "expected text, got a list"),
        ("x" * 256, "too long: 256 characters, at most 255"),
        ('"two\\nlines"', "must be a single line"),
    ],
)
def test_bad_names_are_rejected(written, message):
    (line,) = batch_problems(f"startingBalance: 1\nname: {written}\n")
    assert line.startswith("m.yaml:7:")  # an empty value is placed right after the colon
    assert ": clients.acme.batches.q1.name: " in line
    assert line.endswith(message)


# --------------------------------------------------------------------------- expiresOn


@pytest.mark.parametrize(
    "written, sent",
    [
        ("2026-12-31T23:59:59Z", "2026-12-31T23:59:59.000Z"),
        ("2026-12-31T23:59:59+01:00", "2026-12-31T22:59:59.000Z"),
        ("2026-12-31T23:59:59-05:30", "2027-01-01T05:29:59.000Z"),
        ("2026-12-31 23:59:59 +01:00", "2026-12-31T22:59:59.000Z"),  # YAML's own spaced form
        ("2026-12-31t23:59:59z", "2026-12-31T23:59:59.000Z"),
        ("2026-12-31T23:59:59.5Z", "2026-12-31T23:59:59.500Z"),
        ("2026-12-31T23:59:59.123456Z", "2026-12-31T23:59:59.123Z"),  # truncated to milliseconds
        ('"2026-12-31T23:59:59Z"', "2026-12-31T23:59:59.000Z"),
        ("'2026-12-31T23:59:59+01:00'", "2026-12-31T22:59:59.000Z"),
        pytest.param("'2026-12-31T23:59:59+0100'", "2026-12-31T22:59:59.000Z", marks=NEEDS_311),
        # Plain text to YAML (not its timestamp form), still ISO 8601.
        pytest.param("2026-12-31T23:59:59+0100", "2026-12-31T22:59:59.000Z", marks=NEEDS_311),
    ],
)
def test_expires_on_is_normalised_to_utc_milliseconds(written, sent):
    assert one_batch(f"startingBalance: 1\nexpiresOn: {written}\n").expires_on == sent


@pytest.mark.parametrize(
    "written, message",
    [
        (
            "2026-12-31",
            "'2026-12-31' is a date without a time and time zone; write it with a time zone, e.g. 2026-12-31T23:59:59Z",
        ),
        (
            "'2026-06-30'",
            "'2026-06-30' is a date without a time and time zone; write it with a time zone, e.g. 2026-06-30T23:59:59Z",
        ),
        (
            "2026-12-31T23:59:59",
            "'2026-12-31T23:59:59' has no time zone; write it with a time zone, e.g. 2026-12-31T23:59:59Z",
        ),
        (
            '"2026-12-31T10:00:00"',
            "'2026-12-31T10:00:00' has no time zone; write it with a time zone, e.g. 2026-12-31T10:00:00Z",
        ),
        (
            "next week",
            "'next week' is not a valid ISO 8601 timestamp; write it with a time zone, e.g. 2026-12-31T23:59:59Z",
        ),
        ("2026-13-01T00:00:00Z", "'2026-13-01T00:00:00Z' is not a valid ISO 8601 timestamp; write it with a time zone"),
        ("2026-02-30", "'2026-02-30' is not a valid ISO 8601 timestamp; write it with a time zone"),
        ("20261231", "expected an ISO 8601 timestamp, got a number (20261231); write it with a time zone"),
        ("true", "expected an ISO 8601 timestamp, got a boolean (true); write it with a time zone"),
        ("", "expected an ISO 8601 timestamp, got an empty value; write it with a time zone"),
        ("[2026]", "expected an ISO 8601 timestamp, got a list; write it with a time zone"),
    ],
)
def test_bad_expiry_is_rejected(written, message):
    (line,) = batch_problems(f"startingBalance: 1\nexpiresOn: {written}\n")
    assert line.startswith("m.yaml:7:")
    assert ": clients.acme.batches.q1.expiresOn: " in line
    assert message in line


def test_expiry_in_the_past_is_not_the_loaders_business():
    assert one_batch("startingBalance: 1\nexpiresOn: 2001-01-01T00:00:00Z\n").expires_on == "2001-01-01T00:00:00.000Z"


# --------------------------------------------------------------------------- shapes and syntax


@pytest.mark.parametrize(
    "text, expected",
    [
        ("clients:\n  - acme\n", "m.yaml:2:3: clients: expected a mapping of client keys to clients, got a list"),
        ("clients: acme\n", "m.yaml:1:10: clients: expected a mapping of client keys to clients, got text ('acme')"),
        ("policy: 5\n", "m.yaml:1:9: policy: expected a mapping of policy limits, got a number (5)"),
        (
            "clients:\n  acme: 6a0c\n",
            "m.yaml:2:9: clients.acme: expected a mapping with 'id' (and optionally 'creditAccountId', 'batches', 'grants'), got text ('6a0c')",
        ),
        (
            f"clients:\n  acme:\n    id: {ACME_ID}\n    batches: [q1]\n",
            "m.yaml:4:14: clients.acme.batches: expected a mapping of batch keys to batches, got a list",
        ),
        (
            f"clients:\n  acme:\n    id: {ACME_ID}\n    batches:\n      q1: 5000\n",
            "m.yaml:5:11: clients.acme.batches.q1: expected a mapping with 'startingBalance' "
            "(and optionally 'name', 'expiresOn', 'creditAccountId'), got a number (5000)",
        ),
        ("clients:\n  ? [a, b]\n  : {}\n", "m.yaml:2:5: clients: expected a plain key, got a list"),
    ],
)
def test_wrong_shapes_are_clear_errors(text, expected):
    assert problems(("m.yaml", text)) == [expected]


def test_empty_batch_reports_what_is_missing():
    text = f"clients:\n  acme:\n    id: {ACME_ID}\n    batches:\n      q1:\n"
    assert problems(("m.yaml", text)) == [
        "m.yaml:5:7: clients.acme.batches.q1.startingBalance: required field missing; add e.g. 'startingBalance: 5000'"
    ]


@pytest.mark.parametrize(
    "text, start",
    [
        ("clients:\n  acme: [1\n", "m.yaml:3:1: invalid YAML: did not find expected ',' or ']'"),
        ("clients:\n  acme:\n    id: x\n   bad\n", "m.yaml:4:4: invalid YAML:"),
        ("a: 1\n---\nb: 2\n", "m.yaml:2:1: invalid YAML: but found another document"),
        ("clients: *nothing\n", "m.yaml:1:10: invalid YAML: found undefined alias"),
        ("clients:\n\tacme: {}\n", "m.yaml:2:1: invalid YAML:"),
    ],
)
def test_invalid_yaml_names_the_place(text, start):
    (line,) = problems(("m.yaml", text))
    assert line.startswith(start)


@pytest.mark.parametrize(
    "text, where",
    [
        ("clients:\n\tacme: {}\n", "m.yaml:2:1"),
        (
            "clients:\n  acme:\n    id: 6a0c1d7e-3b2f-4c1a-9e8d-7f6a5b4c3d21\n    batches:\n      q1:\n \t  startingBalance: 5\n",
            "m.yaml:6:2",
        ),
    ],
)
def test_a_leading_tab_says_to_indent_with_spaces(text, where, cli, tmp_path):
    """Once, 'found character that cannot start any token' said nothing about tabs."""
    manifest = tmp_path / "m.yaml"
    manifest.write_text(text)
    result = cli("validate", manifest)
    assert result.exit_code == 1
    assert (
        result.stderr.strip() == f"Error: {tmp_path}/{where}: invalid YAML: a tab where YAML expects indentation; "
        "indent with spaces, not tabs"
    )


def test_bytes_that_are_not_utf8_are_an_error():
    Path("m.yaml").write_bytes(b"clients:\n  acme: \xff\n")
    with pytest.raises(ManifestError) as caught:
        load(["m.yaml"])
    assert str(caught.value).startswith("m.yaml:2:9: not valid UTF-8 text")


def test_a_broken_file_does_not_hide_problems_in_others():
    lines = problems(("a.yaml", "clients: [\n"), ("b.yaml", "clientz: {}\n"))
    assert [line.split(":")[0] for line in lines] == ["a.yaml", "b.yaml"]


def test_bad_merge_is_an_error():
    (line,) = batch_problems("<<: 5\nstartingBalance: 1\n")
    assert line == "m.yaml:6:13: clients.acme.batches.q1: '<<' merges mappings only, got a number (5)"


def test_self_referring_merge_does_not_hang():
    text = f"clients:\n  acme: &a\n    id: {ACME_ID}\n    <<: *a\n"
    lines = problems(("m.yaml", text))
    assert any("nested too deeply" in line for line in lines)


# --------------------------------------------------------------------------- digest


def test_digest_is_stable_and_follows_content_and_names():
    write("m/a.yaml", FULL)
    first = load(["m"]).digest
    assert load(["m"]).digest == first
    assert load([Path("m").resolve()]).digest == first  # where you run from does not matter

    Path("m/a.yaml").write_text(FULL.replace("5000", "5001"))
    edited = load(["m"]).digest
    assert edited != first

    Path("m/a.yaml").rename("m/b.yaml")
    assert load(["m"]).digest not in (first, edited)


def test_digest_covers_every_file():
    write("m/a.yaml", FULL)
    alone = load(["m"]).digest
    write("m/z.yaml", "# nothing\n")
    assert load(["m"]).digest != alone


# --------------------------------------------------------------------------- schema


def test_schema_lists_the_fields_and_forbids_others():
    schema = manifest_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    defs = schema["$defs"]
    objects = {
        "file": schema,
        "client": defs["ClientModel"],
        "batch": defs["BatchModel"],
        "policy": defs["PolicyModel"],
        "grant": defs["GrantModel"],
    }
    for part in objects.values():
        assert part["additionalProperties"] is False
        for field in part["properties"].values():
            assert field.get("description")
    assert list(schema["properties"]) == ["policy", "clients"]
    assert list(defs["ClientModel"]["properties"]) == ["id", "creditAccountId", "batches", "grants"]
    assert set(defs["BatchModel"]["properties"]) == {"startingBalance", "name", "expiresOn", "creditAccountId"}
    assert list(defs["PolicyModel"]["properties"]) == ["maxBatchCredits", "maxApplyCredits", "maxCreates"]
    assert defs["BatchModel"]["required"] == ["startingBalance"]
    assert defs["ClientModel"]["required"] == ["id"]
    assert defs["BatchModel"]["properties"]["startingBalance"] == {
        "description": "Credits put into the batch: a whole number, 0 or more.",
        "minimum": 0,
        "maximum": 2**53 - 1,
        "type": "integer",
    }
    for limit in defs["PolicyModel"]["properties"].values():
        assert (limit["minimum"], limit["maximum"]) == (0, 2**53 - 1)


def test_schema_constrains_keys_with_the_loader_pattern():
    schema = manifest_schema()
    clients = next(option for option in schema["properties"]["clients"]["anyOf"] if option["type"] == "object")
    assert clients["patternProperties"] == {f"^{KEY_PATTERN}$": {"$ref": "#/$defs/ClientModel"}}
    assert clients["additionalProperties"] is False


def test_schema_and_loader_know_the_same_fields():
    # The loader's field lists are read from the schema models; check they are what it handles.
    defs = manifest_schema()["$defs"]
    assert set(fields.BATCH_FIELDS) == set(defs["BatchModel"]["properties"])
    assert set(fields.CLIENT_FIELDS) == set(defs["ClientModel"]["properties"])
    assert set(fields.GRANT_FIELDS) == set(defs["GrantModel"]["properties"])
    assert set(fields.POLICY_FIELDS.values()) == set(Policy.model_fields)


# --------------------------------------------------------------------------- speed


def test_ten_thousand_batches_load():
    # How fast is bench/plan's to measure (the manifest load step, with its target); here, only what is loaded.
    for part in range(10):
        lines = ["clients:"]
        for c in range(100):
            n = part * 100 + c
            lines += [f"  client-{n:04d}:", f"    id: {uuid.UUID(int=n + 1)}", "    batches:"]
            for b in range(10):
                lines += [
                    f"      b{b}:",
                    f"        name: Client {n} batch {b}",
                    f"        startingBalance: {1000 + b}",
                    "        expiresOn: 2026-12-31T23:59:59Z",
                ]
        write(f"big/part{part}.yaml", "\n".join(lines) + "\n")
    desired = load(["big"])
    assert len(desired.batches) == 10_000 and len(desired.clients) == 1_000
    assert isinstance(desired, Desired)
    assert desired.batches["client-0999/b9"].starting_balance == 1009


def test_pure_python_yaml_gives_the_same_answers(monkeypatch):
    """Without libyaml the loader falls back to PyYAML's SafeLoader; positions and types must agree."""
    write("acme.yaml", FULL)
    fast = load(["acme.yaml"])
    text = batch_text("startingBalance: '5000'\nname: 2026\nexpiresOn: 2026-12-31\n")
    fast_problems = problems(("m.yaml", text))
    monkeypatch.setattr(documents, "LOADER", yaml.SafeLoader)
    monkeypatch.setattr(fast_reader, "read", lambda data: None)  # the located reader alone
    assert load(["acme.yaml"]) == fast
    assert problems(("m.yaml", text)) == fast_problems


# --------------------------------------------------------------------------- the shipped examples

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_example_manifests_load():
    desired = load([EXAMPLES / "manifests"])
    assert desired.batches and desired.clients
    assert desired.policy_source is not None


def test_published_schema_file_is_up_to_date():
    published = json.loads((EXAMPLES / "manifests" / "manifest.schema.json").read_text())
    assert published == manifest_schema(), "regenerate it: provisioner schema > examples/manifests/manifest.schema.json"


def test_validating_a_parent_of_other_yaml_gives_one_issue_per_file(cli):
    """The examples hold CI workflows and pre-commit configs beside the manifests."""
    result = cli("validate", EXAMPLES)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    ci_files = sorted(str(path) for path in (EXAMPLES / "ci").iterdir() if path.suffix in (".yml", ".yaml"))
    assert len(ci_files) >= 2 and len(lines) == len(ci_files)
    for line, ci_file in zip(lines, ci_files, strict=True):
        assert line.removeprefix("Error: ").startswith(f"{ci_file}:1:1: not a provisioner manifest (")
        assert line.endswith("; pass the directory of your manifests, not a parent of other YAML files")


@pytest.mark.parametrize(
    ("name", "phrase"),
    [
        ('"Acme Q1 "', "starts or ends with spaces"),
        ('" Acme Q1"', "starts or ends with spaces"),
        ('"Acme\\tQ1"', "control character"),
        ('"Acme\\u0007Q1"', "control character"),
    ],
)
def test_a_name_a_server_could_store_differently_is_refused_with_its_place(cli, write_manifest, name, phrase):
    """Once, a server that trims names could not recognise its batch after a lost answer."""
    manifest = write_manifest(f"""
        clients:
          acme:
            id: 6a0c1d7e-3b2f-4c1a-9e8d-7f6a5b4c3d21
            batches:
              q1:
                name: {name}
                startingBalance: 10
        """)

    result = cli("validate", manifest)

    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{manifest}:6:15:" in result.stderr and "clients.acme.batches.q1.name" in result.stderr
    assert phrase in result.stderr
