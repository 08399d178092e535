"""`provisioner show`, what finance reads: totals, expiries, formats for tools."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timezone
from pathlib import Path

from conftest import ACME_ID, call_api, init_state, run_subprocess
from finance_book import FAST, in_days

from provisioner.backends.file import FileWriter, read_state
from provisioner.core.models import Intent


def row(output: str, client: str, batch: str) -> str:
    """The table line of one batch, under its client's heading."""
    block = output[output.index(f"\n{client}: ") :]
    return next(line for line in block.splitlines() if re.match(rf"\s*!?\s+{re.escape(batch)} ", line))


# ------------------------------------------------------------------ text


def test_show_totals_per_client_and_in_all(finance, cli, monkeypatch):
    _, state = finance
    monkeypatch.delenv("TI_BASE_URL")  # recorded figures need no API
    result = cli("show", "--state", state)

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        "Credit batches as recorded in state at 2026-01-02 03:04 UTC (add --refresh for live figures):"
    )
    assert "Total: 3,900 credits issued, 550 used, 3,250 remaining, 100 expired unused." in result.stdout
    assert "acme: 3,500 credits issued, 250 used, 3,250 remaining, 0 expired unused" in result.stdout
    assert "globex: 400 credits issued, 300 used, 0 remaining, 100 expired unused" in result.stdout
    table = result.stdout[result.stdout.index("  client") : result.stdout.index("\nacme:")]
    assert re.search(r"\n\s+acme\s+3,500\s+250\s+3,250\s+0\s+3\n", table)
    assert re.search(r"\n\s+total\s+3,900\s+550\s+3,250\s+100\s+4\n", table)


def test_show_batches_with_names_dates_days_left_and_status(finance, cli):
    _, state = finance
    out = cli("show", "--state", state).stdout
    soon_date = in_days(4)[:10]

    assert re.fullmatch(
        rf"\s*!\s+soon\s+Acme spring workshop\s+1,000\s+250 \(25%\)\s+750\s+{soon_date} \(4 days left\)\s+"
        r"active, expires within 30 days",
        row(out, "acme", "soon"),
    ), out
    assert re.search(
        r"Acme annual\s+2,000\s+0 \(0%\)\s+2,000\s+\S+ \(100 days left\)\s+active$", row(out, "acme", "later")
    )
    assert re.search(r"forever\s+500\s+0 \(0%\)\s+500\s+never\s+active$", row(out, "acme", "forever"))
    assert re.search(
        r"2024 pilot\s+400\s+300 \(75%\)\s+0\s+2024-06-30\s+expired, 100 unused$", row(out, "globex", "pilot-2024")
    )
    assert "Expiring within 30 days: 1 batch, 750 credits unused (marked !)." in out
    assert "T23:59:59" not in out  # dates, not API timestamps


def test_expiring_within_sets_the_marker(finance, cli):
    _, state = finance
    narrow = cli("show", "--state", state, "--expiring-within", "3").stdout
    wide = cli("show", "--state", state, "--expiring-within", "120").stdout

    assert "Expiring within" not in narrow and "!" not in row(narrow, "acme", "soon")
    assert "Expiring within 120 days: 2 batches, 2,750 credits unused (marked !)." in wide
    assert row(wide, "acme", "later").lstrip().startswith("!")
    assert not row(wide, "acme", "forever").lstrip().startswith("!")
    refused = cli("show", "--state", state, "--expiring-within", "-1")
    assert refused.exit_code == 1 and "Traceback" not in refused.output


