"""Saved plans: what a reviewer approved, applied exactly, or refused.

The file holds the resolved desired batches (so apply needs no manifests), the
moment it was made for (``at``: grants expanded, expiries judged), the changes,
the state's lineage and serial it was drawn against, the manifests' digest and
the tool version, sealed by a sha256 over all of it. The seal is a
digest, not a signature: it catches a plan altered by mistake or by a careless
edit, while the file's provenance (a CI artifact, a reviewed commit) vouches for
its origin. No secrets: neither the API key nor the base URL is written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from provisioner import __version__
from provisioner.core.atomic_files import write_atomically
from provisioner.core.file_marks import SAVED_PLAN_MARKER, is_saved_plan_data
from provisioner.core.models import Desired, Plan, Policy, State
from provisioner.core.timestamps import parse_timestamp
from provisioner.planning.plan_document import plan_to_json
from provisioner.planning.planner import differing_fields

MARKER = SAVED_PLAN_MARKER
FILE_VERSION = 1


class PlanFileError(Exception):
    """A saved plan that must not be applied; nothing was changed."""


def _seal(body: dict) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def save_plan(
    path: str | Path,
    desired: Desired,
    plan: Plan,
    state: State,
    policy: Policy,
    replace: list[str],
    refresh: bool = False,
    allow_duplicates: list[str] | None = None,
) -> None:
    body = {
        MARKER: FILE_VERSION,
        "tool_version": __version__,
        "lineage": state.lineage,
        "serial": state.serial,
        "pending": sorted(state.pending),
        "state_digest": state.content_digest(),
        "manifest_digest": desired.digest,
        "at": desired.expanded_at,
        "desired": desired.model_dump(mode="json"),
        "policy": policy.model_dump(mode="json"),
        "replace": sorted(replace),
        "allow_duplicates": sorted(allow_duplicates or []),
        "refresh": refresh,
        "plan": plan_to_json(plan),
    }
    # The marker leads, so that even a damaged file is recognised (and refused) as a saved plan.
    document = {MARKER: FILE_VERSION, "seal": _seal(body)}
    document.update((key, _sorted(body[key])) for key in sorted(body) if key != MARKER)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(document, indent=2) + "\n")


def _sorted(value):
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def is_saved_plan(path: str | Path) -> bool:
    """Recognised by content (see ``is_saved_plan_data``), whatever the file is called."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        return is_saved_plan_data(path.read_bytes())
    except OSError:
        return False


def saved_plan_in(paths: Sequence[str | Path]) -> SavedPlan | None:
    """The saved plan given instead of manifests, or None when PATHS are manifests."""
    plans = [path for path in paths if is_saved_plan(path)]
    if not plans:
        return None
    if len(paths) > 1:
        raise PlanFileError(
            f"{plans[0]}: a saved plan is applied on its own, without manifests (it holds them): "
            f"provisioner apply {plans[0]}"
        )
    return load_plan(plans[0])


def refuse_saved_plans(paths: Sequence[str | Path]) -> None:
    """For commands that read manifests: a saved plan given by mistake gets a pointer, not YAML errors."""
    for path in paths:
        if is_saved_plan(path):
            raise PlanFileError(
                f"{path} is a saved plan, not a manifest: apply it with 'provisioner apply {path}' "
                f"(read it with jq: jq .plan.summary {path})."
            )


def plan_digest(plan: Plan) -> str:
    """sha256 of a plan's changes as a saved plan writes them: what an apply without a saved plan applied."""
    return _seal({"changes": plan_to_json(plan)["changes"]})


