"""The credits API's endpoints: create a client's batch, list a client's batches, update a batch."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

from provisioner.sandbox.faults import FaultInjector
from provisioner.sandbox.messages import ApiError, Request, Response
from provisioner.sandbox.quirks import Quirks
from provisioner.sandbox.store import BatchStore, present
from provisioner.sandbox.timestamps import now_text
from provisioner.sandbox.traffic import Traffic
from provisioner.sandbox.validation import (
    CREATE_FIELDS,
    FIELDS_FIXED_AT_CREATION,
    UPDATE_FIELDS,
    invalid,
    is_uuid_shaped,
    page_number,
    parse_json_object,
    query_value,
    same_client,
    validated_fields,
)

_BATCHES_OF_CLIENT = re.compile(r"^/incoming/v2/clients/(?P<client_id>[^/]+)/creditBatches$")
_ONE_BATCH = re.compile(r"^/incoming/v2/clients/creditBatches/(?P<batch_id>[^/]+)$")

Handler = Callable[..., Response]  # (request, **values from the path) -> response, or raises ApiError


class Endpoints:
    def __init__(
        self,
        *,
        store: BatchStore,
        faults: FaultInjector,
        page_size: int,
        known_clients: set[str] | None,
        quirks: Quirks,
        traffic: Traffic,
    ) -> None:
        self._store = store
        self._faults = faults
        self._page_size = page_size
        self._known_clients = set(known_clients) if known_clients is not None else None
        self._quirks = quirks
        self._traffic = traffic

    def routes(self) -> list[tuple[re.Pattern, dict[str, Handler]]]:
        """Each path pattern with its handler per method, in the order they are tried."""
        return [  # the literal path first: it would also match `{client_id}`
            (_ONE_BATCH, {"PUT": self.update_batch}),
            (_BATCHES_OF_CLIENT, {"POST": self.create_batch, "GET": self.list_batches}),
        ]

    def _require_known_client(self, client_id: str) -> None:
        if self._known_clients is not None:
            known = client_id in self._known_clients
        else:
            known = is_uuid_shaped(client_id)
        if not known:
            raise ApiError(404, "client not found")

    def create_batch(self, request: Request, client_id: str) -> Response:
        self._require_known_client(client_id)
        fields = validated_fields(parse_json_object(request.body), CREATE_FIELDS)
        if "startingBalance" not in fields:
            raise invalid("startingBalance", "is required")
        if "clientId" in fields and not same_client(fields["clientId"], client_id):
            raise invalid("clientId", "must match the client id in the path")
        commit_delay = self._faults.current.commit_delay
        if commit_delay > 0:
            self._traffic.count("delayed_commits")
            time.sleep(commit_delay)  # no lock is held here; a client that hung up does not stop it
        now = now_text()
        name = fields.get("name", "")
        batch = {
            "id": str(uuid.uuid4()),
            "name": " ".join(name.split()) if self._quirks.trim_names else name,
            "expiresOn": fields.get("expiresOn"),
            "startingBalance": fields["startingBalance"],
            "currentBalance": fields["startingBalance"],
            "allocatedCredits": 0,
            "clientId": client_id,
            "creditAccountId": fields.get("creditAccountId"),
            "createdAt": now,
            "updatedAt": now,
        }
        self._store.insert(batch)
        self._traffic.count("creates")
        return Response(201, {"data": {"CreateCreditBatch": present(batch)}})

    def list_batches(self, request: Request, client_id: str) -> Response:
        self._require_known_client(client_id)
        query_client = query_value(request.query, "clientId")
        if not query_client:
            raise ApiError(400, "clientId: query parameter is required")
        if not same_client(query_client, client_id):
            raise invalid("clientId", "must match the client id in the path")
        account = query_value(request.query, "creditAccountId")
        if account is not None and not is_uuid_shaped(account):
            raise ApiError(400, "creditAccountId: must be a UUID")
        page = page_number(query_value(request.query, "page"))

        offset = (page - 1) * self._page_size
        batches, total = self._store.page(client_id, account, offset, self._page_size)
        has_more = offset + len(batches) < total
        now = now_text()
        return Response(
            200,
            {
                "data": {
                    "APICreditBatchesByClientAndCreditAccount": {
                        "clientId": client_id,
                        "creditAccountId": account,
                        "creditBatches": [self._quirks.listed(present(batch, now)) for batch in batches],
                        "pageInfo": {
                            "perPage": self._page_size,
                            "cursor": str(page + 1) if has_more else None,
                            "total": total,
                            "hasMore": has_more,
                        },
                    }
                }
            },
        )

    def update_batch(self, request: Request, batch_id: str) -> Response:
        batch = self._store.get(batch_id)
        if batch is None:
            raise ApiError(404, "credit batch not found")
        changes = validated_fields(parse_json_object(request.body), UPDATE_FIELDS, fixed=FIELDS_FIXED_AT_CREATION)
        if "currentBalance" in changes:
            # Sandbox choice: a batch cannot hold more than it started with, which
            # keeps allocatedCredits (= starting - current) from going negative.
            if changes["currentBalance"] > batch["startingBalance"]:
                raise invalid("currentBalance", "must not exceed startingBalance")
            changes["allocatedCredits"] = batch["startingBalance"] - changes["currentBalance"]
        changes["updatedAt"] = now_text()
        updated = self._store.update(batch_id, changes)
        assert updated is not None  # found above, and batches are never deleted
        self._traffic.count("updates")
        return Response(200, {"data": {"UpdateCreditBatch": present(updated)}})
