"""Guardrails: the plan lists every violation; apply refuses them (nothing created) unless allowed.

Limits come from the defaults, a manifest's `policy` section, and flags, in rising order of precedence.
"""

from __future__ import annotations

import json

import pytest
from conftest import ACME_ID, recorded_nothing

from provisioner.core.models import Policy

ONE_MILLION = 1_000_000


def manifest_text(balances: dict[str, int], policy: dict[str, int] | None = None) -> str:
    lines = []
    if policy:
        lines.append("policy:")
        lines += [f"  {name}: {value}" for name, value in policy.items()]
    lines += ["clients:", "  acme:", f"    id: {ACME_ID}", "    batches:"]
    for key, balance in balances.items():
        lines += [f"      {key}:", f"        startingBalance: {balance}"]
    return "\n".join(lines) + "\n"


def violation_objects(cli, manifest, state, *flags) -> list[dict]:
    result = cli("plan", manifest, "--state", state, "--format", "json", *flags)
    found = json.loads(result.stdout)["violations"]
    assert result.exit_code == (1 if found else 0), result.output  # a plan that breaks a guardrail fails
    return found


def violations(cli, manifest, state, *flags) -> list[str]:
    """The messages, as people read them."""
    return [violation["message"] for violation in violation_objects(cli, manifest, state, *flags)]


def assert_refused_without_creating(result, sandbox, state) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "guardrail" in result.stderr and "--allow-large" in result.stderr
    assert "nothing was changed" in result.stderr
    assert sandbox.all_batches() == []
    assert recorded_nothing(state)


# ------------------------------------------------------------------ defaults


def test_defaults_are_on():
    assert Policy() == Policy(max_batch_credits=ONE_MILLION, max_apply_credits=10_000_000, max_creates=1_000)


def test_default_largest_batch_is_one_million(cli, write_manifest, state):
    manifest = write_manifest(manifest_text({"exactly": ONE_MILLION, "above": ONE_MILLION + 1}))
    found = violations(cli, manifest, state)
    assert found == [
        "acme/above issues 1,000,001 credits, more than the largest batch allowed (1,000,000, policy maxBatchCredits)."
    ]


def test_default_most_credits_per_apply(cli, write_manifest, state):
    manifest = write_manifest(manifest_text({f"b{i}": ONE_MILLION for i in range(11)}))
    assert violations(cli, manifest, state) == [
        "this plan issues 11,000,000 credits in total, more than one apply may issue (10,000,000, policy "
        "maxApplyCredits)."
    ]


def test_default_most_creates_per_apply(cli, write_manifest, state):
    manifest = write_manifest(manifest_text({f"b{i}": 1 for i in range(1_001)}))
    assert violations(cli, manifest, state) == [
        "this plan creates 1,001 batches, more than one apply may create (1,000, policy maxCreates)."
    ]


def test_within_the_defaults_nothing_is_reported(cli, write_manifest, state):
    manifest = write_manifest(manifest_text({f"b{i}": ONE_MILLION for i in range(10)}))
    assert violations(cli, manifest, state) == []


# ------------------------------------------------------------------ the plan lists every violation


def test_plan_lists_every_violation(cli, write_manifest, state):
    policy = {"maxBatchCredits": 1000, "maxApplyCredits": 2500, "maxCreates": 2}
    manifest = write_manifest(manifest_text({"small": 500, "big": 1500, "bigger": 2000}, policy))

    found = violations(cli, manifest, state)
    assert len(found) == 4
    assert any(v.startswith("acme/big issues 1,500 credits") and "(1,000, policy maxBatchCredits)" in v for v in found)
    assert any(v.startswith("acme/bigger issues 2,000 credits") for v in found)
    assert any("4,000 credits in total" in v and "(2,500, policy maxApplyCredits)" in v for v in found)
    assert any("creates 3 batches" in v and "(2, policy maxCreates)" in v for v in found)

    text = cli("plan", manifest, "--state", state).stdout
    heading = "Guardrail violations (apply refuses them without --allow-large):"
    listed = text.split(heading)[1].split("Plan:")[0]
    assert all(v in listed for v in found)


