"""The sandbox, exercised over real HTTP the way the client and the benchmarks use it."""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
import requests

from provisioner.sandbox import Faults, Sandbox

API_KEY = "ti_test_sandbox"
CLIENT = "6f1c1a52-4f4e-4a57-9a6c-2d3f2b0c9e11"
ACCOUNT = "0b7e4a8e-1d7c-4c55-8f63-5a0a3e2d7c21"
OTHER_ACCOUNT = "9d2f6c1b-3e4a-4b8d-a1f0-7c6e5d4b3a29"
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def make_sandbox():
    """Start sandboxes with any settings; all are stopped after the test."""
    started: list[Sandbox] = []

    def make(**settings) -> Sandbox:
        sandbox = Sandbox(**settings).start()
        started.append(sandbox)
        return sandbox

    yield make
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def sandbox(make_sandbox) -> Sandbox:
    return make_sandbox(page_size=3)


@pytest.fixture
def api():
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {API_KEY}"
        yield session


def batches_url(sandbox: Sandbox, client_id: str = CLIENT) -> str:
    return f"{sandbox.url}/incoming/v2/clients/{client_id}/creditBatches"


def batch_url(sandbox: Sandbox, batch_id: str) -> str:
    return f"{sandbox.url}/incoming/v2/clients/creditBatches/{batch_id}"


def create(api, sandbox, client_id=CLIENT, **body) -> requests.Response:
    return api.post(batches_url(sandbox, client_id), json=body, timeout=5)


def created_batch(api, sandbox, **body) -> dict:
    response = create(api, sandbox, **body)
    assert response.status_code == 201, response.text
    return response.json()["data"]["CreateCreditBatch"]


def list_page(api, sandbox, client_id=CLIENT, **params) -> requests.Response:
    params.setdefault("clientId", client_id)
    return api.get(batches_url(sandbox, client_id), params=params, timeout=5)