class SavedPlan:
    def __init__(self, path: Path, body: dict, digest: str = ""):
        self.path = path
        self.body = body
        self.digest = digest  # sha256 of the file as it was read: the plan that was reviewed
        self.desired = Desired.model_validate(body["desired"])
        self.policy = Policy.model_validate(body["policy"])
        self.replace: list[str] = list(body["replace"])
        self.allow_duplicates: list[str] = list(body.get("allow_duplicates", []))
        self.refresh: bool = bool(body.get("refresh", False))
        self.changes: list[dict] = body["plan"]["changes"]
        self.at: datetime | None = parse_timestamp(body["at"]) if body.get("at") else None

    def moment_to_apply(self, now: datetime, say: Callable[[str], None]) -> datetime:
        """The moment the plan is applied for: the later of ``now`` (or apply's --at) and the moment it
        was made for. Applied later, a period that began since (or an expiry that passed) makes it
        differ from what was reviewed, and it is refused; made for a moment still to come (--at, to
        issue early), it is applied for that moment, as reviewed."""
        if self.at is None or self.at <= now:
            return now
        say(f"Note: {self.path} was made for {self.body['at']} (--at), later than now: it is applied for that moment.")
        return self.at

    def refuse_options(self, **options) -> None:
        """Options that shape a plan were fixed when it was made and reviewed."""
        given = [f"--{name.replace('_', '-')}" for name, value in options.items() if _given(value)]
        if given:
            raise PlanFileError(
                f"{self.path}: {', '.join(given)} cannot be combined with a saved plan: the plan was made "
                "and reviewed with its own options. Pass them to 'provisioner plan --out' instead."
            )

    def check_against(self, state: State, state_path: str) -> None:
        """Refuses a plan drawn against another state or an older version of this one."""
        lineage = self.body["lineage"]
        if lineage is None:
            raise PlanFileError(
                f"{self.path}: the plan was made by a provisioner that allowed planning without a state; "
                "it cannot be told which state it belongs to. Run 'provisioner plan --out' again."
            )
        if lineage != state.lineage:
            raise PlanFileError(
                f"{self.path}: this plan was made for another state (lineage {lineage}; {state_path} is "
                f"{state.lineage}). Make a new plan against this state."
            )
        # .get: a plan saved before plans carried a digest is stale, not a crash.
        if self.body["serial"] != state.serial or self.body.get("state_digest") != state.content_digest():
            if state.serial > self.body["serial"] and self._recorded_in(state):
                raise PlanFileError(
                    f"{self.path}: this plan was already applied ({state_path} is at serial {state.serial} "
                    f"now, the plan was made at {self.body['serial']}, and records every change it makes). "
                    "Nothing was done. For further changes, make and review a new plan."
                )
            raise PlanFileError(
                f"{self.path}: the plan is stale: {state_path} changed since it was made (serial "
                f"{self.body['serial']} then, {state.serial} now; an apply may have been interrupted "
                "after recording some batches). Run 'provisioner plan --out' again and review the new plan."
            )

    def _recorded_in(self, state: State) -> bool:
        """Every change of this plan is in state as the plan made it: the plan was applied."""
        work = [change for change in self.changes if change["action"] in ("create", "update", "recover", "replace")]
        if not work or any(change["action"] == "replace" for change in work):
            return False  # a replacement looks the same before and after: not provable from state
        for change in work:
            resource = state.resources.get(change["address"])
            if resource is None or change["address"] in state.pending:
                return False
            if differing_fields(resource.attributes, change.get("after") or {}):
                return False
        return True

    def matches(self, plan: Plan) -> bool:
        return plan_to_json(plan)["changes"] == self.changes


def _given(value) -> bool:
    return value is not None and value is not False and value != ()


def load_plan(path: str | Path) -> SavedPlan:
    path = Path(path)
    try:
        data = path.read_bytes()
        document = json.loads(data.decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise PlanFileError(
            f"{path}: cannot read the saved plan ({exc}); was it altered? Run 'provisioner plan --out' again."
        ) from None
    if not isinstance(document, dict) or MARKER not in document:
        raise PlanFileError(f"{path}: not a saved plan made by 'provisioner plan --out'.")
    if document[MARKER] != FILE_VERSION:
        raise PlanFileError(
            f"{path}: saved plan format {document[MARKER]!r} is not supported (expected {FILE_VERSION})."
        )
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
        return SavedPlan(path, document, hashlib.sha256(data).hexdigest())
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanFileError(f"{path}: the saved plan is incomplete: {exc}") from None
