"""What CI and reviewers read: `plan --format json|markdown`, `--detailed-exitcode`, `provisioner schema`.

One realistic plan drives the format tests: against applied state, a manifest that creates, renames,
changes a fixed field (blocked) and breaks a guardrail.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import (
    ACCOUNT_ID,
    ACME_ID,
    GLOBEX_ID,
    TEST_KEY,
    run_subprocess,
    two_client_manifest,
)
from markdown_it import MarkdownIt

from provisioner.render.markdown import escape_markdown
from provisioner.sandbox import Sandbox

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCHEMA_FILE = EXAMPLES / "manifests" / "manifest.schema.json"
SCHEMA_COMMENT = "# yaml-language-server: $schema=manifest.schema.json"

REVIEWED_MANIFEST = f"""
policy:
  maxBatchCredits: 50000
clients:
  acme:
    id: {ACME_ID}
    creditAccountId: {ACCOUNT_ID}
    batches:
      q1:
        name: Acme Q1 renamed
        startingBalance: 5000
        expiresOn: 2030-03-31T23:59:59Z
      q2:
        startingBalance: 2500
      q3:
        name: Acme | Q3 *bonus*
        startingBalance: 4000
  globex:
    id: {GLOBEX_ID}
    batches:
      starter:
        startingBalance: 1300
      huge:
        startingBalance: 60000