def listing(response: requests.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()["data"]["APICreditBatchesByClientAndCreditAccount"]


def update(api, sandbox, batch_id, **body) -> requests.Response:
    return api.put(batch_url(sandbox, batch_id), json=body, timeout=5)


def assert_error(response: requests.Response, status: int, error: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert isinstance(body["message"], str) and body["message"]
    return body


def iso_in(delta: timedelta) -> str:
    return (datetime.now(timezone.utc) + delta).isoformat()


# ---------------------------------------------------------------- create


def test_create_answers_201_with_the_wrapped_batch(sandbox, api):
    response = create(
        api,
        sandbox,
        startingBalance=100,
        name="Q3 onboarding",
        clientId=CLIENT,
        creditAccountId=ACCOUNT,
        expiresOn="2030-01-01T05:00:00+05:00",
    )

    assert response.status_code == 201
    assert response.headers["Content-Type"] == "application/json"
    assert list(response.json()) == ["data"]
    assert list(response.json()["data"]) == ["CreateCreditBatch"]
    batch = response.json()["data"]["CreateCreditBatch"]
    assert uuid.UUID(batch["id"]).version == 4
    assert batch["name"] == "Q3 onboarding"
    assert batch["expiresOn"] == "2030-01-01T00:00:00.000Z"
    assert batch["startingBalance"] == batch["currentBalance"] == 100
    assert batch["allocatedCredits"] == 0
    assert batch["clientId"] == CLIENT
    assert batch["creditAccountId"] == ACCOUNT
    assert batch["status"] == "active"
    assert TIMESTAMP.match(batch["createdAt"]) and batch["updatedAt"] == batch["createdAt"]
    assert sandbox.all_batches() == [batch]


def test_create_fills_defaults_and_accepts_fractional_balances(sandbox, api):
    batch = created_batch(api, sandbox, startingBalance=12.5)

    assert batch["name"] == ""
    assert batch["expiresOn"] is None
    assert batch["creditAccountId"] is None
    assert batch["startingBalance"] == batch["currentBalance"] == 12.5


def test_each_create_makes_a_new_batch(sandbox, api):
    first = created_batch(api, sandbox, startingBalance=5, name="same")
    second = created_batch(api, sandbox, startingBalance=5, name="same")

    assert first["id"] != second["id"]
    assert len(sandbox.all_batches(CLIENT)) == 2


@pytest.mark.parametrize(
    "body, field",
    [
        ({"startingBalance": 5, "colour": "red"}, "colour"),
        ({"startingBalance": True}, "startingBalance"),
        ({"startingBalance": "5"}, "startingBalance"),
        ({"startingBalance": None}, "startingBalance"),
        ({"startingBalance": -1}, "startingBalance"),
        ({"name": "no balance"}, "startingBalance"),
        ({"startingBalance": 5, "name": 7}, "name"),
        ({"startingBalance": 5, "clientId": str(uuid.uuid4())}, "clientId"),
        ({"startingBalance": 5, "clientId": "not-a-uuid"}, "clientId"),
        ({"startingBalance": 5, "creditAccountId": "acct-1"}, "creditAccountId"),
        ({"startingBalance": 5, "expiresOn": "2030-01-01T00:00:00"}, "expiresOn"),
        ({"startingBalance": 5, "expiresOn": "next tuesday"}, "expiresOn"),
    ],
)
def test_create_rejects_invalid_bodies_with_422(sandbox, api, body, field):
    response = api.post(batches_url(sandbox), json=body, timeout=5)

    error = assert_error(response, 422, "validation_error")
    assert error["message"].startswith(f"{field}: ")
    assert sandbox.all_batches() == []


@pytest.mark.parametrize(
    "raw_body", [b'{"startingBalance": 5', b"", b"startingBalance=5", b"[1, 2]", b'{"startingBalance": NaN}']
)
def test_create_rejects_bodies_that_are_not_a_json_object_with_400(sandbox, api, raw_body):
    response = api.post(batches_url(sandbox), data=raw_body, headers={"Content-Type": "application/json"}, timeout=5)

    assert_error(response, 400, "bad_request")
    assert sandbox.all_batches() == []


# ---------------------------------------------------------------- auth, routing


@pytest.mark.parametrize(
    "authorization", [None, "Bearer ", "Bearer ti_live_realkey", "Basic ti_test_x", "ti_test_sandbox"]
)
def test_requests_without_a_sandbox_key_get_401(sandbox, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = requests.post(batches_url(sandbox), json={"startingBalance": 1}, headers=headers, timeout=5)

    assert_error(response, 401, "unauthorized")
    assert "X-RateLimit-Limit" in response.headers
    assert "ti_live_realkey" not in response.text
    assert sandbox.all_batches() == []


def test_a_configured_api_key_is_the_only_one_accepted(make_sandbox):
    sandbox = make_sandbox(api_key="ti_test_exact")
    url = batches_url(sandbox)

    wrong = requests.post(
        url, json={"startingBalance": 1}, headers={"Authorization": "Bearer ti_test_other"}, timeout=5
    )
    right = requests.post(
        url, json={"startingBalance": 1}, headers={"Authorization": "Bearer ti_test_exact"}, timeout=5
    )

    assert_error(wrong, 401, "unauthorized")
    assert right.status_code == 201


def test_authentication_comes_before_routing(sandbox):
    response = requests.get(f"{sandbox.url}/nowhere", timeout=5)

    assert_error(response, 401, "unauthorized")


def test_unknown_paths_and_clients_get_404(make_sandbox, api):
    sandbox = make_sandbox(known_clients={CLIENT})
    stranger = str(uuid.uuid4())

    assert_error(api.get(f"{sandbox.url}/incoming/v2/nowhere", timeout=5), 404, "not_found")
    assert_error(create(api, sandbox, stranger, startingBalance=1), 404, "not_found")
    assert_error(list_page(api, sandbox, stranger), 404, "not_found")
    assert create(api, sandbox, CLIENT, startingBalance=1).status_code == 201


def test_without_known_clients_any_uuid_shaped_client_exists(sandbox, api):
    assert create(api, sandbox, str(uuid.uuid4()), startingBalance=1).status_code == 201
    assert_error(create(api, sandbox, "acme", startingBalance=1), 404, "not_found")


def test_wrong_methods_get_405_with_allow(sandbox, api):
    on_collection = api.delete(batches_url(sandbox), timeout=5)
    on_batch = api.get(batch_url(sandbox, str(uuid.uuid4())), timeout=5)

    assert_error(on_collection, 405, "method_not_allowed")
    assert on_collection.headers["Allow"] == "GET, POST"
    assert_error(on_batch, 405, "method_not_allowed")
    assert on_batch.headers["Allow"] == "PUT"


# ---------------------------------------------------------------- list


def test_listing_pages_through_every_batch_in_creation_order(sandbox, api):
    created = [created_batch(api, sandbox, startingBalance=n)["id"] for n in range(7)]

    pages = [listing(list_page(api, sandbox, page=n)) for n in (1, 2, 3)]

    assert [page["pageInfo"] for page in pages] == [
        {"perPage": 3, "cursor": "2", "total": 7, "hasMore": True},
        {"perPage": 3, "cursor": "3", "total": 7, "hasMore": True},
        {"perPage": 3, "cursor": None, "total": 7, "hasMore": False},
    ]
    listed = [batch["id"] for page in pages for batch in page["creditBatches"]]
    assert sorted(listed) == sorted(created)
    assert listed == [batch["id"] for batch in sandbox.all_batches(CLIENT)]
    assert [len(page["creditBatches"]) for page in pages] == [3, 3, 1]
    assert pages[0]["clientId"] == CLIENT and pages[0]["creditAccountId"] is None


def test_an_omitted_page_is_the_first_and_a_page_past_the_end_is_empty(sandbox, api):
    for n in range(4):
        created_batch(api, sandbox, startingBalance=n)

    first = listing(list_page(api, sandbox))
    beyond = listing(list_page(api, sandbox, page=9))

    assert len(first["creditBatches"]) == 3 and first["pageInfo"]["cursor"] == "2"
    assert beyond["creditBatches"] == []
    assert beyond["pageInfo"] == {"perPage": 3, "cursor": None, "total": 4, "hasMore": False}


def test_listing_filters_by_credit_account_and_client(sandbox, api):
    mine = created_batch(api, sandbox, startingBalance=1, creditAccountId=ACCOUNT)
    created_batch(api, sandbox, startingBalance=2, creditAccountId=OTHER_ACCOUNT)
    created_batch(api, sandbox, startingBalance=3)
    created_batch(api, sandbox, client_id=str(uuid.uuid4()), startingBalance=4, creditAccountId=ACCOUNT)

    page = listing(list_page(api, sandbox, creditAccountId=ACCOUNT))

    assert page["creditBatches"] == [mine]
    assert page["creditAccountId"] == ACCOUNT
    assert page["pageInfo"]["total"] == 1


@pytest.mark.parametrize(
    "params, status",
    [
        ({"clientId": ""}, 400),
        ({"page": "0"}, 400),
        ({"page": "-1"}, 400),
        ({"page": "two"}, 400),
        ({"creditAccountId": "acct-1"}, 400),
        ({"clientId": str(uuid.uuid4())}, 422),
    ],
)
def test_listing_rejects_bad_queries(sandbox, api, params, status):
    assert list_page(api, sandbox, **params).status_code == status


def test_listing_requires_the_client_id_query(sandbox, api):
    response = api.get(batches_url(sandbox), timeout=5)

    assert_error(response, 400, "bad_request")


# ---------------------------------------------------------------- update, status


def test_update_changes_name_expiry_and_balance(sandbox, api):
    batch = created_batch(api, sandbox, startingBalance=100, creditAccountId=ACCOUNT)
    time.sleep(0.002)

    response = update(
        api, sandbox, batch["id"], name="renamed", currentBalance=60, expiresOn="2031-06-30T23:00:00-01:00"
    )

    assert response.status_code == 200
    updated = response.json()["data"]["UpdateCreditBatch"]
    assert updated["name"] == "renamed"
    assert updated["expiresOn"] == "2031-07-01T00:00:00.000Z"
    assert (updated["startingBalance"], updated["currentBalance"], updated["allocatedCredits"]) == (100, 60, 40)
    assert updated["creditAccountId"] == ACCOUNT
    assert updated["createdAt"] == batch["createdAt"] < updated["updatedAt"]
    assert sandbox.all_batches() == [updated]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"startingBalance": 5}, "startingBalance"),
        ({"clientId": CLIENT}, "clientId"),
        ({"creditAccountId": ACCOUNT}, "creditAccountId"),
        ({"status": "expired"}, "status"),
        ({"currentBalance": 1.5}, "currentBalance"),
        ({"currentBalance": False}, "currentBalance"),
        ({"currentBalance": -1}, "currentBalance"),
        ({"currentBalance": 11}, "currentBalance"),
        ({"expiresOn": "2031-01-01"}, "expiresOn"),
    ],
)
def test_update_rejects_fixed_unknown_and_invalid_fields_with_422(sandbox, api, body, field):
    batch = created_batch(api, sandbox, startingBalance=10)

    error = assert_error(update(api, sandbox, batch["id"], **body), 422, "validation_error")

    assert error["message"].startswith(f"{field}: ")
    assert sandbox.all_batches() == [batch]