def test_json_violations_are_objects_naming_rule_limit_actual_and_address(cli, write_manifest, state):
    """Tools read the rule and the numbers, not a sentence (format 1.1)."""
    policy = {"maxBatchCredits": 1000, "maxApplyCredits": 2500, "maxCreates": 2}
    manifest = write_manifest(manifest_text({"small": 500, "big": 1500, "bigger": 2000}, policy))

    result = cli("plan", manifest, "--state", state, "--format", "json")
    document = json.loads(result.stdout)

    assert document["format_version"] == "1.2"
    found = [{key: v[key] for key in ("rule", "limit", "actual", "address")} for v in document["violations"]]
    assert found == [
        {"rule": "maxBatchCredits", "limit": 1000, "actual": 1500, "address": "acme/big"},
        {"rule": "maxBatchCredits", "limit": 1000, "actual": 2000, "address": "acme/bigger"},
        {"rule": "maxApplyCredits", "limit": 2500, "actual": 4000, "address": None},
        {"rule": "maxCreates", "limit": 2, "actual": 3, "address": None},
    ]
    text = cli("plan", manifest, "--state", state).stdout
    assert all(f"! {v['message']}" in text for v in document["violations"])  # the old string, as printed


def test_a_plan_with_violations_is_printed_whole_then_fails(cli, write_manifest, state):
    manifest = write_manifest(manifest_text({"big": 5000}, {"maxBatchCredits": 1000}))
    for exitcode in ([], ["--detailed-exitcode"]):
        result = cli("plan", manifest, "--state", state, *exitcode)
        assert result.exit_code == 1
        assert "Plan: 1 to create" in result.stdout and "Guardrail violations" in result.stdout
        assert "breaks 1 guardrail of the policy" in result.stderr and "--allow-large" in result.stderr
    raised = write_manifest(manifest_text({"big": 5000}, {"maxBatchCredits": 5000}))
    assert cli("plan", raised, "--state", state, "--detailed-exitcode").exit_code == 2


# ------------------------------------------------------------------ apply refuses unless allowed


def test_apply_refuses_a_violation_and_creates_nothing(cli, api_env, sandbox, write_manifest, state):
    manifest = write_manifest(manifest_text({"fine": 10, "huge": ONE_MILLION + 1}))
    refused = cli("apply", manifest, "--state", state, "--auto-approve")
    assert_refused_without_creating(refused, sandbox, state)
    assert "raise the policy in the manifest" in refused.stderr


def test_allow_large_applies_anyway(cli, api_env, sandbox, write_manifest, state):
    manifest = write_manifest(manifest_text({"fine": 10, "huge": ONE_MILLION + 1}))
    applied = cli("apply", manifest, "--state", state, "--auto-approve", "--allow-large")
    assert applied.exit_code == 0, applied.output
    assert sorted(batch["startingBalance"] for batch in sandbox.all_batches()) == [10, ONE_MILLION + 1]


