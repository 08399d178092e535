"""The text plan at scale: creates laid out from templates read exactly as the general layout,
chunks that join into the whole text, and the summary that leads a large plan."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.core.models import Change, Plan
from provisioner.render.text import LARGE_PLAN, _change_block, _CreateBlocks, _Painter, render_text, text_chunks

VALUES = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["Acme Q1", 'say "hi"', "back\\slash", "tab\there", "nul\x00", "del\x7f", "é"]),
    st.integers(0, 2**53),
    st.booleans(),
    st.none(),
)
FIELD_NAMES = st.sampled_from(["clientId", "name", "startingBalance", "expiresOn", "creditAccountId", "odd field\n"])


def create(address: str, after: dict, credits: int = 0) -> Change:
    return Change(address=address, client_key=address.split("/")[0], action="create", after=after, credits=credits)


@settings(max_examples=300, deadline=None)
@given(
    address=st.one_of(
        st.from_regex(r"[a-z0-9][a-z0-9._-]{0,8}/[a-z0-9][a-z0-9._-]{0,8}", fullmatch=True), st.text(max_size=12)
    ),
    after=st.dictionaries(FIELD_NAMES, VALUES, min_size=1, max_size=6),
    color=st.booleans(),
)
def test_a_create_from_its_template_reads_exactly_as_the_general_layout(address, after, color):
    paint = _Painter(color)
    change = create(address, after)
    assert _CreateBlocks(paint)(change) == "\n".join(_change_block(change, paint))


def large_plan(clients: int = 30, batches: int = 5) -> Plan:
    changes = tuple(
        create(
            f"client-{c:02d}/b{b}",
            {"clientId": f"id-{c}", "name": f"Client {c} batch {b}", "startingBalance": 10 * b},
            credits=10 * b,
        )
        for c in range(clients)
        for b in range(batches)
    )
    return Plan(changes=changes, unchanged=3, warnings=("w",))


def test_chunks_join_into_the_whole_text_whatever_their_size():
    plan = large_plan()
    whole = render_text(plan)
    for size in (1, 100, 5_000, 1 << 20):
        assert "".join(text_chunks(plan, size=size)) == whole


def test_a_large_plan_leads_with_a_summary_per_client_and_lists_every_create():
    plan = large_plan()
    assert len(plan.changes) > LARGE_PLAN
    text = render_text(plan)
    head, body = text.split("provisioner will perform the following actions:")
    assert head.startswith("Plan: 150 to create, 0 to update, 0 blocked, 3 unchanged.\n")
    assert 'Credits to issue: 3,000 (to 30 clients; per client under "Changes by client" above).' in head
    assert "Changes by client (30 clients; every change is listed below):" in head
    assert "  client     create  credits\n  client-00       5      100\n" in head
    for change in plan.changes:
        assert f'  + batch "{change.address}" {{\n' in body
    assert body.rstrip().endswith(
        'Credits to issue: 3,000 (to 30 clients; per client under "Changes by client" above).'
    )


def test_a_small_plan_keeps_its_layout():
    plan = large_plan(clients=2, batches=3)
    text = render_text(plan)
    assert text.startswith("provisioner will perform the following actions:\n\n  # client-00/b0 will be created\n")
    assert "Changes by client" not in text
    assert "Credits to issue: 60 (client-00 30; client-01 30)." in text