def test_update_of_an_unknown_batch_gets_404(sandbox, api):
    assert_error(update(api, sandbox, str(uuid.uuid4()), name="x"), 404, "not_found")


def test_status_is_expired_once_expires_on_has_passed(sandbox, api):
    batch = created_batch(api, sandbox, startingBalance=1, expiresOn="2020-01-01T00:00:00Z")
    assert batch["status"] == "expired"

    revived = update(api, sandbox, batch["id"], expiresOn=iso_in(timedelta(days=1)))
    assert revived.json()["data"]["UpdateCreditBatch"]["status"] == "active"

    update(api, sandbox, batch["id"], expiresOn=iso_in(timedelta(milliseconds=50)))
    time.sleep(0.1)
    assert listing(list_page(api, sandbox))["creditBatches"][0]["status"] == "expired"


# ---------------------------------------------------------------- persistence


def test_batches_in_a_data_file_survive_a_restart(tmp_path, api):
    data_path = tmp_path / "nested" / "sandbox.sqlite"
    with Sandbox(data_path=data_path) as first:
        made = [created_batch(api, first, startingBalance=n) for n in (1, 2)]

    with Sandbox(data_path=data_path) as second:
        assert listing(list_page(api, second))["creditBatches"] == made


def test_a_committed_create_survives_sigkill(tmp_path):
    data_path = tmp_path / "sandbox.sqlite"
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from provisioner.sandbox import Sandbox\n"
            "print(Sandbox(data_path=sys.argv[1]).start().url, flush=True)\n"
            "time.sleep(60)\n",
            str(data_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip()
        response = requests.post(
            f"{url}/incoming/v2/clients/{CLIENT}/creditBatches",
            json={"startingBalance": 9},
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=5,
        )
        assert response.status_code == 201
    finally:
        server.kill()  # SIGKILL: no chance to flush or close anything
        server.wait()
        server.stdout.close()

    survivors = Sandbox(data_path=data_path).all_batches()
    assert [batch["id"] for batch in survivors] == [response.json()["data"]["CreateCreditBatch"]["id"]]


# ---------------------------------------------------------------- rate limit


def test_rate_limit_answers_429_once_the_burst_is_spent(make_sandbox, api):
    sandbox = make_sandbox(rate_limit=60, burst=3)

    responses = [list_page(api, sandbox) for _ in range(4)]

    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]
    assert {r.headers["X-RateLimit-Limit"] for r in responses} == {"60"}
    assert all(int(r.headers["X-RateLimit-Reset"]) >= time.time() for r in responses)
    limited = responses[-1]
    assert limited.headers["Retry-After"] == "1"
    assert assert_error(limited, 429, "rate_limit_exceeded")["retryAfter"] == 1


