"""The API client against a real sandbox over loopback HTTP: requests, error mapping, retries, safety.

Nothing here mocks requests. Where the sandbox cannot produce an answer (403, 400, 409, 504), a tiny
scripted HTTP server plays it. Backoff sleeps are injected (`sleep=`) so the delays are recorded
instead of waited; the same hook is used to change the server's behaviour between two attempts.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import ACCOUNT_ID, ACME_ID, GLOBEX_ID, TEST_KEY
from scripted_api import ScriptedServer, SleepRecorder, error_body, free_port, make_api

from provisioner.api.client import (
    ApiError,
    AuthError,
    ConfigurationError,
    CreditsApi,
    NotFoundError,
    OutcomeUnknown,
    RequestRejected,
    check_base_url,
)
from provisioner.api.pacing import RateLimiter
from provisioner.sandbox import Faults, Sandbox

WRONG_KEY = "ti_test_" + "w" * 24
BATCHES_PATH = f"/incoming/v2/clients/{ACME_ID}/creditBatches"


# ---------------------------------------------------------------- helpers


def requests_to(sandbox: Sandbox, method: str) -> list[tuple[str, str, int]]:
    return [entry for entry in sandbox.request_log if entry[0] == method]


# ---------------------------------------------------------------- requests follow the contract


def test_create_sends_exactly_the_documented_body(sandbox):
    api = make_api(sandbox.url)
    body = {
        "startingBalance": 5000,
        "clientId": ACME_ID,
        "creditAccountId": ACCOUNT_ID,
        "name": "Acme Q1",
        "expiresOn": "2030-03-31T23:59:59Z",
    }

    batch = api.create_batch(ACME_ID, dict(body))

    [stored] = sandbox.all_batches(ACME_ID)
    assert batch["id"] == stored["id"]
    assert {key: stored[key] for key in body} == {**body, "expiresOn": "2030-03-31T23:59:59.000Z"}
    assert sandbox.request_log == [("POST", BATCHES_PATH, 201)]


def test_create_with_only_the_required_field_adds_nothing(sandbox):
    api = make_api(sandbox.url)

    api.create_batch(ACME_ID, {"startingBalance": 7})

    [stored] = sandbox.all_batches(ACME_ID)
    assert (stored["startingBalance"], stored["name"], stored["expiresOn"], stored["creditAccountId"]) == (
        7,
        "",
        None,
        None,
    )


def test_the_bytes_on_the_wire_are_the_body_given():
    body = {"startingBalance": 5, "name": "Acme", "expiresOn": "2030-03-31T23:59:59Z"}
    created = {"data": {"CreateCreditBatch": {"id": "b1", **body}}}
    updated = {"data": {"UpdateCreditBatch": {"id": "b1"}}}
    with ScriptedServer((201, {}, created), (200, {}, updated)) as server:
        api = make_api(server.url)
        api.create_batch(ACME_ID, dict(body))
        api.update_batch("b1", {"name": "Acme 2"})

    [(post, post_path, post_body), (put, put_path, put_body)] = server.received
    assert (post, post_path, json.loads(post_body)) == ("POST", BATCHES_PATH, body)
    assert (put, put_path, json.loads(put_body)) == ("PUT", "/incoming/v2/clients/creditBatches/b1", {"name": "Acme 2"})


def test_list_follows_has_more_across_pages(sandbox):
    api = make_api(sandbox.url)
    created = [api.create_batch(ACME_ID, {"startingBalance": n})["id"] for n in range(12)]
    api.create_batch(GLOBEX_ID, {"startingBalance": 1})

    listed = api.list_batches(ACME_ID)

    assert sorted(batch["id"] for batch in listed) == sorted(created)
    assert len(requests_to(sandbox, "GET")) == 3  # page_size 5: pages of 5, 5 and 2


def test_list_of_a_client_without_batches_is_empty(sandbox):
    assert make_api(sandbox.url).list_batches(GLOBEX_ID) == []


def test_update_puts_the_body_to_the_batch_path(sandbox):
    api = make_api(sandbox.url)
    batch = api.create_batch(ACME_ID, {"startingBalance": 10, "name": "old", "expiresOn": "2030-01-01T00:00:00Z"})

    updated = api.update_batch(batch["id"], {"name": "new"})

    assert updated["name"] == "new"
    assert updated["expiresOn"] == "2030-01-01T00:00:00.000Z"
    assert sandbox.request_log[-1] == ("PUT", f"/incoming/v2/clients/creditBatches/{batch['id']}", 200)
    assert sandbox.all_batches(ACME_ID)[0]["name"] == "new"


# ---------------------------------------------------------------- errors map to clear messages


def test_wrong_key_is_an_auth_error_that_never_shows_a_key(sandbox):
    api = make_api(sandbox.url, key=WRONG_KEY)

    with pytest.raises(AuthError) as caught:
        api.list_batches(ACME_ID)

    shown = "".join(traceback.format_exception(caught.value))
    assert "TI_API_KEY" in str(caught.value) and "401" in str(caught.value)
    assert WRONG_KEY not in shown and TEST_KEY not in shown
    assert len(sandbox.request_log) == 1  # a refused key is not retried


def test_forbidden_is_an_auth_error_about_the_role():
    with ScriptedServer(error_body(403, "forbidden")) as server:
        api = make_api(server.url, key=WRONG_KEY)
        with pytest.raises(AuthError) as caught:
            api.create_batch(ACME_ID, {"startingBalance": 1})

    message = str(caught.value)
    assert "TI_API_KEY" in message and "403" in message and "permission" in message
    assert WRONG_KEY not in message
    assert len(server.received) == 1


def test_unknown_client_is_not_found_naming_the_client():
    with Sandbox(api_key=TEST_KEY, known_clients={ACME_ID}) as sandbox:
        api = make_api(sandbox.url)
        with pytest.raises(NotFoundError) as on_create:
            api.create_batch(GLOBEX_ID, {"startingBalance": 1})
        with pytest.raises(NotFoundError) as on_list:
            api.list_batches(GLOBEX_ID)
        assert sandbox.all_batches() == []

    for caught in (on_create, on_list):
        assert GLOBEX_ID in str(caught.value) and "404" in str(caught.value)


def test_update_of_an_unknown_batch_is_not_found_naming_the_batch(sandbox):
    missing = "00000000-0000-4000-8000-000000000000"

    with pytest.raises(NotFoundError) as caught:
        make_api(sandbox.url).update_batch(missing, {"name": "x"})

    assert missing in str(caught.value)
    assert len(sandbox.request_log) == 1


@pytest.mark.parametrize(
    "body, server_message",
    [
        ({"startingBalance": 1, "startingBalence": 2}, "startingBalence: unknown field"),
        ({"startingBalance": 1, "name": None}, "name: must be a string"),
        ({"name": "no balance"}, "startingBalance: is required"),
    ],
)
def test_invalid_create_is_rejected_with_the_server_message(sandbox, body, server_message):
    with pytest.raises(RequestRejected) as caught:
        make_api(sandbox.url).create_batch(ACME_ID, body)

    assert server_message in str(caught.value) and "422" in str(caught.value)
    assert sandbox.all_batches() == [] and len(sandbox.request_log) == 1


@pytest.mark.parametrize("status", [400, 409])
def test_bad_request_and_conflict_are_rejected_with_the_server_message(status):
    with ScriptedServer(error_body(status, "the server explains why")) as server:
        with pytest.raises(RequestRejected) as caught:
            make_api(server.url).create_batch(ACME_ID, {"startingBalance": 1})

    assert "the server explains why" in str(caught.value) and str(status) in str(caught.value)
    assert len(server.received) == 1


def test_a_closed_port_fails_clearly_after_bounded_retries():
    url = f"http://127.0.0.1:{free_port()}"
    sleep = SleepRecorder()

    with pytest.raises(ApiError) as caught:
        make_api(url, sleep=sleep, max_attempts=4).list_batches(ACME_ID)

    assert not isinstance(caught.value, OutcomeUnknown)
    assert "cannot reach" in str(caught.value) and url in str(caught.value)
    assert len(sleep.delays) == 3


def test_a_create_is_retried_when_the_connection_was_never_made():
    """Refused means the server saw nothing, so sending the create again cannot issue credits twice."""
    port = free_port()
    started: list[Sandbox] = []
    sleep = SleepRecorder(on_call={2: lambda: started.append(Sandbox(api_key=TEST_KEY, port=port).start())})
    try:
        batch = make_api(f"http://127.0.0.1:{port}", sleep=sleep).create_batch(ACME_ID, {"startingBalance": 3})
        assert [stored["id"] for stored in started[0].all_batches()] == [batch["id"]]
    finally:
        for sandbox in started:
            sandbox.stop()
    assert len(sleep.delays) == 2


def test_a_create_against_a_closed_port_fails_clearly():
    sleep = SleepRecorder()

    with pytest.raises(ApiError) as caught:
        make_api(f"http://127.0.0.1:{free_port()}", sleep=sleep, max_attempts=3).create_batch(
            ACME_ID, {"startingBalance": 1}
        )

    assert type(caught.value) is ApiError and "cannot reach" in str(caught.value)
    assert len(sleep.delays) == 2


@pytest.mark.parametrize(
    "url",
    [
        "https://school.thoughtindustries.com",
        "https://school.thoughtindustries.com/",
        "http://127.0.0.1:8080",
        "http://localhost:8080",
        "http://[::1]:8080",
    ],
)
def test_accepted_base_urls(url):
    assert check_base_url(url) == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    [
        "http://school.thoughtindustries.com",
        "http://10.0.0.5:8080",
        "http://127.0.0.1@evil.example.com",
        "http://localhost.evil.example.com",
        "ftp://school.thoughtindustries.com",
        "school.thoughtindustries.com",
        "",
    ],
)
def test_refused_base_urls(url):
    with pytest.raises(ConfigurationError):
        check_base_url(url)


def test_plain_http_to_a_remote_host_is_refused_with_the_reason():
    with pytest.raises(ConfigurationError, match="https://"):
        CreditsApi("http://school.thoughtindustries.com", TEST_KEY)


def test_a_missing_key_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="TI_API_KEY"):
        CreditsApi("https://school.thoughtindustries.com", "")


def test_the_client_adopts_the_limit_the_server_announces():
    with Sandbox(api_key=TEST_KEY, rate_limit=120) as sandbox:
        api = make_api(sandbox.url, limiter=RateLimiter(None))
        api.list_batches(ACME_ID)

    assert api.limiter.rpm == 120


def test_an_answer_that_empties_the_window_pauses_the_next_request():
    listing = {
        "data": {"APICreditBatchesByClientAndCreditAccount": {"creditBatches": [], "pageInfo": {"hasMore": False}}}
    }
    window = {"X-RateLimit-Limit": "120", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(time.time()) + 30)}
    paused = SleepRecorder()
    with ScriptedServer((200, window, listing)) as server:
        api = make_api(server.url, limiter=RateLimiter(None, sleep=paused))
        api.list_batches(ACME_ID)
        api.list_batches(ACME_ID)

    assert len(paused.delays) == 1 and 25 < paused.delays[0] <= 30


# ---------------------------------------------------------------- retries of safe requests


def test_list_is_retried_through_server_errors(sandbox):
    sandbox.set_faults(Faults(error_rate=1.0, retry_after=0.01, seed=7))
    sleep = SleepRecorder(on_call={4: lambda: sandbox.set_faults(Faults())})

    assert make_api(sandbox.url, sleep=sleep, max_attempts=6).list_batches(ACME_ID) == []

    statuses = [status for _, _, status in sandbox.request_log]
    assert len(statuses) == 5 and all(status in (500, 502, 503) for status in statuses[:4])
    assert statuses[4] == 200 and len(sleep.delays) == 4


def backoff_delays(**options) -> list[float]:
    """The delays a list waits between attempts against a server that always answers 502."""
    with ScriptedServer(error_body(502, "bad gateway")) as server:
        sleep = SleepRecorder()
        with pytest.raises(ApiError):
            make_api(server.url, sleep=sleep, **options).list_batches(ACME_ID)
    return sleep.delays


def test_backoff_stays_under_its_exponential_ceiling():
    delays = backoff_delays(backoff_base=0.01, backoff_cap=10, max_attempts=6)

    ceilings = [0.01, 0.02, 0.04, 0.08, 0.16]  # base * 2**(attempt-1)
    assert all(0 <= delay <= ceiling for delay, ceiling in zip(delays, ceilings, strict=True))


def test_backoff_grows():
    delays = backoff_delays(backoff_base=0.001, backoff_cap=10, max_attempts=12)

    # Late ceilings are 0.128 s and more; all four late draws under 0.004 s would mean no growth
    # (odds about 1 in 10**7 if the backoff does grow).
    assert max(delays[7:]) > 0.004


def test_backoff_is_capped():
    delays = backoff_delays(backoff_base=1.0, backoff_cap=0.001, max_attempts=6)

    assert len(delays) == 5 and max(delays) <= 0.001


def test_backoff_is_jittered():
    delays = backoff_delays(backoff_base=1.0, backoff_cap=1.0, max_attempts=9)

    # Eight draws from uniform(0, 1): all equal would mean no jitter at all.
    assert len(set(delays)) == 8


def test_gateway_timeout_is_retried_for_a_list():
    listing = {
        "data": {"APICreditBatchesByClientAndCreditAccount": {"creditBatches": [], "pageInfo": {"hasMore": False}}}
    }
    with ScriptedServer(error_body(504, "gateway timeout"), (200, {}, listing)) as server:
        assert make_api(server.url).list_batches(ACME_ID) == []
    assert len(server.received) == 2


def test_persistent_server_errors_end_in_a_clear_error_after_max_attempts(sandbox):
    sandbox.set_faults(Faults(error_rate=1.0, retry_after=0.01, seed=3))

    with pytest.raises(ApiError) as caught:
        make_api(sandbox.url, max_attempts=4).list_batches(ACME_ID)

    assert len(sandbox.request_log) == 4
    assert caught.value.status in (500, 502, 503) and f"HTTP {caught.value.status}" in str(caught.value)


def test_update_is_retried_through_a_server_error_and_applied_once(sandbox):
    api = make_api(sandbox.url, sleep=SleepRecorder(on_call={1: lambda: sandbox.set_faults(Faults())}))
    batch = api.create_batch(ACME_ID, {"startingBalance": 10})
    sandbox.set_faults(Faults(error_rate=1.0, retry_after=0.01, seed=1))

    assert api.update_batch(batch["id"], {"name": "renamed"})["name"] == "renamed"

    puts = requests_to(sandbox, "PUT")
    assert len(puts) == 2 and puts[0][2] in (500, 502, 503) and puts[1][2] == 200
    assert sandbox.stats["updates"] == 1


def test_list_is_retried_after_a_read_timeout(sandbox):
    sandbox.set_faults(Faults(latency=0.5))
    sleep = SleepRecorder(on_call={1: lambda: sandbox.set_faults(Faults())})

    assert make_api(sandbox.url, sleep=sleep, timeout=(1, 0.2)).list_batches(ACME_ID) == []
    assert len(sleep.delays) == 1


def test_a_list_that_keeps_timing_out_fails_clearly(sandbox):
    sandbox.set_faults(Faults(latency=0.5))

    with pytest.raises(ApiError) as caught:
        make_api(sandbox.url, timeout=(1, 0.2), max_attempts=2).list_batches(ACME_ID)

    assert "timed out" in str(caught.value) and not isinstance(caught.value, OutcomeUnknown)


def test_service_unavailable_retry_after_pauses_the_limiter():
    listing = {
        "data": {"APICreditBatchesByClientAndCreditAccount": {"creditBatches": [], "pageInfo": {"hasMore": False}}}
    }
    paused = SleepRecorder()
    limiter = RateLimiter(None, sleep=paused)
    with ScriptedServer((503, {"Retry-After": "7"}, {"error": "busy"}), (200, {}, listing)) as server:
        assert make_api(server.url, limiter=limiter).list_batches(ACME_ID) == []

    assert len(paused.delays) == 1 and paused.delays[0] == pytest.approx(7, abs=0.5)


# ---------------------------------------------------------------- a create is never sent twice blindly


def test_create_that_meets_a_server_error_after_commit_is_outcome_unknown_and_not_resent(sandbox):
    sandbox.set_faults(Faults(error_after_commit_rate=1.0, seed=1))
    sleep = SleepRecorder()

    with pytest.raises(OutcomeUnknown) as caught:
        make_api(sandbox.url, sleep=sleep).create_batch(ACME_ID, {"startingBalance": 100})

    assert caught.value.status == 500
    assert len(sandbox.all_batches()) == 1 and sandbox.stats["creates"] == 1
    assert requests_to(sandbox, "POST") == [("POST", BATCHES_PATH, 500)]
    assert sleep.delays == []


def test_create_whose_connection_drops_after_commit_is_outcome_unknown_and_not_resent(sandbox):
    sandbox.set_faults(Faults(drop_after_commit_rate=1.0, seed=1))

    with pytest.raises(OutcomeUnknown):
        make_api(sandbox.url).create_batch(ACME_ID, {"startingBalance": 100})

    assert len(sandbox.all_batches()) == 1 and sandbox.stats["creates"] == 1
    assert requests_to(sandbox, "POST") == [("POST", BATCHES_PATH, 0)]


def test_create_that_times_out_is_outcome_unknown_and_not_resent(sandbox):
    sandbox.set_faults(Faults(latency=0.5))

    with pytest.raises(OutcomeUnknown) as caught:
        make_api(sandbox.url, timeout=(1, 0.2)).create_batch(ACME_ID, {"startingBalance": 100})

    assert "timed out" in str(caught.value)
    assert len(sandbox.all_batches()) == 1 and sandbox.stats["creates"] == 1
    assert len(requests_to(sandbox, "POST")) == 1


def test_create_that_meets_an_error_before_any_work_is_still_not_resent(sandbox):
    """The client cannot tell an injected 5xx from one after the commit: it must not guess."""
    sandbox.set_faults(Faults(error_rate=1.0, retry_after=0.01, seed=5))

    with pytest.raises(OutcomeUnknown):
        make_api(sandbox.url).create_batch(ACME_ID, {"startingBalance": 100})

    assert len(requests_to(sandbox, "POST")) == 1 and sandbox.all_batches() == []


def test_create_that_meets_a_gateway_timeout_is_outcome_unknown():
    with ScriptedServer(error_body(504, "gateway timeout")) as server:
        with pytest.raises(OutcomeUnknown):
            make_api(server.url).create_batch(ACME_ID, {"startingBalance": 1})
    assert len(server.received) == 1


@pytest.mark.parametrize(
    "answer",
    [
        b"<html>created</html>",
        {"data": {"SomethingElse": {}}},
        {"data": {"CreateCreditBatch": None}},
        ["not", "an", "object"],
    ],
)
def test_create_accepted_with_an_unreadable_answer_is_outcome_unknown(answer):
    """A 2xx means the batch may well exist: a plain error would let the caller think nothing was made."""
    with ScriptedServer((201, {}, answer)) as server:
        with pytest.raises(OutcomeUnknown):
            make_api(server.url).create_batch(ACME_ID, {"startingBalance": 1})
    assert len(server.received) == 1


def test_create_that_meets_429_is_retried_and_creates_exactly_one_batch(sandbox):
    sandbox.set_faults(Faults(burst_429_rate=1.0, burst_429_length=3, retry_after=0.25, seed=1))
    paused = SleepRecorder(on_call={2: lambda: sandbox.set_faults(Faults())})
    api = make_api(sandbox.url, limiter=RateLimiter(None, sleep=paused))

    batch = api.create_batch(ACME_ID, {"startingBalance": 100})

    assert [stored["id"] for stored in sandbox.all_batches()] == [batch["id"]]
    assert [status for _, _, status in requests_to(sandbox, "POST")] == [429, 429, 201]
    assert paused.delays == [pytest.approx(0.25, abs=0.1)] * 2  # Retry-After held the limiter


class HeadersIgnoringLimiter(RateLimiter):
    """Never slows down from X-RateLimit-* headers, so requests really reach the server's limit."""

    def observe(self, headers) -> None:
        pass


