import json
import re
import subprocess
import sys

import pytest
from markdown_it import MarkdownIt

from provisioner.core.models import Change, Plan, Violation
from provisioner.planning.plan_document import JSON_FORMAT_VERSION, plan_to_json, render_json
from provisioner.render.markdown import escape_markdown, render_markdown
from provisioner.render.text import render_text

ACME_ID = "6a0c1d7e-0000-4000-8000-000000000001"
GLOBEX_ID = "6a0c1d7e-0000-4000-8000-000000000002"
EXPIRY = "2026-12-31T23:59:59.000Z"


def violation(message="v", rule="maxApplyCredits", limit=1000, actual=5000, address=None):
    return Violation(rule=rule, limit=limit, actual=actual, address=address, message=message)


def attrs(client_id=ACME_ID, name="Batch", balance=1000, **extra):
    return {"clientId": client_id, "name": name, "startingBalance": balance, **extra}


def create(address="acme/2026-q1", balance=5000, name="Acme Q1 2026"):
    client = address.split("/")[0]
    client_id = ACME_ID if client == "acme" else GLOBEX_ID
    return Change(
        address=address,
        client_key=client,
        action="create",
        after=attrs(client_id, name, balance, expiresOn=EXPIRY),
        credits=balance,
    )


def update():
    return Change(
        address="acme/2026-q2",
        client_key="acme",
        action="update",
        before=attrs(name="Old"),
        after=attrs(name="New", expiresOn=EXPIRY),
    )


def blocked():
    return Change(
        address="globex/2026",
        client_key="globex",
        action="blocked",
        before=attrs(GLOBEX_ID, balance=100),
        after=attrs(GLOBEX_ID, balance=200),
        reasons=(
            "startingBalance cannot be changed by the API once a batch exists.",
            "Fix: declare a new batch (a new key) for the extra credits, or restore the old value.",
        ),
    )


def recover():
    return Change(
        address="acme/2026-q3",
        client_key="acme",
        action="recover",
        after=attrs(balance=300),
        credits=300,
        reasons=("an earlier create was interrupted; apply looks for the batch before creating it",),
    )


def replace():
    return Change(
        address="globex/2025",
        client_key="globex",
        action="replace",
        before=attrs(GLOBEX_ID, balance=700),
        after=attrs(GLOBEX_ID, balance=700),
        credits=700,
    )


def missing():
    return Change(
        address="globex/old",
        client_key="globex",
        action="missing",
        before=attrs(GLOBEX_ID, balance=50),
        reasons=("the batch is no longer found in the API; use `apply --replace globex/old` to recreate it",),
    )


def every_action_plan(**kwargs):
    return Plan(changes=(create(), update(), blocked(), recover(), replace(), missing()), **kwargs)


USAGE = {
    "address": "acme/2025",
    "batchId": "b-1",
    "startingBalance": 5000,
    "currentBalance": 3800,
    "allocatedCredits": 1200,
    "status": "active",
    "expiresOn": EXPIRY,
}


def parse_markdown(text):
    # "gfm-like" needs linkify-it-py, which is not a dependency; this is the same table grammar.
    return MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(text)


def tables(tokens):
    """Each table as a list of rows, each row a list of cell texts."""
    found, rows, row, in_cell = [], None, None, False
    for token in tokens:
        if token.type == "table_open":
            rows = []
        elif token.type == "tr_open":
            row = []
        elif token.type in ("th_open", "td_open"):
            in_cell = True
            row.append("")
        elif token.type in ("th_close", "td_close"):
            in_cell = False
        elif token.type == "inline" and in_cell:
            row[-1] = "".join(child.content for child in token.children if child.type in ("text", "code_inline"))
        elif token.type == "tr_close":
            rows.append(row)
        elif token.type == "table_close":
            found.append(rows)
    return found


# ---------------------------------------------------------------- text


def test_text_create_matches_terraform_layout():
    text = render_text(Plan(changes=(create(),)))
    assert text.startswith("provisioner will perform the following actions:\n")
    assert "  # acme/2026-q1 will be created\n" in text
    assert '  + batch "acme/2026-q1" {\n' in text
    assert f'      + clientId        = "{ACME_ID}"\n' in text
    assert f'      + expiresOn       = "{EXPIRY}"\n' in text
    assert '      + name            = "Acme Q1 2026"\n' in text
    assert "      + startingBalance = 5000\n    }\n" in text