def test_rate_limit_is_per_key_and_refills(make_sandbox, api):
    sandbox = make_sandbox(rate_limit=600, burst=1)  # one token every 0.1 s
    other = {"Authorization": "Bearer ti_test_other"}

    assert list_page(api, sandbox).status_code == 200
    assert list_page(api, sandbox).status_code == 429
    assert api.get(batches_url(sandbox), params={"clientId": CLIENT}, headers=other).status_code == 200
    time.sleep(0.15)
    assert list_page(api, sandbox).status_code == 200


def test_default_burst_is_a_sixth_of_the_rate(make_sandbox, api):
    sandbox = make_sandbox(rate_limit=120)

    statuses = [list_page(api, sandbox).status_code for _ in range(21)]

    assert statuses == [200] * 20 + [429]


def test_without_a_rate_limit_the_headers_are_still_sent(sandbox, api):
    response = list_page(api, sandbox)

    assert response.headers["X-RateLimit-Limit"] == "1000000"
    assert response.headers["X-RateLimit-Remaining"] == "1000000"
    assert int(response.headers["X-RateLimit-Reset"]) > 0


# ---------------------------------------------------------------- faults


def test_injected_errors_change_nothing(make_sandbox, api):
    sandbox = make_sandbox(faults=Faults(error_rate=1.0, seed=3))

    responses = [create(api, sandbox, startingBalance=1) for _ in range(20)]

    assert {r.status_code for r in responses} == {500, 502, 503}
    assert all(r.headers["Retry-After"] == "1" for r in responses if r.status_code == 503)
    assert all("X-RateLimit-Remaining" in r.headers for r in responses)
    assert sandbox.all_batches() == []
    assert sandbox.stats["creates"] == 0 and sandbox.stats["injected_errors"] == 20