"""

# The examples the manual shows (docs/reviewing.md), each with what it must print for the plan above.
JQ_EXAMPLES = {
    ".summary.credits": "64000",
    '[.changes[] | select(.action == "create") | .address]': '["acme/q3","globex/huge"]',
    ".summary.credits_by_client": '{"acme":4000,"globex":60000}',
    '[.changes[] | select(.action == "blocked" or .action == "missing") | .address]': '["globex/starter"]',
    ".violations | length": "1",
}


@pytest.fixture
def reviewed(cli, api_env, sandbox, write_manifest, state):
    """The manifest under review, against the state of an earlier apply."""
    manifest = write_manifest(two_client_manifest(acme_balance=5000))
    assert cli("apply", manifest, "--state", state, "--auto-approve").exit_code == 0
    return write_manifest(REVIEWED_MANIFEST)


def plan_output(cli, manifest, state, output_format: str, *flags) -> str:
    """The plan printed; a plan that cannot be applied (the reviewed one) is printed whole, then refused."""
    result = cli("plan", manifest, "--state", state, "--format", output_format, *flags)
    refused = "Error: this plan cannot be applied: " in result.stderr
    assert result.exit_code == (1 if refused else 0), result.output
    return result.stdout


# ------------------------------------------------------------------ JSON


def test_json_plan_is_versioned_and_describes_every_change(cli, reviewed, state):
    document = json.loads(plan_output(cli, reviewed, state, "json"))

    assert document["format_version"] == "1.2"
    by_address = {change["address"]: change for change in document["changes"]}
    assert list(by_address) == ["acme/q1", "acme/q3", "globex/huge", "globex/starter"]  # sorted
    for change in document["changes"]:
        assert {"address", "action", "before", "after", "reasons", "credits"} <= set(change)
    assert by_address["acme/q1"]["action"] == "update"
    assert by_address["acme/q1"]["before"]["name"] == "Acme Q1"
    assert by_address["acme/q1"]["after"]["name"] == "Acme Q1 renamed"
    assert by_address["acme/q1"]["credits"] == 0
    assert by_address["acme/q3"] == {
        "address": "acme/q3",
        "client": "acme",
        "action": "create",
        "before": None,
        "after": {
            "clientId": ACME_ID,
            "creditAccountId": ACCOUNT_ID,
            "name": "Acme | Q3 *bonus*",
            "startingBalance": 4000,
        },
        "reasons": [],
        "credits": 4000,
    }
    blocked = by_address["globex/starter"]
    assert blocked["action"] == "blocked" and blocked["credits"] == 0
    assert (blocked["before"]["startingBalance"], blocked["after"]["startingBalance"]) == (1200, 1300)
    assert any("cannot be changed" in reason for reason in blocked["reasons"])
    assert document["summary"] == {
        "create": 2,
        "update": 1,
        "blocked": 1,
        "recover": 0,
        "replace": 0,
        "missing": 0,
        "unchanged": 1,
        "credits": 64000,
        "credits_by_client": {"acme": 4000, "globex": 60000},
    }
    assert document["violations"] == [
        {
            "rule": "maxBatchCredits",
            "limit": 50000,
            "actual": 60000,
            "address": "globex/huge",
            "message": "globex/huge issues 60,000 credits, more than the largest batch allowed (50,000, policy "
            "maxBatchCredits).",
        }
    ]


def python_equivalent(expression: str, document: dict):
    """What each jq example of the manual computes, written in Python."""
    changes = document["changes"]
    return {
        ".summary.credits": lambda: document["summary"]["credits"],
        '[.changes[] | select(.action == "create") | .address]': lambda: [
            c["address"] for c in changes if c["action"] == "create"
        ],
        ".summary.credits_by_client": lambda: document["summary"]["credits_by_client"],
        '[.changes[] | select(.action == "blocked" or .action == "missing") | .address]': lambda: [
            c["address"] for c in changes if c["action"] in ("blocked", "missing")
        ],
        ".violations | length": lambda: len(document["violations"]),
    }[expression]()


@pytest.mark.parametrize("expression", list(JQ_EXAMPLES))
def test_readme_jq_examples(cli, reviewed, state, expression):
    text = plan_output(cli, reviewed, state, "json")
    expected = json.loads(JQ_EXAMPLES[expression])
    assert python_equivalent(expression, json.loads(text)) == expected
    if shutil.which("jq"):  # and with jq itself where it is installed
        printed = subprocess.run(["jq", "-c", expression], input=text, capture_output=True, text=True, check=True)
        assert json.loads(printed.stdout) == expected


def test_json_stdout_stays_pure_with_out_and_refresh(api_env, reviewed, state, tmp_path):
    plan_file = tmp_path / "plan.json"
    result = run_subprocess(
        "plan", reviewed, "--state", state, "--format", "json", "--refresh", "--out", plan_file, env=api_env
    )
    assert result.returncode == 1, result.stderr  # a blocked change and a violation: printed, then refused
    document = json.loads(result.stdout)  # progress, the saved-plan note and the refusal went to stderr
    assert document["summary"]["credits"] == 64000
    assert "Saved the plan" in result.stderr and "cannot be applied" in result.stderr
    # The saved plan embeds the same JSON plan: `jq .plan.summary plan.json` reads it.
    assert json.loads(plan_file.read_text())["plan"]["summary"] == document["summary"]


# ------------------------------------------------------------------ Markdown


def markdown_tokens(text: str):
    return MarkdownIt("commonmark").enable("table").parse(text)


def table_rows(tokens) -> list[list[list[str]]]:
    """Each table as rows of cell texts (inline content as written, escapes kept)."""
    tables, cell_open = [], False
    for token in tokens:
        if token.type == "table_open":
            tables.append([])
        elif token.type == "tr_open":
            tables[-1].append([])
        elif token.type in ("th_open", "td_open"):
            cell_open = True
        elif token.type in ("th_close", "td_close"):
            cell_open = False
        elif token.type == "inline" and cell_open:
            tables[-1][-1].append(token.content)
    return tables


def test_markdown_summary_comes_first(cli, reviewed, state):
    text = plan_output(cli, reviewed, state, "markdown")
    tokens = markdown_tokens(text)
    assert tokens[0].type == "paragraph_open"
    assert tokens[1].content == "**Plan: 2 to create, 1 to update, 1 blocked, 1 unchanged — 64,000 credits to issue**"
    assert text.splitlines()[0] == tokens[1].content


def test_markdown_puts_blocked_changes_and_violations_above_the_tables(cli, reviewed, state):
    tokens = markdown_tokens(plan_output(cli, reviewed, state, "markdown"))
    first_table = next(i for i, t in enumerate(tokens) if t.type == "table_open")
    first_heading = next(i for i, t in enumerate(tokens) if t.type == "heading_open")
    list_items = [tokens[i + 2].content for i, t in enumerate(tokens) if t.type == "list_item_open"]
    problem_positions = [i for i, t in enumerate(tokens) if t.type == "list_item_open"]
    assert max(problem_positions) < min(first_table, first_heading)
    assert any(item.startswith("⛔ **globex/starter** cannot be applied") for item in list_items)
    assert any(item.startswith("⚠️ **Guardrail:** globex/huge issues 60,000 credits") for item in list_items)


def test_markdown_has_a_well_formed_table_per_client(cli, reviewed, state):
    tokens = markdown_tokens(plan_output(cli, reviewed, state, "markdown"))
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open" and t.tag == "h3"]
    _, *tables = table_rows(tokens)  # the first is the per-client summary

    assert headings == ["acme", "globex"]
    assert len(tables) == 2
    for rows in tables:
        assert rows[0] == ["Action", "Batch", "Credits", "Details"]
        assert all(len(row) == 4 for row in rows), rows
    acme, globex = tables
    assert [(row[0], row[1], row[2]) for row in acme[1:]] == [("🔄 update", "q1", "—"), ("➕ create", "q3", "4,000")]
    assert [(row[0], row[1], row[2]) for row in globex[1:]] == [
        ("➕ create", "huge", "60,000"),
        ("⛔ blocked", "starter", "—"),
    ]
    issued = sum(int(row[2].replace(",", "")) for rows in tables for row in rows[1:] if row[2] != "—")
    assert issued == 64000
    # A pipe and emphasis in a name stay inside their cell, as literal text.
    html = MarkdownIt("commonmark").enable("table").render(plan_output(cli, reviewed, state, "markdown"))
    assert "Acme | Q3 *bonus*" in html and "<em>bonus</em>" not in html


def test_markdown_folds_the_full_plan_in_details(cli, reviewed, state):
    text = plan_output(cli, reviewed, state, "markdown")
    tokens = markdown_tokens(text)
    kinds = [(t.type, t.content.strip()) for t in tokens if t.type in ("html_block", "fence") and t.info != "mermaid"]
    assert [kind for kind, _ in kinds] == ["html_block", "fence", "html_block"]
    assert kinds[0][1] == "<details><summary>Full plan</summary>"
    assert kinds[2][1] == "</details>"
    full = next(t for t in tokens if t.type == "fence" and t.info == "diff")
    assert full.info == "diff"
    assert "Plan: 2 to create, 1 to update, 1 blocked, 1 unchanged." in full.content
    assert text.rstrip().endswith("</details>")


def test_markdown_without_changes(cli, api_env, sandbox, write_manifest, state):
    manifest = write_manifest(two_client_manifest())
    assert cli("apply", manifest, "--state", state, "--auto-approve").exit_code == 0
    text = plan_output(cli, manifest, state, "markdown")
    assert text.startswith("**No changes.**")
    assert table_rows(markdown_tokens(text)) == []


def test_markdown_per_client_table_sits_outside_the_folded_plan(cli, reviewed, state):
    """The subtotals a reviewer checks first are not hidden in <details>."""
    text = plan_output(cli, reviewed, state, "markdown")
    visible = text[: text.index("<details>")]

    summary = table_rows(markdown_tokens(visible))[0]
    assert summary == [
        ["Client", "Creates", "Updates", "Credits"],
        ["acme", "1", "1", "4,000"],
        ["globex", "1", "0", "60,000"],
        ["**Total**", "**2**", "**1**", "**64,000**"],
    ]
    document = json.loads(plan_output(cli, reviewed, state, "json"))
    assert {row[0]: int(row[3].replace(",", "")) for row in summary[1:3]} == document["summary"]["credits_by_client"]


def test_markdown_has_a_small_mermaid_chart_of_credits_per_client(cli, reviewed, state):
    tokens = markdown_tokens(plan_output(cli, reviewed, state, "markdown"))
    (chart,) = [t for t in tokens if t.type == "fence" and t.info == "mermaid"]
    lines = chart.content.splitlines()
    assert lines[0] == "pie showData title Credits to issue per client"
    assert [line.strip() for line in lines[1:]] == ['"globex" : 60000', '"acme" : 4000']


def test_markdown_chart_keeps_to_the_largest_clients(cli, write_manifest, state):
    clients = "".join(
        f"""
  c{i:02d}:
    id: 00000000-0000-4000-8000-0000000000{i:02d}
    batches:
      b:
        startingBalance: {100 * (i + 1)}
