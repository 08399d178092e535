"""The file format as pydantic models: the source of ``provisioner schema`` (JSON Schema).

The readers follow the table in fields.py; ``tests/manifest/test_manifest.py`` holds these models
to the same field names. Imported only by the ``schema`` command: building the models
costs start-up time that a plan does not need.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.json_schema import SkipJsonSchema

from provisioner.core.addresses import KEY_PATTERN
from provisioner.core.models import DEFAULT_GRANT_NAME, Policy
from provisioner.manifest.fields import EXAMPLE_TIMESTAMP, MAX_NAME_LENGTH, MAX_WHOLE_NUMBER
from provisioner.manifest.grant_rules import EVERY_PATTERN, EXPIRES_AFTER_PATTERN

Key = Annotated[str, StringConstraints(pattern=f"^{KEY_PATTERN}$")]
UUIDText = Annotated[str, Field(json_schema_extra={"format": "uuid"})]
# Loose on purpose: it only catches a missing time or zone while typing; the loader is the judge.
TimestampText = Annotated[
    str,
    StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}[Tt ].*(Z|[+-]\d{2}(:?\d{2})?)$"),
    Field(json_schema_extra={"format": "date-time"}),
]

DateText = Annotated[
    str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$"), Field(json_schema_extra={"format": "date"})
]
EveryText = Annotated[str, StringConstraints(pattern=EVERY_PATTERN)]
DurationText = Annotated[str, StringConstraints(pattern=EXPIRES_AFTER_PATTERN)]


class _FormatModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _policy_field(name: str, alias: str) -> Any:
    """Policy fields carry the shared model's default and description, so both say the same."""
    shared = Policy.model_fields[name]
    return Field(shared.default, ge=0, le=MAX_WHOLE_NUMBER, alias=alias, description=shared.description)


class PolicyModel(_FormatModel):
    """Guardrails for plan and apply. At most one manifest file may declare them."""

    max_batch_credits: int = _policy_field("max_batch_credits", "maxBatchCredits")
    max_apply_credits: int = _policy_field("max_apply_credits", "maxApplyCredits")
    max_creates: int = _policy_field("max_creates", "maxCreates")


class BatchModel(_FormatModel):
    """One credit batch. Its address is "<client key>/<batch key>"."""

    starting_balance: int = Field(
        alias="startingBalance",
        ge=0,
        le=MAX_WHOLE_NUMBER,
        description="Credits put into the batch: a whole number, 0 or more.",
    )
    name: str | SkipJsonSchema[None] = Field(
        None, max_length=MAX_NAME_LENGTH, description='Display name ("" for none). Default: the batch key.'
    )
    expires_on: TimestampText | SkipJsonSchema[None] = Field(
        None,
        alias="expiresOn",
        description=f"Expiry: ISO 8601 with a time zone, e.g. {EXAMPLE_TIMESTAMP}. Sent in UTC.",
    )
    credit_account_id: UUIDText | SkipJsonSchema[None] = Field(
        None, alias="creditAccountId", description="Credit account to link. Default: the client's creditAccountId."
    )


class GrantModel(_FormatModel):
    """A recurring grant: one batch per period that has begun, addressed "<client key>/<grant key>@<period>"."""

    every: EveryText = Field(
        description='How often: month, quarter, year, or "N days", "N weeks", "N months". Periods are named '
        "2026-01, 2026-q1, 2026, or by their start date (2026-01-15).",
    )
    from_date: DateText = Field(
        alias="from", description="The day the first period starts (YYYY-MM-DD); later periods align to it."
    )
    until: DateText | SkipJsonSchema[None] = Field(None, description="No period starts after this day (YYYY-MM-DD).")
    time_zone: str | SkipJsonSchema[None] = Field(
        None,
        alias="timeZone",
        min_length=1,
        description="IANA time zone whose local midnight starts each period, e.g. Europe/Berlin. Default: UTC.",
    )
    starting_balance: int = Field(
        alias="startingBalance", ge=0, le=MAX_WHOLE_NUMBER, description="Credits each period's batch is given."
    )
    name: str | SkipJsonSchema[None] = Field(
        None,
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        description=f'Batch name; {{period}} is the period id, {{grant}} the grant key. Default: "{DEFAULT_GRANT_NAME}".',
    )
    expires_after: DurationText | SkipJsonSchema[None] = Field(
        None,
        alias="expiresAfter",
        description='Each batch expires this long after its period starts: "N days", "N weeks", "N months" or '
        '"N years". Default: never.',
    )
    credit_account_id: UUIDText | SkipJsonSchema[None] = Field(
        None, alias="creditAccountId", description="Credit account to link. Default: the client's creditAccountId."
    )
    catch_up: bool | SkipJsonSchema[None] = Field(
        None,
        alias="catchUp",
        description="true (default): periods missed while nothing ran are issued too; false: only the latest "
        "period that has begun.",
    )


class ClientModel(_FormatModel):
    """One Thought Industries client, under a key of the user's choosing."""

    id: UUIDText = Field(description="The Thought Industries client id (a UUID).")
    credit_account_id: UUIDText | SkipJsonSchema[None] = Field(
        None, alias="creditAccountId", description="Default credit account for this client's batches."
    )
    batches: dict[Key, BatchModel] | None = Field(None, description="Credit batches, by batch key.")
    grants: dict[Key, GrantModel] | None = Field(
        None, description="Recurring grants, by grant key (a grant key may not also be a batch key)."
    )


class ManifestFileModel(_FormatModel):
    """One manifest file. Every part is optional; an empty file declares nothing."""

    policy: PolicyModel | None = Field(None, description="Guardrails; at most one file may declare them.")
    clients: dict[Key, ClientModel] | None = Field(None, description="Clients, by client key.")


def manifest_schema() -> dict:
    """JSON Schema (draft 2020-12) of one manifest file."""
    schema = ManifestFileModel.model_json_schema(by_alias=True)
    _tidy_schema(schema)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def _tidy_schema(schema: Any) -> None:
    """Drop "default": null (absent is not null) and generated field titles ("Startingbalance"),
    and forbid keys that miss the key pattern."""
    if isinstance(schema, dict):
        if "default" in schema and schema["default"] is None:
            del schema["default"]
        for field_schema in schema.get("properties", {}).values():
            field_schema.pop("title", None)
        if "patternProperties" in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            _tidy_schema(value)
    elif isinstance(schema, list):
        for value in schema:
            _tidy_schema(value)