def test_text_update_shows_only_changed_fields():
    text = render_text(Plan(changes=(update(),)))
    assert "  # acme/2026-q2 will be updated in place" in text
    assert '  ~ batch "acme/2026-q2" {' in text
    assert '      ~ name      = "Old" -> "New"' in text
    assert f'      ~ expiresOn = never -> "{EXPIRY}"' in text  # the one word for no expiry
    assert "startingBalance" not in text.split("Plan:")[0]
    assert "clientId" not in text


def test_text_blocked_marks_fixed_field_and_shows_reason_and_fix():
    text = render_text(Plan(changes=(blocked(),)))
    assert "  # globex/2026 cannot be applied" in text
    assert '  ! batch "globex/2026" {' in text
    assert "      ! startingBalance = 100 -> 200" in text
    assert "    Reason: startingBalance cannot be changed by the API once a batch exists." in text
    assert "    Fix: declare a new batch (a new key)" in text


def test_text_blocked_create_lists_what_would_be_sent():
    change = Change(
        address="acme/past",
        client_key="acme",
        action="blocked",
        after=attrs(expiresOn="2020-01-01T00:00:00.000Z"),
        reasons=("expiresOn 2020-01-01T00:00:00.000Z is in the past.",),
    )
    text = render_text(Plan(changes=(change,)))
    assert '  ! batch "acme/past" {' in text
    assert '      + expiresOn       = "2020-01-01T00:00:00.000Z"' in text
    assert "    Reason: expiresOn 2020-01-01T00:00:00.000Z is in the past." in text


def test_text_recover_replace_missing():
    text = render_text(Plan(changes=(recover(), replace(), missing())))
    assert '  ? batch "acme/2026-q3" {' in text
    assert "    Reason: an earlier create was interrupted" in text
    assert "  # globex/2025 will be replaced" in text
    assert '-/+ batch "globex/2025" {' in text
    assert "  # globex/old is recorded but no longer found in the API" in text
    assert '  ! batch "globex/old" {' in text
    assert "apply --replace globex/old" in text


def test_text_summary_counts_and_credit_totals():
    plan = Plan(
        changes=(create("acme/a", 5000), create("acme/b", 5000), create("globex/c", 5000), update(), blocked()),
        unchanged=4,
    )
    text = render_text(plan)
    assert "Plan: 3 to create, 1 to update, 1 blocked, 4 unchanged.\n" in text
    assert "Credits to issue: 15,000 (acme 10,000; globex 5,000).\n" in text


def test_text_summary_includes_recover_replace_missing_only_when_present():
    assert "recover" not in render_text(Plan(changes=(create(),))).split("Plan:")[1]
    text = render_text(every_action_plan(unchanged=2))
    assert "Plan: 1 to create, 1 to update, 1 to replace, 1 to recover, 1 blocked, 1 missing, 2 unchanged." in text
    assert "Credits to issue: 6,000 (acme 5,300; globex 700)." in text


def test_text_no_changes():
    text = render_text(Plan(unchanged=3))
    assert text == "No changes. Your credit batches match the manifests.\n"


def test_text_no_changes_still_shows_warnings():
    text = render_text(Plan(unchanged=3, warnings=("acme/old is recorded but no longer declared: left as is",)))
    assert text.startswith("No changes. Your credit batches match the manifests.")
    assert "Warning: acme/old is recorded but no longer declared: left as is" in text


def test_text_warnings_and_violations_come_before_summary():
    plan = Plan(
        changes=(create(),),
        warnings=("acme/old is recorded but no longer declared: left as is",),
        violations=(violation("acme/2026-q1: 5,000 credits exceeds max_batch_credits 1,000"),),
    )
    text = render_text(plan)
    warning = text.index("Warning: acme/old")
    broken = text.index("acme/2026-q1: 5,000 credits exceeds")
    assert "--allow-large" in text
    assert warning < text.index("Plan:") and broken < text.index("Plan:")