def test_parallel_creates_refused_by_the_real_rate_limit_are_each_made_once():
    """Four creates at once against a burst of 2: the sandbox's token bucket answers some with 429."""
    with Sandbox(api_key=TEST_KEY, rate_limit=600, burst=2) as sandbox:
        api = make_api(sandbox.url, pool_size=4, limiter=HeadersIgnoringLimiter(None))
        with ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(lambda n: api.create_batch(ACME_ID, {"startingBalance": n})["id"], range(4)))

        assert sandbox.stats["429"] > 0
        assert sorted(batch["id"] for batch in sandbox.all_batches()) == sorted(ids)
        assert sorted(batch["startingBalance"] for batch in sandbox.all_batches()) == list(range(4))


def test_still_rate_limited_after_max_attempts_fails_clearly(sandbox):
    sandbox.set_faults(Faults(burst_429_rate=1.0, retry_after=0.01, seed=1))

    with pytest.raises(ApiError) as caught:
        make_api(sandbox.url, max_attempts=3).create_batch(ACME_ID, {"startingBalance": 1})

    assert "rate limited" in str(caught.value) and caught.value.status == 429
    assert sandbox.all_batches() == [] and len(sandbox.request_log) == 3


@pytest.mark.parametrize("key", [TEST_KEY + "\n", TEST_KEY + "\r", "ti_test_ spaced", "ti_test_SECRÉT€"])
def test_a_key_that_cannot_be_sent_is_refused_before_any_request(sandbox, key):
    requests_before = sandbox.stats["requests"]
    with pytest.raises(ConfigurationError) as raised:
        CreditsApi(sandbox.url, key)
    assert "TI_API_KEY" in str(raised.value)
    assert key.strip() not in str(raised.value)
    assert sandbox.stats["requests"] == requests_before


