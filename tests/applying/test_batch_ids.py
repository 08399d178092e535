"""A batch id is what the contract says, a non-empty string, and is never made from anything else.

A create answered with an id of another JSON type (``true``, ``[]``, an object, a number) used to be
recorded as its Python text ("True", "[]", "{'x': 1}"): the real id lost, and ``plan --refresh`` then
suggested ``--replace``, which issues the credits again. A listed batch whose id is an object was adopted
the same way. Each story runs the CLI as a real process against the sandbox, behind a proxy
(tests/faultproxy.py) that rewrites the ids in its answers.
"""

from __future__ import annotations

import pytest
from conftest import ACME_ID, TEST_KEY, run_subprocess
from faultproxy import DropThenCommit, FaultProxy, Forward, ProxiedRequest

from provisioner.backends.file import read_state
from provisioner.sandbox import Sandbox

MANIFEST = f"""
clients:
  acme:
    id: {ACME_ID}
    batches:
      q1:
        name: Q1
        startingBalance: 100
"""


@pytest.fixture
def sandbox():
    with Sandbox(api_key=TEST_KEY, page_size=5) as server:
        yield server


def env_for(url: str) -> dict[str, str]:
    return {"TI_BASE_URL": url, "TI_API_KEY": TEST_KEY, "TI_RATE_LIMIT": "0"}


def apply(manifest, state, url: str):
    return run_subprocess(
        "apply", manifest, "--state", state, "--auto-approve", "--recovery-wait", "1", env=env_for(url), timeout=120
    )


def create_answered_with(batch_id):
    def rewrite(answer: dict) -> dict:
        answer["data"]["CreateCreditBatch"]["id"] = batch_id
        return answer

    return rewrite


def listed_with(batch_id):
    def rewrite(answer: dict) -> dict:
        for batch in answer["data"]["APICreditBatchesByClientAndCreditAccount"]["creditBatches"]:
            batch["id"] = batch_id
        return answer

    return rewrite


@pytest.mark.parametrize(
    "odd_id", [True, [], {"x": 1}, 1001, "", "  "], ids=["true", "list", "object", "number", "empty", "blank"]
)
def test_a_create_answered_without_a_proper_id_is_looked_up_and_its_real_id_recorded(
    sandbox, write_manifest, state, odd_id
):
    """The create's answer carries an odd id; the listing gives the real one. The answer is not recorded: it is
    looked up like a lost answer, and the batch the listing shows is adopted with its real id."""

    def rule(request: ProxiedRequest):
        return Forward(rewrite=create_answered_with(odd_id) if request.method == "POST" else None)

    with FaultProxy(sandbox.url, rule) as proxy:
        result = apply(write_manifest(MANIFEST), state, proxy.url)

    [made] = sandbox.all_batches(ACME_ID)
    recorded = read_state(state)
    assert result.returncode == 0, result.stderr
    assert recorded.resources["acme/q1"].batch_id == made["id"], f"recorded {recorded.resources['acme/q1'].batch_id!r}"
    assert not recorded.pending
    assert "no proper batch id" in result.stderr, result.stderr
    assert proxy.posts() == 1


def test_an_id_that_is_an_object_in_the_answer_and_the_listing_leaves_the_intent_open(sandbox, write_manifest, state):
    """Both the create's answer and the listing give the id as an object. Nothing can be recorded: the intent
    stays open, the run says why and names the batch, and neither this run nor the next sends the create
    again."""
    odd = {"x": 1}

    def rule(request: ProxiedRequest):
        return Forward(rewrite=create_answered_with(odd) if request.method == "POST" else listed_with(odd))

    with FaultProxy(sandbox.url, rule) as proxy:
        manifest = write_manifest(MANIFEST)
        first = apply(manifest, state, proxy.url)
        second = apply(manifest, state, proxy.url)

    assert len(sandbox.all_batches(ACME_ID)) == 1 and proxy.posts() == 1, "the create was sent again"
    for run in (first, second):
        assert run.returncode == 1, run.stderr
        assert '{"x": 1} (not a batch id)' in run.stderr and "no proper id" in run.stderr, run.stderr
        assert "{'x': 1}" not in run.stderr and "Traceback" not in run.stderr
    recorded = read_state(state)
    assert not recorded.resources and set(recorded.pending) == {"acme/q1"}


def test_a_listed_batch_whose_id_is_an_object_is_not_adopted(sandbox, write_manifest, state):
    """The create's answer is lost (the connection dropped once the server has it); the listing gives the
    batch's id as an object. It used to be adopted, recorded as "{'x': 1}". It is named and left: the intent
    stays open and the create is not sent again."""

    def rule(request: ProxiedRequest):
        if request.method == "POST":
            return DropThenCommit(after=0)
        return Forward(rewrite=listed_with({"x": 1}))

    with FaultProxy(sandbox.url, rule) as proxy:
        result = apply(write_manifest(MANIFEST), state, proxy.url)

    assert len(sandbox.all_batches(ACME_ID)) == 1 and proxy.posts() == 1, result.stderr
    assert result.returncode == 1, result.stderr
    assert '{"x": 1} (not a batch id)' in result.stderr, result.stderr
    recorded = read_state(state)
    assert not recorded.resources and set(recorded.pending) == {"acme/q1"}


def test_plan_refresh_names_a_listed_batch_without_a_proper_id(sandbox, write_manifest, state):
    """A refresh records nothing from a batch listed without a proper id, and says so, naming it."""
    manifest = write_manifest(MANIFEST)
    assert apply(manifest, state, sandbox.url).returncode == 0

    with FaultProxy(sandbox.url, lambda request: Forward(rewrite=listed_with([7]))) as proxy:
        planned = run_subprocess("plan", manifest, "--state", state, "--refresh", env=env_for(proxy.url))

    assert "Traceback" not in planned.stderr
    assert "without a proper id, left out: [7] (not a batch id) (name 'Q1'" in planned.stderr, planned.stderr