def test_text_info_table():
    text = render_text(Plan(unchanged=1, info=(USAGE,)))
    table = text.split("Credit usage")[1]
    assert "address" in table and "expires" in table
    row = next(line for line in table.splitlines() if "acme/2025" in line)
    assert row.split() == ["acme/2025", "5,000", "3,800", "1,200", "(24%)", "active", EXPIRY]


def test_text_without_color_has_no_ansi():
    hostile = create(name="evil \x1b[2J name")
    plan = Plan(
        changes=every_action_plan().changes + (hostile,), warnings=("w",), violations=(violation(),), info=(USAGE,)
    )
    text = render_text(plan)
    assert "\x1b" not in text
    assert "\\u001b[2J" in text


def test_text_with_color_uses_ansi_per_action():
    text = render_text(every_action_plan(violations=(violation(),)), color=True)
    assert "\x1b[32m+\x1b[0m" in text  # create, green
    assert "\x1b[33m~\x1b[0m" in text  # update, yellow
    assert "\x1b[31m!\x1b[0m" in text  # blocked, red
    assert "\x1b[36m?\x1b[0m" in text  # recover, cyan
    assert "\x1b[35m-/+\x1b[0m" in text  # replace, magenta


def test_text_layout_is_the_same_with_and_without_color():
    plan = every_action_plan(info=(USAGE,))
    coloured = re.sub(r"\x1b\[[0-9;]*m", "", render_text(plan, color=True))
    assert coloured == render_text(plan)


# ---------------------------------------------------------------- markdown


def test_markdown_summary_line_first():
    plan = Plan(changes=(create("acme/a", 5000), create("acme/b", 5000), create("globex/c", 5000), update()))
    first = render_markdown(plan).splitlines()[0]
    assert first == "**Plan: 3 to create, 1 to update — 15,000 credits to issue**"


def test_markdown_blocked_and_violations_on_top():
    plan = Plan(
        changes=(create(), blocked(), missing()), violations=(violation("acme/2026-q1 exceeds max_batch_credits"),)
    )
    text = render_markdown(plan)
    top = text[: text.index("### ")]
    assert "⛔ **globex/2026** cannot be applied" in top
    assert "⛔ **globex/old**" in top
    assert "⚠️" in top and "max\\_batch\\_credits" in top


def test_markdown_table_per_client_is_well_formed():
    text = render_markdown(every_action_plan(info=(USAGE,)))
    tokens = parse_markdown(text)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open" and t.tag == "h3"]
    assert headings[:2] == ["acme", "globex"]
    found = tables(tokens)
    assert len(found) == 4  # per client, acme, globex, usage
    for rows in found:
        assert all(len(row) == len(rows[0]) for row in rows)
    acme, globex = found[1], found[2]
    assert acme[0] == ["Action", "Batch", "Credits", "Details"]
    assert [row[1] for row in acme[1:]] == ["2026-q1", "2026-q2", "2026-q3"]
    assert acme[1][2] == "5,000"
    assert {row[0].split()[-1] for row in acme[1:] + globex[1:]} == {
        "create",
        "update",
        "blocked",
        "recover",
        "replace",
        "missing",
    }


def test_markdown_escapes_pipe_and_markdown_characters_in_cells():
    change = create(name="Acme | *bold* _x_ [link](y) <b>")
    text = render_markdown(Plan(changes=(change,)))
    rows = tables(parse_markdown(text))[1]
    assert len(rows[1]) == 4
    assert "name: Acme | *bold* _x_ [link](y) <b>" in rows[1][3]
    html = MarkdownIt("commonmark").enable("table").render(text)
    html = html[html.index("<h3>") :]
    html = html[html.index("<table>") : html.index("</table>")]
    assert "<strong>" not in html and "<em>" not in html and "<a " not in html and "<b>" not in html


def test_markdown_newline_in_value_does_not_break_the_table():
    text = render_markdown(Plan(changes=(create(name="two\nlines | here"),)))
    rows = tables(parse_markdown(text))[1]
    assert len(rows) == 2 and len(rows[1]) == 4


def test_escape_markdown_keeps_plain_text_readable():
    assert escape_markdown("acme/2026-q1") == "acme/2026-q1"
    assert escape_markdown("a|b") == "a\\|b"