def test_credentials_in_the_base_url_are_refused_without_echoing_them():
    with pytest.raises(ConfigurationError) as raised:
        check_base_url("https://admin:hunter2@school.thoughtindustries.com")
    assert "hunter2" not in str(raised.value)
    assert "school.thoughtindustries.com" in str(raised.value)


# ---------------------------------------------------------------- the environment, read once


def test_a_netrc_entry_for_the_host_never_replaces_the_api_key(sandbox, tmp_path, monkeypatch):
    """requests, left to read the environment per request, lets ~/.netrc replace the Authorization
    header with Basic auth: the key would never reach the API (401 on every call)."""
    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login someone password elsewhere\n")
    (tmp_path / ".netrc").chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))

    listed = make_api(sandbox.url).list_batches(ACME_ID)

    assert listed == [] and sandbox.request_log[-1][2] == 200


def test_the_proxy_of_the_environment_is_used(monkeypatch):
    """The environment is read once, at start: HTTP(S)_PROXY and NO_PROXY still apply."""
    asked: list[str] = []

    class Proxy(BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.server_address[1]}")
        target = "http://127.0.0.2:9"  # nothing listens there: only the proxy can answer
        with pytest.raises(ApiError):
            make_api(target, max_attempts=1).list_batches(ACME_ID)
        assert asked and asked[0].startswith(f"{target}/incoming/v2/clients/{ACME_ID}/creditBatches")

        asked.clear()
        monkeypatch.setenv("NO_PROXY", "127.0.0.2")
        with pytest.raises(ApiError):
            make_api(target, max_attempts=1).list_batches(ACME_ID)
        assert not asked, "NO_PROXY names the host: the proxy is not asked"
    finally:
        server.shutdown()
        server.server_close()


def test_retry_notices_name_the_address_and_the_client_key_not_an_id():
    said: list[str] = []
    created = {"data": {"CreateCreditBatch": {"id": "b-1"}}}
    with ScriptedServer(
        (429, {"Retry-After": "0"}, {"error": "rate_limit_exceeded"}),
        (200, {}, created),
        error_body(503, "busy"),
        (
            200,
            {},
            {
                "data": {
                    "APICreditBatchesByClientAndCreditAccount": {
                        "creditBatches": [],
                        "pageInfo": {"hasMore": False, "total": 0},
                    }
                }
            },
        ),
    ) as server:
        api = make_api(server.url, on_retry=said.append)
        api.name_clients({ACME_ID: "acme"})
        api.create_batch(ACME_ID, {"startingBalance": 1}, about="acme/q1")
        api.list_batches(ACME_ID)

    assert said[0].startswith("retrying the create of acme/q1: HTTP 429"), said
    assert said[1].startswith("retrying the listing of client acme: HTTP 503"), said
    assert not any(ACME_ID in line for line in said)
