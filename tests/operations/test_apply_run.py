"""The apply operation without the CLI: a real sandbox and state file, the user's side as callbacks."""

from __future__ import annotations

import json

import pytest
from conftest import recorded_nothing, two_client_manifest

from provisioner.backends.file import FileBackend
from provisioner.operations.apply_request import ApplyRequest
from provisioner.operations.apply_run import ApplyChoices, ApplyUser, apply_run
from provisioner.operations.connection import ApiSettings
from provisioner.operations.plans import PlanRefused, now_utc
from provisioner.operations.run_context import RunContext
from provisioner.render.progress import Progress

ADDRESSES = ["acme/q1", "acme/q2", "globex/starter"]


class Refused(Exception):
    pass


class User:
    """What the user was shown and asked, in order; says no unless told to say yes."""

    def __init__(self, yes: bool):
        self.yes = yes
        self.events: list[str] = []

    def side(self) -> ApplyUser:
        return ApplyUser(show_plan=self.show_plan, confirm=self.confirm, say=lambda line: self.events.append(line))

    def show_plan(self, plan) -> None:
        self.events.append(f"plan of {plan.change_count} changes")

    def confirm(self) -> None:
        self.events.append("asked")
        if not self.yes:
            raise Refused


@pytest.fixture
def apply_once(api_env, sandbox, write_manifest, state):
    manifest = write_manifest(two_client_manifest())
    settings = ApiSettings(base_url=sandbox.url, rate_limit=0, parallelism=4)

    def run(user: User, policy_overrides: dict | None = None, **choices):
        request = ApplyRequest.from_manifests([manifest], now_utc(), policy_overrides=policy_overrides)
        return apply_run(
            request, FileBackend(state), settings, ApplyChoices(**choices), user.side(), Progress.silent(), RunContext()
        )

    return run


def test_the_plan_is_shown_before_the_question_and_a_no_changes_nothing(apply_once, sandbox, state):
    user = User(yes=False)
    with pytest.raises(Refused):
        apply_once(user)
    assert user.events == ["plan of 3 changes", "asked"]
    assert recorded_nothing(state)
    assert not [request for request in sandbox.request_log if request[0] == "POST"], "nothing was created"


def test_a_yes_applies_and_names_the_plan_applied_in_the_audit_trail(apply_once, state):
    user = User(yes=True)
    applied = apply_once(user)
    assert user.events == ["plan of 3 changes", "asked"]
    assert applied.outcome is not None and applied.outcome.ok
    assert sorted(applied.outcome.created) == ADDRESSES
    assert sorted(json.loads(state.read_text())["resources"]) == ADDRESSES
    creates = [event for event in FileBackend(state).read_history() if event.get("action") == "create"]
    assert len(creates) == 3 and len({event["plan_digest"] for event in creates}) == 1, "each names the plan applied"


def test_no_changes_asks_nothing_and_applies_nothing(apply_once):
    apply_once(User(yes=True), auto_approve=True)
    user = User(yes=False)
    again = apply_once(user)
    assert again.outcome is None and again.plan.change_count == 0
    assert user.events == ["plan of 0 changes"]


def test_a_plan_that_breaks_a_guardrail_is_shown_then_refused_before_the_question(apply_once, state):
    user = User(yes=True)
    with pytest.raises(PlanRefused, match="breaks 1 guardrail"):
        apply_once(user, policy_overrides={"max_apply_credits": 1000})
    assert user.events == ["plan of 3 changes"]
    assert recorded_nothing(state)
    assert apply_once(User(yes=True), policy_overrides={"max_apply_credits": 1000}, allow_large=True).outcome.ok