"""
        for i in range(12)
    )
    text = plan_output(cli, write_manifest("clients:" + clients), state, "markdown")
    chart = next(t for t in markdown_tokens(text) if t.type == "fence" and t.info == "mermaid")
    slices = chart.content.splitlines()[1:]
    assert len(slices) == 9  # 8 clients and the others together
    assert slices[0].strip() == '"c11" : 1200'
    assert slices[-1].strip() == f'"4 other clients" : {100 + 200 + 300 + 400}'


def test_markdown_raw_text_has_no_escaped_arrows_and_one_word_for_no_expiry(
    cli, api_env, sandbox, write_manifest, state
):
    manifest = write_manifest(two_client_manifest())
    assert cli("apply", manifest, "--state", state, "--auto-approve").exit_code == 0
    # acme/q2 had no expiry and gets one; acme/q1 is renamed.
    write_manifest(
        two_client_manifest(acme_name="Acme Q1 renamed").replace(
            "startingBalance: 2500", "startingBalance: 2500\n            expiresOn: 2031-01-01T00:00:00Z"
        )
    )
    text = plan_output(cli, manifest, state, "markdown")

    assert "\\>" not in text and "-\\>" not in text
    assert "name: Acme Q1 → Acme Q1 renamed" in text
    assert "expiresOn: never → 2031-01-01T00:00:00.000Z" in text
    assert "expiresOn = never -> " in plan_output(cli, manifest, state, "text")
    assert "(none)" not in text


@pytest.mark.parametrize(
    "declared, fix",
    [
        (
            6000,
            "Fix: to add 1,000 credits, declare a new batch of 1,000 (a new key, e.g. q1-topup with "
            "startingBalance: 1000) and put startingBalance back to 5,000 here.",
        ),
        (
            4000,
            "Fix: put startingBalance back to 5,000: credits a batch was given cannot be taken back by lowering it.",
        ),
    ],
)
def test_a_changed_starting_balance_says_how_to_top_up_with_the_numbers(
    cli, api_env, sandbox, write_manifest, state, declared, fix
):
    """Once, 'declare a new batch for the new value' read as 'a batch of the new total'."""
    manifest = write_manifest(two_client_manifest())
    assert cli("apply", manifest, "--state", state, "--auto-approve").exit_code == 0
    write_manifest(two_client_manifest(acme_balance=declared))

    text = plan_output(cli, manifest, state, "text")
    document = json.loads(plan_output(cli, manifest, state, "json"))
    markdown = plan_output(cli, manifest, state, "markdown")

    assert f"    {fix}" in text
    assert document["changes"][0]["reasons"][-1] == fix
    assert escape_markdown(fix) in markdown


def test_one_word_for_no_expiry_in_plan_and_show(cli, api_env, sandbox, write_manifest, state):
    """Once, show said 'never' where the plan's usage table said '(none)'."""
    manifest = write_manifest(two_client_manifest())
    assert cli("apply", manifest, "--state", state, "--auto-approve").exit_code == 0

    plan = plan_output(cli, manifest, state, "text", "--refresh")
    markdown = plan_output(cli, manifest, state, "markdown", "--refresh")
    show = cli("show", "--state", state).stdout

    usage = next(line for line in plan.splitlines() if line.strip().startswith("acme/q2"))
    assert usage.split()[-1] == "never"
    assert "| acme/q2 | 2,500 | 2,500 | 0 (0%) | active | never |" in markdown
    assert re.search(r"\bq2\b.*\bnever\b", show)
    assert "(none)" not in plan + markdown + show