def test_raising_the_policy_in_the_manifest_allows_the_apply(cli, api_env, sandbox, write_manifest, state):
    manifest = write_manifest(manifest_text({"huge": 2 * ONE_MILLION}, {"maxBatchCredits": 2 * ONE_MILLION}))
    assert violations(cli, manifest, state) == []
    applied = cli("apply", manifest, "--state", state, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    assert [batch["startingBalance"] for batch in sandbox.all_batches()] == [2 * ONE_MILLION]


def test_policy_may_live_in_its_own_file(cli, api_env, sandbox, write_manifest, state):
    write_manifest("policy:\n  maxCreates: 1\n", name="policy.yaml")
    directory = write_manifest(manifest_text({"a": 1, "b": 2})).parent
    assert_refused_without_creating(cli("apply", directory, "--state", state, "--auto-approve"), sandbox, state)


def test_lowering_the_policy_in_the_manifest_refuses_what_the_defaults_allow(
    cli, api_env, sandbox, write_manifest, state
):
    manifest = write_manifest(manifest_text({"a": 600}, {"maxApplyCredits": 500}))
    assert_refused_without_creating(cli("apply", manifest, "--state", state, "--auto-approve"), sandbox, state)


# ------------------------------------------------------------------ flags override the manifest


@pytest.mark.parametrize(
    ("flag", "policy"),
    [
        ("--max-batch-credits", {"maxBatchCredits": 100}),
        ("--max-apply-credits", {"maxApplyCredits": 100}),
        ("--max-creates", {"maxCreates": 0}),
    ],
)
def test_a_flag_raises_the_manifest_policy(cli, api_env, sandbox, write_manifest, state, flag, policy):
    manifest = write_manifest(manifest_text({"a": 500}, policy))
    assert len(violations(cli, manifest, state)) == 1
    assert violations(cli, manifest, state, flag, "500") == []
    applied = cli("apply", manifest, "--state", state, "--auto-approve", flag, "500")
    assert applied.exit_code == 0, applied.output
    assert len(sandbox.all_batches()) == 1


@pytest.mark.parametrize(
    ("flag", "value"), [("--max-batch-credits", "499"), ("--max-apply-credits", "499"), ("--max-creates", "0")]
)
def test_a_flag_lowers_the_manifest_policy(cli, api_env, sandbox, write_manifest, state, flag, value):
    manifest = write_manifest(manifest_text({"a": 500}, {"maxBatchCredits": 5000, "maxApplyCredits": 5000}))
    assert violations(cli, manifest, state) == []
    assert len(violations(cli, manifest, state, flag, value)) == 1
    refused = cli("apply", manifest, "--state", state, "--auto-approve", flag, value)
    assert_refused_without_creating(refused, sandbox, state)


# ------------------------------------------------------------------ what counts


def test_updates_issue_no_credits_and_break_no_guardrail(cli, api_env, sandbox, write_manifest, state):
    manifest = write_manifest(manifest_text({"a": 500}))
    assert cli("apply", manifest, "--state", state, "--auto-approve").exit_code == 0
    renamed = manifest_text({"a": 500}, {"maxBatchCredits": 0, "maxApplyCredits": 0, "maxCreates": 0})
    write_manifest(renamed.replace("startingBalance: 500", "startingBalance: 500\n        name: Renamed"))
    assert violations(cli, manifest, state) == []
    applied = cli("apply", manifest, "--state", state, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    assert [batch["name"] for batch in sandbox.all_batches()] == ["Renamed"]


def test_replace_counts_as_a_create(cli, api_env, sandbox, write_manifest, state):
    manifest = write_manifest(manifest_text({"a": 500}))
    assert cli("apply", manifest, "--state", state, "--auto-approve").exit_code == 0
    write_manifest(manifest_text({"a": 500}, {"maxCreates": 0}))
    found = violations(cli, manifest, state, "--replace", "acme/a")
    assert found == ["this plan creates 1 batch, more than one apply may create (0, policy maxCreates)."]
    refused = cli("apply", manifest, "--state", state, "--auto-approve", "--replace", "acme/a")
    assert refused.exit_code == 1
    assert len(sandbox.all_batches()) == 1


# ------------------------------------------------------------------ saved plans carry their policy


def test_saved_plan_with_a_violation_needs_allow_large_at_apply(cli, api_env, sandbox, write_manifest, state, tmp_path):
    manifest = write_manifest(manifest_text({"huge": ONE_MILLION + 1}))
    plan_file = tmp_path / "plan.json"
    planned = cli("plan", manifest, "--state", state, "--out", plan_file)
    assert planned.exit_code == 1 and "apply refuses it as it stands" in planned.stderr
    assert json.loads(plan_file.read_text())["plan"]["violations"]

    assert_refused_without_creating(cli("apply", plan_file, "--state", state), sandbox, state)
    applied = cli("apply", plan_file, "--state", state, "--allow-large")
    assert applied.exit_code == 0, applied.output
    assert len(sandbox.all_batches()) == 1


def test_saved_plan_keeps_the_limits_it_was_made_with(cli, api_env, sandbox, write_manifest, state, tmp_path):
    manifest = write_manifest(manifest_text({"huge": ONE_MILLION + 1}))
    plan_file = tmp_path / "plan.json"
    planned = cli("plan", manifest, "--state", state, "--out", plan_file, "--max-batch-credits", str(2 * ONE_MILLION))
    assert planned.exit_code == 0
    assert "Guardrail" not in planned.stdout
    # The manifest (with the default policy) is gone; the plan's own limits apply.
    manifest.unlink()
    applied = cli("apply", plan_file, "--state", state)
    assert applied.exit_code == 0, applied.output
    assert len(sandbox.all_batches()) == 1
