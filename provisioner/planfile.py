"""Saved plans: what a reviewer approved, applied exactly, or refused.

The file holds the resolved desired batches (so apply needs no manifests), the
changes, the state's lineage and serial it was drawn against, the manifests'
digest and the tool version, sealed by a sha256 over all of it. No secrets:
neither the API key nor the base URL is written.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from provisioner import __version__
from provisioner.models import Desired, Plan, Policy
from provisioner.render import plan_to_json
from provisioner.state import State

MARKER = "provisioner_saved_plan"
FILE_VERSION = 1


class PlanFileError(Exception):
    """A saved plan that must not be applied; nothing was changed."""


def _seal(body: dict) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def save_plan(path: str | Path, desired: Desired, plan: Plan, state: State, policy: Policy, replace: list[str]) -> None:
    body = {
        MARKER: FILE_VERSION,
        "tool_version": __version__,
        "lineage": state.lineage,
        "serial": state.serial,
        "pending": sorted(state.pending),
        "manifest_digest": desired.digest,
        "desired": desired.model_dump(mode="json"),
        "policy": policy.model_dump(mode="json"),
        "replace": sorted(replace),
        "plan": plan_to_json(plan),
    }
    document = {"seal": _seal(body), **body}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def is_saved_plan(path: str | Path) -> bool:
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return head.lstrip().startswith(b"{") and MARKER.encode() in head


class SavedPlan:
    def __init__(self, path: Path, body: dict):
        self.path = path
        self.body = body
        self.desired = Desired.model_validate(body["desired"])
        self.policy = Policy.model_validate(body["policy"])
        self.replace: list[str] = list(body["replace"])
        self.changes: list[dict] = body["plan"]["changes"]

    def check_against(self, state: State) -> None:
        """Refuses a plan drawn against another state or an older version of this one."""
        if self.body["lineage"] != state.lineage:
            raise PlanFileError(
                f"{self.path}: this plan was made for another state (lineage {self.body['lineage']}; this "
                f"state is {state.lineage}). Make a new plan against this state."
            )
        if self.body["serial"] != state.serial or self.body["pending"] != sorted(state.pending):
            raise PlanFileError(
                f"{self.path}: the plan is stale: the state changed since it was made (serial "
                f"{self.body['serial']} then, {state.serial} now). Run 'provisioner plan --out' again "
                "and review the new plan."
            )

    def matches(self, plan: Plan) -> bool:
        return plan_to_json(plan)["changes"] == self.changes


def load_plan(path: str | Path) -> SavedPlan:
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PlanFileError(f"{path}: cannot read the saved plan: {exc}") from None
    if not isinstance(document, dict) or MARKER not in document:
        raise PlanFileError(f"{path}: not a saved plan made by 'provisioner plan --out'.")
    if document[MARKER] != FILE_VERSION:
        raise PlanFileError(f"{path}: saved plan format {document[MARKER]!r} is not supported (expected {FILE_VERSION}).")
    seal = document.pop("seal", None)
    if seal != _seal(document):
        raise PlanFileError(
            f"{path}: the saved plan was altered after it was made (its digest does not match). "
            "Apply only a plan exactly as it was reviewed: run 'provisioner plan --out' again."
        )
    if document.get("tool_version") != __version__:
        raise PlanFileError(
            f"{path}: the plan was made by provisioner {document.get('tool_version')}, this is {__version__}. "
            "Make the plan and apply it with the same version."
        )
    try:
        return SavedPlan(path, document)
    except (KeyError, ValueError) as exc:
        raise PlanFileError(f"{path}: the saved plan is incomplete: {exc}") from None