# ------------------------------------------------------------------ exit codes


def test_detailed_exitcode_0_2_and_1_as_real_processes(api_env, sandbox, write_manifest, state):
    manifest = write_manifest(two_client_manifest())
    changes = run_subprocess("plan", manifest, "--state", state, "--detailed-exitcode", env=api_env)
    assert changes.returncode == 2, changes.stderr
    assert "Plan: 3 to create" in changes.stdout

    applied = run_subprocess("apply", manifest, "--state", state, "--auto-approve", "--rate-limit", "0", env=api_env)
    assert applied.returncode == 0, applied.stderr
    clean = run_subprocess("plan", manifest, "--state", state, "--detailed-exitcode", env=api_env)
    assert clean.returncode == 0, clean.stderr
    assert "No changes." in clean.stdout

    write_manifest(two_client_manifest().replace("startingBalance: 2500", "startingBalence: 2500"))
    broken = run_subprocess("plan", manifest, "--state", state, "--detailed-exitcode", env=api_env)
    assert broken.returncode == 1
    assert "did you mean 'startingBalance'?" in broken.stderr
    assert "Traceback" not in broken.stderr and broken.stdout == ""


def test_without_detailed_exitcode_changes_exit_0(cli, write_manifest, state):
    assert cli("plan", write_manifest(two_client_manifest()), "--state", state).exit_code == 0


