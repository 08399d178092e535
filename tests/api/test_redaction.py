"""The API key never leaves through what the server says: a refusal's body that echoes the request's
headers, an HTML error page, a redirect's address, an answer kept in state. Each story runs the CLI as a
real process against the sandbox, behind a proxy (tests/faultproxy.py) that answers as such servers do."""

from __future__ import annotations

import pytest
from conftest import ACME_ID, TEST_KEY, run_subprocess
from faultproxy import Answer, FaultProxy, Forward, ProxiedRequest

from provisioner.api.redaction import REDACTED, Redactor
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
HEADERS_ECHOED = {"Authorization": f"Bearer {TEST_KEY}", "Accept": "application/json", "User-Agent": "provisioner"}
ERROR_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>404 Not Found</title><style>body { color: red }</style></head>\n"
    f"<body><h1>Not Found</h1>\n<pre>GET /incoming/v2/clients/{ACME_ID}/creditBatches\n"
    f"Authorization: Bearer {TEST_KEY}\nAccept: */*</pre>\n" + "<p>filler</p>\n" * 200 + "</body></html>"
)


@pytest.fixture
def sandbox():
    with Sandbox(api_key=TEST_KEY, page_size=5) as server:
        yield server


def apply_through(sandbox, write_manifest, state, rule):
    with FaultProxy(sandbox.url, rule) as proxy:
        env = {"TI_BASE_URL": proxy.url, "TI_API_KEY": TEST_KEY, "TI_RATE_LIMIT": "0"}
        return run_subprocess("apply", write_manifest(MANIFEST), "--state", state, "--auto-approve", env=env)


def assert_no_key(text: str) -> None:
    assert TEST_KEY[:10] not in text, f"the API key leaked:\n{text}"


@pytest.mark.parametrize(
    "refusal",
    [
        Answer(422, body={"error": "invalid", "message": f"bad body; request headers were {HEADERS_ECHOED}"}),
        Answer(400, body={"errors": [{"header": "authorization", "value": f"Bearer {TEST_KEY}"}]}),
        Answer(409, body={"message": f"conflict for key {TEST_KEY[:20]}"}),  # echoed cut short
    ],
    ids=["python-dict", "json-list", "cut-short"],
)
def test_a_refusal_that_echoes_the_headers_is_printed_without_the_key(sandbox, write_manifest, state, refusal):
    def rule(request: ProxiedRequest):
        return refusal if request.method == "POST" else Forward()

    result = apply_through(sandbox, write_manifest, state, rule)

    assert result.returncode == 1, result.stderr
    assert f"HTTP {refusal.status}" in result.stderr and REDACTED in result.stderr, result.stderr
    assert_no_key(result.stdout + result.stderr + state.read_text())


def test_an_html_error_page_is_one_line_named_by_its_title_without_the_key(sandbox, write_manifest, state):
    def rule(request: ProxiedRequest):
        if request.method == "GET":
            return Answer(404, headers={"Content-Type": "text/html"}, body=ERROR_PAGE.encode())
        return Forward()

    result = apply_through(sandbox, write_manifest, state, rule)

    assert result.returncode == 1, result.stderr
    assert_no_key(result.stdout + result.stderr)
    for line in (line for line in result.stderr.splitlines() if "HTTP 404" in line):
        assert "HTTP 404: an HTML page: 404 Not Found)" in line, result.stderr
    assert "filler" not in result.stderr and "<" not in result.stderr and "Accept: */*" not in result.stderr


def test_a_redirect_to_an_address_carrying_the_key_is_named_without_it(sandbox, write_manifest, state):
    def rule(request: ProxiedRequest):
        return Answer(302, headers={"Location": f"https://login.example.com/?auth=Bearer%20{TEST_KEY}"})

    result = apply_through(sandbox, write_manifest, state, rule)

    assert result.returncode == 1 and "redirected to https://login.example.com/" in result.stderr, result.stderr
    assert_no_key(result.stdout + result.stderr)


def test_an_answer_that_carries_the_key_is_kept_in_state_without_it(sandbox, write_manifest, state):
    def with_the_key(answer: dict) -> dict:
        answer["data"]["CreateCreditBatch"]["note"] = f"made for Authorization: Bearer {TEST_KEY}"
        return answer

    def rule(request: ProxiedRequest):
        return Forward(rewrite=with_the_key if request.method == "POST" else None)

    result = apply_through(sandbox, write_manifest, state, rule)

    assert result.returncode == 0, result.stderr
    assert_no_key(result.stdout + result.stderr + state.read_text())
    assert REDACTED in state.read_text()


# --- the rules, as pure functions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "said",
    [
        f"Authorization: Bearer {TEST_KEY}",
        f'{{"authorization": "Basic {TEST_KEY}"}}',
        "authorization=sometoken123",
        "bearer abc.def.ghi",
        f"key={TEST_KEY.upper()[:0]}{TEST_KEY}&x=1",
    ],
)
def test_authorization_values_and_bearer_tokens_are_redacted(said):
    redacted = Redactor([TEST_KEY]).text(said)
    assert TEST_KEY[:10] not in redacted and "sometoken123" not in redacted and "abc.def" not in redacted
    assert REDACTED in redacted


def test_a_message_is_one_line_cut_short():
    message = Redactor([TEST_KEY]).message("first line\n\n   second\tline " + "x" * 500)
    assert "\n" not in message and len(message) <= 200 and message.startswith("first line second line")
    assert message.endswith("...")