def test_show_refresh_reads_live_figures_and_says_when(finance, cli, sandbox):
    _, state = finance
    later = read_state(state).resources["acme/later"].batch_id
    call_api(sandbox, "PUT", f"/incoming/v2/clients/creditBatches/{later}", {"currentBalance": 1500})

    recorded = cli("show", "--state", state).stdout
    before = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    live = cli("show", "--state", state, "--refresh", *FAST)

    assert "acme: 3,500 credits issued, 250 used" in recorded  # state alone cannot know
    assert live.exit_code == 0, live.output
    stamp = re.match(r"Credit batches live from the API at (\S+ \S+) UTC:", live.stdout)
    assert stamp, live.stdout
    assert datetime.strptime(stamp[1], "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc) >= before
    assert "acme: 3,500 credits issued, 750 used, 2,750 remaining" in live.stdout
    assert "Refreshing: listing the batches of 2 client(s)" in live.stderr


def test_show_refresh_marks_a_batch_gone_from_the_api_and_counts_it_unknown(finance, cli):
    _, state = finance
    document = json.loads(state.read_text())
    document["resources"]["acme/forever"]["batch_id"] = "00000000-0000-4000-8000-000000000000"
    state.write_text(json.dumps(document))

    shown = cli("show", "--state", state, "--refresh", *FAST)

    assert shown.exit_code == 0
    assert re.search(r"forever\s+500\s+\?\s+\?\s+never\s+missing from the API$", row(shown.stdout, "acme", "forever"))
    assert "500 unknown (batches the API no longer lists)" in shown.stdout
    report = json.loads(cli("show", "--state", state, "--refresh", "--format", "json", *FAST).stdout)
    assert report["totals"]["unknown"] == 500
    gone = next(batch for batch in report["batches"] if batch["address"] == "acme/forever")
    assert (gone["status"], gone["current_balance"], gone["unknown"]) == ("missing", None, 500)


def test_show_as_a_real_process(finance, api_env):
    _, state = finance
    result = run_subprocess("show", "--state", state, "--refresh", *FAST, env=api_env)
    assert result.returncode == 0, result.stderr
    assert "globex: 400 credits issued, 300 used" in result.stdout
    assert "Refreshed: 4 batches found (" in result.stderr
    assert "Refreshed" not in result.stdout  # progress stays off the table


def test_show_of_an_empty_state(cli, tmp_path):
    result = cli("show", "--state", init_state(tmp_path / "none.json"))
    assert result.exit_code == 0
    assert result.stdout == "No batches recorded in this state file yet.\n"
    as_json = json.loads(cli("show", "--state", tmp_path / "none.json", "--format", "json").stdout)
    assert as_json["batches"] == [] and as_json["totals"]["issued"] == 0
    assert as_json["figures"]["source"] == "recorded" and as_json["figures"]["as_of"]  # when init wrote it


def test_show_without_a_state_names_the_states_that_exist_after_the_quick_start(tmp_path):
    examples = Path(__file__).resolve().parents[2] / "examples" / "manifests"
    quick_start = run_subprocess("apply", examples, "--sandbox", "--auto-approve", cwd=tmp_path)
    assert quick_start.returncode == 0, quick_start.stderr
    assert run_subprocess("init", "--workspace", "staging", cwd=tmp_path).returncode == 0

    for command in (["show"], ["state", "list"], ["state", "pull"], ["state", "show", "acme/q1"]):
        result = run_subprocess(*command, cwd=tmp_path)
        assert result.returncode == 1, (command, result.stdout)
        assert result.stderr == (
            "Error: there is no state at state/default.json. These states exist:\n"
            "  - state/sandbox.json: add --sandbox\n"
            "  - state/staging.json: add --workspace staging\n"
        ), command
    elsewhere = run_subprocess("show", "--state", "typo.json", cwd=tmp_path)
    assert "  - state/sandbox.json: --sandbox, without --state\n" in elsewhere.stderr
    planned = run_subprocess("plan", examples, cwd=tmp_path)  # a plan may be a first run: init stays
    assert planned.returncode == 1
    assert "These states exist: state/sandbox.json (add --sandbox)" in planned.stderr
    assert "provisioner init" in planned.stderr
    assert "Acme" in run_subprocess("show", "--sandbox", cwd=tmp_path).stdout


def test_show_quiet_and_its_own_words_for_at(finance, cli, tmp_path):
    _, state = finance
    help_text = " ".join(cli("show", "--help").stdout.split())
    assert "Report as of this moment instead of now" in help_text and "grants are expanded" not in help_text
    out = tmp_path / "credits.csv"
    loud = cli("show", "--state", state, "--out", out, "--format", "csv", "--at", "2026-01-01T00:00:00Z")
    assert "Wrote the credits report (csv)" in loud.stderr and "reporting as of 2026-01-01" in loud.stderr
    quiet = cli("show", "--state", state, "--out", out, "--format", "csv", "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == "" and out.read_text(encoding="utf-8-sig").startswith("client,")


def test_show_gives_the_last_usable_day_of_an_expiry_at_midnight(cli, api_env, sandbox, write_manifest, state):
    manifest = write_manifest(f"""
        clients:
          acme:
            id: {ACME_ID}
            batches:
              midnight:
                startingBalance: 100
                expiresOn: 2030-04-01T00:00:00Z
              second:
                startingBalance: 100
                expiresOn: 2030-04-01T00:00:01Z
              berlin:
                startingBalance: 100
                expiresOn: 2030-05-01T00:00:00+02:00
        """)
    assert cli("apply", manifest, "--state", state, "--auto-approve", *FAST).exit_code == 0
    at = ("--at", "2030-03-20T12:00:00Z")
    text = cli("show", "--state", state, *at).stdout
    assert re.search(r"midnight .* 2030-03-31 \(11 days left\)", text), text
    assert re.search(r"second .* 2030-04-01 until 00:00:01 \(12 days left\)", text), text
    assert re.search(r"berlin .* 2030-04-30 until 22:00 \(41 days left\)", text), text
    rows = {
        r["batch"]: r for r in csv.DictReader(io.StringIO(cli("show", "--state", state, "--format", "csv", *at).stdout))
    }
    assert [rows[b]["last_usable_day"] for b in ("midnight", "second", "berlin")] == [
        "2030-03-31",
        "2030-04-01",
        "2030-04-30",
    ]
    months = json.loads(cli("show", "--state", state, "--format", "json", *at).stdout)["expiring_by_month"]
    assert [(m["month"], m["batches"]) for m in months[:3]] == [("2030-03", 1), ("2030-04", 2), ("2030-05", 0)]
    html = cli("show", "--state", state, "--format", "html", *at).stdout
    assert "2030-03-31 (11 days left)" in html and "2030-04-01 (" not in html


def test_show_mentions_an_interrupted_create(finance, cli):
    _, state = finance
    writer = FileWriter(state)
    attributes = {"clientId": ACME_ID, "name": "extra", "startingBalance": 5}
    writer.record_intent(
        Intent(
            address="acme/extra", client_id=ACME_ID, attributes=attributes, digest="d", at="2026-01-01T00:00:00.000Z"
        )
    )
    del writer  # killed before its first checkpoint: only the journal knows
    out = cli("show", "--state", state).stdout
    assert "an apply was interrupted while creating acme/extra" in out
    assert json.loads(cli("show", "--state", state, "--format", "json").stdout)["interrupted"] == ["acme/extra"]


# ------------------------------------------------------------------ JSON and CSV


def test_show_json_is_versioned_and_adds_up(finance, cli):
    _, state = finance
    report = json.loads(cli("show", "--state", state, "--format", "json").stdout)

    assert report["format_version"] == "1.2"
    assert report["figures"] == {"source": "recorded", "as_of": "2026-01-02T03:04:00.000Z"}
    assert report["expiring_within_days"] == 30
    totals = report["totals"]
    assert {k: totals[k] for k in ("issued", "used", "remaining", "expired_unused", "unknown")} == {
        "issued": 3900,
        "used": 550,
        "remaining": 3250,
        "expired_unused": 100,
        "unknown": 0,
    }
    assert totals["expiring_soon"] == {"batches": 1, "credits": 750}
    for part in [totals, *report["clients"], *report["batches"]]:
        assert part["issued"] == part["used"] + part["remaining"] + part["expired_unused"] + part["unknown"]
    assert sum(client["issued"] for client in report["clients"]) == totals["issued"]
    soon = next(batch for batch in report["batches"] if batch["address"] == "acme/soon")
    assert soon["name"] == "Acme spring workshop"
    assert (soon["days_left"], soon["expiring_soon"], soon["status"]) == (4, True, "active")
    assert soon["expiry_date"] == soon["last_usable_day"] == in_days(4)[:10]  # at 23:59:59: the same day
    forever = next(batch for batch in report["batches"] if batch["address"] == "acme/forever")
    assert (forever["expires_on"], forever["expiry_date"], forever["last_usable_day"], forever["days_left"]) == (
        None,
        None,
        None,
        None,
    )
    months = report["expiring_by_month"]
    assert len(months) == 12
    assert months[0]["month"] == datetime.now(timezone.utc).strftime("%Y-%m")
    assert sum(month["credits"] for month in months) == 750 + 2000  # soon and later, within 12 months
    assert report["upcoming_grants"] == []


def test_show_json_format_is_documented(finance, cli):
    """Every key the report prints is described in docs/show-json.md."""
    _, state = finance
    report = json.loads(cli("show", "--state", state, "--format", "json").stdout)
    doc = (Path(__file__).resolve().parents[2] / "docs" / "show-json.md").read_text(encoding="utf-8")
    keys = set(report) | set(report["totals"]) | set(report["figures"]) | set(report["batches"][0])
    keys |= set(report["clients"][0]) | set(report["expiring_by_month"][0]) | set(report["totals"]["expiring_soon"])
    undocumented = sorted(key for key in keys if f'"{key}"' not in doc)
    assert undocumented == []
    assert f'"format_version": "{report["format_version"]}"' in doc


def test_show_csv_one_row_per_batch_for_a_spreadsheet(finance, cli, tmp_path):
    _, state = finance
    printed = cli("show", "--state", state, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(printed.stdout, newline="")))

    assert [r["address"] for r in rows] == ["acme/forever", "acme/later", "acme/soon", "globex/pilot-2024"]
    soon = rows[2]
    assert soon["name"] == "Acme spring workshop"
    assert (soon["issued"], soon["used"], soon["remaining"]) == ("1000", "250", "750")  # plain numbers
    assert (soon["expiring_soon"], soon["days_left"], soon["last_usable_day"]) == ("yes", "4", in_days(4)[:10])
    assert rows[0]["last_usable_day"] == "never" and rows[0]["days_left"] == ""
    assert "expiry_date" not in rows[0]  # the date of the instant reads a day late at midnight
    assert rows[3]["expired_unused"] == "100" and rows[3]["status"] == "expired"
    assert sum(int(r["issued"]) for r in rows) == 3900  # no totals row to count twice
    assert printed.stdout.startswith("client,batch,address,name,")

    out = tmp_path / "credits.csv"
    written = cli("show", "--state", state, "--format", "csv", "--out", out)
    assert written.exit_code == 0 and written.stdout == ""
    assert "Wrote the credits report (csv) to" in written.stderr
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")  # a BOM: spreadsheets then read UTF-8 names right
    assert out.read_text(encoding="utf-8-sig").replace("\r\n", "\n") == printed.stdout.replace("\r\n", "\n")


def test_csv_cells_never_run_as_formulas(cli, api_env, sandbox, write_manifest, tmp_path):
    manifest = write_manifest(f"""
        clients:
          acme:
            id: {ACME_ID}
            batches:
              q1:
                name: "=HYPERLINK(\\"http://example.invalid\\")"
                startingBalance: 10
        """)
    state = init_state(tmp_path / "state.json")
    assert cli("apply", manifest, "--state", state, "--auto-approve", *FAST).exit_code == 0
    rows = list(csv.DictReader(io.StringIO(cli("show", "--state", state, "--format", "csv").stdout, newline="")))
    assert rows[0]["name"] == '\'=HYPERLINK("http://example.invalid")'


def test_show_refuses_to_write_over_its_state_or_a_manifest(finance, cli):
    manifest, state = finance
    before = state.read_bytes()
    for target in (state, manifest):
        refused = cli("show", "--state", state, "--format", "json", "--out", target)
        assert refused.exit_code == 1
        assert "Nothing was written" in refused.stderr and "Traceback" not in refused.output
    assert state.read_bytes() == before