def test_detailed_exitcode_1_for_a_damaged_state(cli, write_manifest, state):
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text("{ not json")
    result = cli("plan", write_manifest(two_client_manifest()), "--state", state, "--detailed-exitcode")
    assert result.exit_code == 1
    assert "not valid JSON" in result.stderr


def test_a_plan_that_cannot_be_applied_prints_the_whole_plan_then_the_reason_and_exits_1(
    cli, api_env, sandbox, write_manifest, state
):
    manifest = write_manifest(two_client_manifest())
    assert cli("apply", manifest, "--state", state, "--auto-approve").exit_code == 0
    write_manifest(two_client_manifest(acme_balance=9999))
    for exitcode in ([], ["--detailed-exitcode"]):
        result = cli("plan", manifest, "--state", state, *exitcode, "--format", "json")
        assert result.exit_code == 1, result.output
        assert [c["action"] for c in json.loads(result.stdout)["changes"]] == ["blocked"]  # the whole plan
        assert "Error: this plan cannot be applied: 1 change is blocked (marked '!' above)" in result.stderr
    text = cli("plan", manifest, "--state", state, "--out", state.parent / "p.plan")
    assert text.exit_code == 1
    assert "# acme/q1 cannot be applied" in text.stdout and "Plan: 0 to create" in text.stdout
    assert "apply refuses it as it stands" in text.stderr and "Apply exactly this plan" not in text.stderr
    assert text.stderr.rstrip().splitlines()[-1].startswith("Error: this plan cannot be applied")


def test_detailed_exitcode_1_when_recorded_batches_are_missing_from_the_api(
    cli, api_env, sandbox, write_manifest, state
):
    # Drift that apply refuses to touch is not a clean plan, nor one CI may apply.
    manifest = write_manifest(two_client_manifest())
    assert cli("apply", manifest, "--state", state, "--auto-approve").exit_code == 0
    with Sandbox(api_key=TEST_KEY) as empty:
        result = cli("plan", manifest, "--state", state, "--refresh", "--base-url", empty.url, "--detailed-exitcode")
    assert result.exit_code == 1, result.output
    assert "is recorded but no longer found in the API" in result.stdout
    assert "recorded batches are missing from the API" in result.stderr


def test_terraform_one_dash_spellings_are_accepted(cli, api_env, sandbox, write_manifest, state):
    manifest = write_manifest(two_client_manifest())
    planned = cli("plan", manifest, "--state", state, "-detailed-exitcode", f"-out={state.parent / 'p.plan'}")
    assert planned.exit_code == 2, planned.output
    assert (state.parent / "p.plan").exists()
    applied = cli("apply", manifest, "-state", state, "-auto-approve", "-no-color", "-lock-timeout=1m30s")
    assert applied.exit_code == 0, applied.output
    assert cli("state", "list", "-state", str(state)).stdout.count("acme/") == 2
    # A short option keeps its meaning; a word that is no option of the command is still refused.
    assert cli("plan", manifest, "--state", state, "-q").exit_code == 0
    unknown = cli("plan", manifest, "--state", state, "-detailed-exit")
    assert unknown.exit_code == 1 and "No such option" in unknown.stderr
    # The value of an option is never read as a spelling, even when it looks like one.
    assert cli("plan", manifest, "--state", state, "--replace", "-out").exit_code == 1
    bad_wait = cli("apply", manifest, "--state", state, "--lock-timeout", "5x")
    assert bad_wait.exit_code == 1 and "'5x' is not a number of seconds; write e.g. 60, 60s or 2m" in bad_wait.stderr


