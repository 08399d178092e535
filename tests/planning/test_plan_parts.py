"""A plan in parts, one per client; models made from checked values without validating them again.

Both are for speed at 100,000 batches; neither may change what a plan says.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

from conftest import ACCOUNT_ID, ACME_ID, GLOBEX_ID

from provisioner.core.models import BatchSpec, Change, Desired, Intent, Plan, PlanPart, Policy, Resource, State
from provisioner.manifest.loader import load
from provisioner.planning.plan_document import render_json
from provisioner.planning.planner import make_plan
from provisioner.render.markdown import render_markdown
from provisioner.render.text import render_text

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
FUTURE = "2030-03-31T23:59:59.000Z"
PAST = "2026-01-01T00:00:00.000Z"


def spec(address: str, balance: int = 100, expires: str | None = FUTURE) -> BatchSpec:
    client_key, batch_key = address.split("/")
    return BatchSpec(
        client_key=client_key,
        batch_key=batch_key,
        client_id=ACME_ID,
        name=batch_key,
        starting_balance=balance,
        expires_on=expires,
        credit_account_id=ACCOUNT_ID,
        source="m.yaml:1:1",
    )


def every_kind_of_plan() -> Plan:
    """Creates, an update, a blocked create, a blocked balance, an interrupted create (declared
    and not), recorded batches no longer declared, across clients whose keys sort around '/'."""
    specs = [
        spec("a/x"),
        spec("a/y", expires=PAST),
        spec("a-b/x", balance=70),
        spec("a.b/x"),
        spec("a0/x"),
        spec("a0/y"),
        spec("zed/q", balance=2_000_000),
        spec("zed/r"),
    ]
    recorded = {
        "a0/x": Resource(batch_id="1", client_id=ACME_ID, attributes={**specs[4].attributes(), "name": "old"}),
        "a0/y": Resource(batch_id="2", client_id=ACME_ID, attributes={**specs[5].attributes(), "startingBalance": 1}),
        "zed/r": Resource(batch_id="3", client_id=ACME_ID, attributes=specs[7].attributes()),
        "a/gone": Resource(batch_id="4", client_id=ACME_ID, attributes=specs[0].attributes()),
        "old/gone": Resource(batch_id="5", client_id=GLOBEX_ID, attributes=specs[0].attributes()),
    }
    pending = {
        "a-b/x": Intent(address="a-b/x", client_id=ACME_ID, attributes=specs[2].attributes(), digest="d", at=PAST),
        "b/lost": Intent(address="b/lost", client_id=ACME_ID, attributes={"startingBalance": 9}, digest="d", at=PAST),
    }
    desired = Desired(
        batches={s.address: s for s in sorted(specs, key=lambda s: s.address)},
        policy=Policy(max_batch_credits=1_000_000, max_creates=2),
    )
    return make_plan(desired, State(resources=recorded, pending=pending), NOW)


def test_a_plan_of_parts_is_the_plan_of_its_changes():
    plan = every_kind_of_plan()
    assert [change.address for change in plan.changes] == sorted(change.address for change in plan.changes)
    assert {change.action for change in plan.changes} == {"create", "update", "blocked", "recover"}
    flat = Plan(changes=plan.changes, unchanged=plan.unchanged, warnings=plan.warnings, violations=plan.violations)
    assert flat == plan
    for render in (render_text, render_markdown, render_json):
        assert render(flat) == render(plan)
    counts = Counter(change.action for change in plan.changes)
    assert {action: plan.count(action) for action in counts} == dict(counts)
    assert plan.total_credits == sum(change.credits for change in plan.changes)
    assert plan.change_count == len(plan.changes)
    assert [v.rule for v in plan.violations] == ["maxBatchCredits", "maxCreates"]


def test_each_client_has_one_part_with_its_changes_its_unchanged_batches_and_its_warnings():
    plan = every_kind_of_plan()
    assert [part.client_key for part in plan.parts] == ["a-b", "a.b", "a", "a0", "b", "old", "zed"]
    for part in plan.parts:
        assert all(change.client_key == part.client_key for change in part.changes)
    by_client = {part.client_key: part for part in plan.parts}
    assert by_client["zed"].unchanged == 1 and plan.unchanged == 1
    assert [w.split(" ")[0] for w in by_client["a"].warnings] == ["a/gone"]
    assert [w.split(" ")[0] for w in plan.warnings] == ["a/gone", "old/gone"]
    assert by_client["b"].changes[0].action == "recover"


def test_a_part_made_again_on_demand_is_the_same():
    plan = every_kind_of_plan()
    original = plan.parts[0]
    again = PlanPart(
        original.client_key,
        unchanged=original.unchanged,
        figures=original.figures,
        text="(rendered)",
        remake=lambda: original.changes,
    )
    assert again.changes == original.changes
    assert Plan(parts=[again, *plan.parts[1:]], unchanged=plan.unchanged).changes == plan.changes


def test_models_made_from_checked_values_equal_validated_ones(tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"""\
clients:
  acme:
    id: {ACME_ID}
    creditAccountId: {ACCOUNT_ID}
    batches:
      q1:
        startingBalance: 5000
        expiresOn: 2030-03-31T23:59:59+02:00
      q2:
        name: Second
        startingBalance: 7
""")
    desired = load([manifest])
    for batch in desired.batches.values():
        validated = BatchSpec.model_validate(batch.model_dump())
        assert batch == validated and hash(batch) == hash(validated) and repr(batch) == repr(validated)
    plan = make_plan(desired, State(), NOW)
    for change in plan.changes:
        assert change == Change.model_validate(change.model_dump())
    assert Desired.model_validate(desired.model_dump(mode="json")) == desired