def test_a_dropped_connection_after_commit_still_made_the_batch(make_sandbox, api):
    sandbox = make_sandbox(faults=Faults(drop_after_commit_rate=1.0))

    with pytest.raises(requests.exceptions.ConnectionError):
        create(api, sandbox, startingBalance=7)

    assert [batch["startingBalance"] for batch in sandbox.all_batches()] == [7]
    assert sandbox.request_log[-1][2] == 0
    sandbox.set_faults(Faults())
    assert create(api, sandbox, startingBalance=8).status_code == 201  # the session recovers


def test_a_500_after_commit_still_made_the_batch(make_sandbox, api):
    sandbox = make_sandbox(faults=Faults(error_after_commit_rate=1.0))

    assert_error(create(api, sandbox, startingBalance=7), 500, "internal_error")

    assert len(sandbox.all_batches()) == 1
    assert sandbox.stats["errors_after_commit"] == 1


def test_after_commit_faults_spare_requests_that_create_nothing(make_sandbox, api):
    sandbox = make_sandbox(faults=Faults(error_after_commit_rate=1.0, drop_after_commit_rate=1.0))

    assert list_page(api, sandbox).status_code == 200
    assert create(api, sandbox, startingBalance="x").status_code == 422


def test_latency_delays_responses_and_a_timed_out_create_may_have_happened(make_sandbox, api):
    sandbox = make_sandbox(faults=Faults(latency=0.3))

    started = time.monotonic()
    assert list_page(api, sandbox).status_code == 200
    assert time.monotonic() - started >= 0.3

    with pytest.raises(requests.exceptions.ReadTimeout):
        api.post(batches_url(sandbox), json={"startingBalance": 3}, timeout=0.15)
    assert len(sandbox.all_batches()) == 1