# ------------------------------------------------------------------ schema


def test_schema_command_prints_exactly_the_published_schema_file(cli):
    printed = cli("schema")
    assert printed.exit_code == 0
    assert printed.stdout == SCHEMA_FILE.read_text(encoding="utf-8"), (
        "regenerate it: provisioner schema > examples/manifests/manifest.schema.json"
    )


class EditorLoader(yaml.SafeLoader):
    """YAML as editors read it for the schema (YAML 1.2): timestamps stay text."""


EditorLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if not tag.endswith(":timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def schema_validator():
    jsonschema = pytest.importorskip("jsonschema", reason="the test extra installs jsonschema")
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)  # raises if it is not a valid JSON Schema
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def test_schema_is_valid_json_schema_and_accepts_every_example_manifest():
    validator = schema_validator()
    examples = sorted((EXAMPLES / "manifests").glob("*.yaml"))
    assert examples
    for path in examples:
        errors = list(validator.iter_errors(yaml.load(path.read_text(encoding="utf-8"), Loader=EditorLoader)))
        assert errors == [], f"{path.name}: {[error.message for error in errors]}"


@pytest.mark.parametrize(
    "manifest",
    [
        {"clients": {"acme": {"id": ACME_ID, "batches": {"q1": {"startingBalence": 5}}}}},
        {"clients": {"Acme": {"id": ACME_ID}}},
        {"clients": {"acme": {"id": ACME_ID, "batches": {"q1": {"startingBalance": -1}}}}},
        {"clients": {"acme": {"id": ACME_ID, "batches": {"q1": {"startingBalance": 5, "expiresOn": "2027-01-01"}}}}},
        {"policy": {"maxBatchCredits": "lots"}},
        {"clients": {"acme": {}}},
    ],
)
def test_schema_rejects_what_the_loader_rejects(manifest, tmp_path, cli):
    validator = schema_validator()
    assert list(validator.iter_errors(manifest)), manifest
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(manifest))
    assert cli("validate", path).exit_code == 1


def schema_target(manifest: Path) -> Path:
    """The file an editor's YAML language server opens for the manifest's $schema comment."""
    first_line = manifest.read_text(encoding="utf-8").splitlines()[0]
    assert first_line.startswith("# yaml-language-server: $schema="), manifest.name
    return (manifest.parent / first_line.split("$schema=", 1)[1]).resolve()


def test_example_manifests_point_editors_at_the_schema():
    for path in sorted((EXAMPLES / "manifests").glob("*.yaml")):
        assert path.read_text(encoding="utf-8").splitlines()[0] == SCHEMA_COMMENT, path.name
        assert schema_target(path) == SCHEMA_FILE.resolve()


def test_schema_comment_works_where_users_keep_manifests(cli, tmp_path):
    """Once, '../schema/...' pointed outside a user's manifests/ directory. The schema now sits
    beside the manifests, where `provisioner schema > manifests/manifest.schema.json` puts it."""
    repository = tmp_path / "our-credits"
    manifests = repository / "manifests"
    manifests.mkdir(parents=True)
    for example in ("acme.yaml", "policy.yaml"):
        shutil.copy(EXAMPLES / "manifests" / example, manifests / example)
    (manifests / "manifest.schema.json").write_text(cli("schema").stdout, encoding="utf-8")

    jsonschema = pytest.importorskip("jsonschema", reason="the test extra installs jsonschema")
    for manifest in sorted(manifests.glob("*.yaml")):
        target = schema_target(manifest)
        assert target == (manifests / "manifest.schema.json").resolve()
        validator = jsonschema.Draft202012Validator(json.loads(target.read_text(encoding="utf-8")))
        assert list(validator.iter_errors(yaml.load(manifest.read_text(encoding="utf-8"), Loader=EditorLoader))) == []
    validated = cli("validate", manifests)  # the schema beside them is not read as a manifest
    assert validated.exit_code == 0, validated.output