def test_markdown_full_plan_in_details_diff_block():
    text = render_markdown(Plan(changes=(create(), update())))
    assert "<details><summary>Full plan</summary>" in text
    tokens = parse_markdown(text)
    fences = [t for t in tokens if t.type == "fence"]
    assert len(fences) == 1 and fences[0].info == "diff"
    assert '+   batch "acme/2026-q1" {' in fences[0].content
    assert "Plan: 1 to create, 1 to update" in fences[0].content
    assert text.rstrip().endswith("</details>")


def test_markdown_fence_survives_backticks_in_names():
    text = render_markdown(Plan(changes=(create(name="``` oops ````"),)))
    fences = [t for t in parse_markdown(text) if t.type == "fence"]
    assert len(fences) == 1 and "Plan: 1 to create" in fences[0].content


def test_markdown_no_changes():
    text = render_markdown(Plan(unchanged=2, warnings=("acme/old is recorded but no longer declared",)))
    assert text.startswith("**No changes.** Your credit batches match the manifests.")
    assert "acme/old is recorded but no longer declared" in text
    assert "<details>" not in text


# ---------------------------------------------------------------- json


def test_json_round_trips_every_action():
    plan = every_action_plan(unchanged=4, warnings=("w",), violations=(violation(),), info=(USAGE,))
    document = json.loads(render_json(plan))
    assert document == plan_to_json(plan)
    assert document["format_version"] == JSON_FORMAT_VERSION == "1.2"
    assert [c["action"] for c in document["changes"]] == [
        "create",
        "update",
        "blocked",
        "recover",
        "replace",
        "missing",
    ]
    rebuilt = Plan(
        changes=tuple(
            Change(
                address=c["address"],
                client_key=c["client"],
                action=c["action"],
                before=c["before"],
                after=c["after"],
                reasons=tuple(c["reasons"]),
                credits=c["credits"],
            )
            for c in document["changes"]
        ),
        unchanged=document["summary"]["unchanged"],
        warnings=tuple(document["warnings"]),
        violations=tuple(Violation(**v) for v in document["violations"]),
        info=tuple(document["info"]),
    )
    assert rebuilt == plan


def test_json_summary():
    summary = plan_to_json(every_action_plan(unchanged=4))["summary"]
    assert summary == {
        "create": 1,
        "update": 1,
        "blocked": 1,
        "recover": 1,
        "replace": 1,
        "missing": 1,
        "unchanged": 4,
        "credits": 6000,
        "credits_by_client": {"acme": 5300, "globex": 700},
    }


def test_json_change_shape():
    change = plan_to_json(Plan(changes=(blocked(),)))["changes"][0]
    assert set(change) == {"address", "client", "action", "before", "after", "reasons", "credits"}
    assert change["client"] == "globex"
    assert change["reasons"][0].startswith("startingBalance cannot be changed")


def test_json_has_changes_and_meta():
    assert plan_to_json(Plan(changes=(create(),)))["has_changes"] is True
    only_missing = plan_to_json(Plan(changes=(missing(),)))
    assert only_missing["has_changes"] is False
    assert "meta" not in only_missing
    meta = {"digest": "abc", "generated_at": "2026-01-01T00:00:00Z"}
    assert plan_to_json(Plan(), meta)["meta"] == meta


def test_json_is_sorted_and_indented():
    text = render_json(Plan(changes=(create(),)))
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True)


def test_json_does_not_share_mutable_state_with_plan():
    plan = Plan(changes=(create(),))
    plan_to_json(plan)["changes"][0]["after"]["name"] = "changed"
    assert plan.changes[0].after["name"] == "Acme Q1 2026"


@pytest.mark.parametrize("render", [render_text, render_markdown, render_json])
def test_every_renderer_handles_an_empty_plan(render):
    assert render(Plan())


# ---------------------------------------------------------------- the package


def test_reading_manifests_loads_nothing_but_the_shared_values_and_the_readers():
    code = (
        "import sys, provisioner.manifest.loader, provisioner.manifest.cache; "
        "print(*sorted(m for m in sys.modules if m.startswith('provisioner.')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded and all(m.startswith(("provisioner.core", "provisioner.manifest")) for m in loaded), loaded