def test_a_429_storm_carries_the_configured_retry_after(make_sandbox, api):
    sandbox = make_sandbox(faults=Faults(burst_429_rate=1.0, retry_after=0.2))

    response = create(api, sandbox, startingBalance=1)

    assert response.headers["Retry-After"] == "0.2"
    assert assert_error(response, 429, "rate_limit_exceeded")["retryAfter"] == 0.2
    assert sandbox.all_batches() == []


def test_a_429_storm_lasts_burst_429_length_requests(make_sandbox, api):
    sandbox = make_sandbox(faults=Faults(burst_429_rate=0.15, burst_429_length=4, seed=11))

    statuses = "".join("x" if list_page(api, sandbox).status_code == 429 else "." for _ in range(80))

    storms = re.findall(r"x+(?=\.)", statuses)  # runs of 429s that ended before the last request
    assert storms, statuses
    assert all(len(storm) % 4 == 0 for storm in storms), statuses


def test_a_seed_repeats_the_same_fault_sequence(make_sandbox, api):
    faults = Faults(error_rate=0.3, burst_429_rate=0.05, burst_429_length=2, seed=42)

    def statuses(sandbox: Sandbox) -> list[int]:
        return [list_page(api, sandbox).status_code for _ in range(40)]

    first = make_sandbox(faults=faults)
    run = statuses(first)
    assert statuses(make_sandbox(faults=faults)) == run
    first.set_faults(faults)
    assert statuses(first) == run
    assert len(set(run)) > 1
    other_seed = Faults(error_rate=0.3, burst_429_rate=0.05, burst_429_length=2, seed=43)
    assert statuses(make_sandbox(faults=other_seed)) != run


# ---------------------------------------------------------------- HTTP behaviour, bookkeeping


def test_connections_are_kept_alive(sandbox):
    address = urlsplit(sandbox.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=5)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    try:
        connection.request("GET", f"/incoming/v2/clients/{CLIENT}/creditBatches?clientId={CLIENT}", headers=headers)
        connection.getresponse().read()
        first_socket = connection.sock
        connection.request(
            "POST", f"/incoming/v2/clients/{CLIENT}/creditBatches", body=b'{"startingBalance": 1}', headers=headers
        )
        assert connection.getresponse().status == 201
        assert connection.sock is first_socket
    finally:
        connection.close()


def test_serves_ten_clients_at_once_with_latency(make_sandbox):
    # How many requests a second it sustains is bench/apply's to measure (its parallelism figure).
    sandbox = make_sandbox(faults=Faults(latency=0.05))
    statuses: list[int] = []

    def client():
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {API_KEY}"
            for n in range(20):
                statuses.append(create(session, sandbox, startingBalance=n).status_code)

    workers = [threading.Thread(target=client) for _ in range(10)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert statuses == [201] * 200
    assert len(sandbox.all_batches()) == 200


def test_request_log_and_stats_count_what_happened(sandbox, api):
    created_batch(api, sandbox, startingBalance=1)
    list_page(api, sandbox)
    requests.get(batches_url(sandbox), timeout=5)

    path = f"/incoming/v2/clients/{CLIENT}/creditBatches"
    assert sandbox.request_log == [("POST", path, 201), ("GET", path, 200), ("GET", path, 401)]
    stats = sandbox.stats
    assert (stats["requests"], stats["creates"], stats["201"], stats["401"], stats["429"]) == (3, 1, 1, 1, 0)


def test_url_is_only_known_once_started():
    sandbox = Sandbox()
    with pytest.raises(RuntimeError):
        sandbox.url  # noqa: B018 (the property raises)
    with sandbox:
        assert re.match(r"^http://127\.0\.0\.1:\d+$", sandbox.url)
