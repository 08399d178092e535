"""An API that is away, or refuses the key, is said within seconds and before the plan is printed,
with what to check; a server that has answered once gets the patience a running apply deserves."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ACME_ID, TEST_KEY, init_state, recorded_nothing, two_client_manifest
from scripted_api import ScriptedServer, SleepRecorder, error_body, make_api

from provisioner.api.client import ApiError, CreditsApi
from provisioner.api.retrying import UNREACHABLE_PATIENCE
from provisioner.sandbox import Sandbox

WRONG_KEY = "ti_test_" + "w" * 24


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def run(*args, url: str, key: str = TEST_KEY) -> tuple[subprocess.CompletedProcess, float]:
    env = {name: value for name, value in os.environ.items() if name != "TI_RATE_LIMIT"}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "provisioner", *map(str, args)],
        env={**env, "TI_BASE_URL": url, "TI_API_KEY": key},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, time.monotonic() - started


@pytest.fixture
def manifest(write_manifest) -> Path:
    return write_manifest(two_client_manifest())


@pytest.mark.parametrize("command", [["plan", "--refresh"], ["refresh"], ["apply", "--auto-approve"]])
def test_nothing_listening_fails_within_seconds_with_the_url_and_what_to_check(manifest, tmp_path, command):
    url = closed_port_url()
    state = init_state(tmp_path / "state.json")

    result, took = run(command[0], manifest, "--state", state, *command[1:], url=url)

    assert result.returncode == 1
    message = result.stderr
    assert f"cannot reach the API at {url} (connection refused;" in message
    assert "TI_BASE_URL" in message and "provisioner sandbox" in message and "--sandbox" in message
    assert "Traceback" not in message
    assert took < UNREACHABLE_PATIENCE + 5, f"{took:.1f} s: the 11-17 s of the issue are back"
    assert "will be created" not in result.stdout, "the plan was printed before the API was tried"
    assert recorded_nothing(state)


def test_a_refused_key_is_said_before_the_plan_and_nothing_is_created(manifest, tmp_path):
    with Sandbox(api_key=TEST_KEY) as sandbox:
        result, _ = run(
            "apply",
            manifest,
            "--state",
            init_state(tmp_path / "state.json"),
            "--auto-approve",
            url=sandbox.url,
            key=WRONG_KEY,
        )
        requests_made = sandbox.request_log

    assert result.returncode == 1
    assert "the API rejected the key in TI_API_KEY (HTTP 401" in result.stderr
    assert WRONG_KEY not in result.stderr + result.stdout
    assert "will be created" not in result.stdout
    assert [(method, status) for method, _, status in requests_made] == [("GET", 401)]  # the preflight only
    assert recorded_nothing(tmp_path / "state.json")


def test_an_apply_with_nothing_to_do_sends_no_request(manifest, tmp_path):
    with Sandbox(api_key=TEST_KEY) as sandbox:
        first, _ = run(
            "apply", manifest, "--state", init_state(tmp_path / "state.json"), "--auto-approve", url=sandbox.url
        )
        assert first.returncode == 0, first.stderr
        seen = len(sandbox.request_log)

        again, _ = run(
            "apply", manifest, "--state", init_state(tmp_path / "state.json"), "--auto-approve", url=sandbox.url
        )

        assert again.returncode == 0 and "No changes." in again.stdout
        assert len(sandbox.request_log) == seen


def test_a_server_that_answered_once_gets_every_attempt_when_it_goes_away():
    """Mid-run, a refused connection is more likely a restart than a wrong address."""
    sleep = SleepRecorder()
    api = make_api(closed_port_url(), sleep=sleep, max_attempts=5, backoff_base=10, backoff_cap=10)
    api.answered = True

    with pytest.raises(ApiError, match="cannot reach"):
        api.list_batches(ACME_ID)

    assert len(sleep.delays) == 4


def test_a_server_never_reached_is_given_up_on_within_the_patience():
    api = make_api(closed_port_url(), sleep=None, max_attempts=6, backoff_base=0.5, backoff_cap=20)
    started = time.monotonic()

    with pytest.raises(ApiError, match="cannot reach") as caught:
        api.list_batches(ACME_ID)

    assert time.monotonic() - started <= UNREACHABLE_PATIENCE + 0.5
    assert "attempt" in str(caught.value)


# --- TLS: the cause and the fix ---------------------------------------------------------------------


@pytest.fixture
def self_signed(tmp_path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no authority signed (the openssl command line makes it)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    certificate, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(certificate),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return certificate, key


def tls_server(certificate: Path, key: Path) -> ScriptedServer:
    server = ScriptedServer(error_body(404, "no such client"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    server._server.socket = context.wrap_socket(server._server.socket, server_side=True)
    server.url = server.url.replace("http://", "https://")
    return server


def test_a_certificate_that_cannot_be_verified_is_said_at_once_with_the_fix(self_signed, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with tls_server(*self_signed) as server:
        started = time.monotonic()
        with pytest.raises(ApiError) as refused:
            CreditsApi(server.url, TEST_KEY).preflight(ACME_ID)
        took = time.monotonic() - started

        message = str(refused.value)
        assert "certificate could not be verified (self-signed certificate)" in message, message
        assert "REQUESTS_CA_BUNDLE" in message and took < 2

        # The fix the message names works.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(self_signed[0]))
        CreditsApi(server.url, TEST_KEY).preflight(ACME_ID)  # the server answered (404): reached
        assert server.received


def test_https_to_a_plain_http_server_says_the_port_speaks_http(manifest, tmp_path):
    with Sandbox(api_key=TEST_KEY) as sandbox:
        url = sandbox.url.replace("http://", "https://")
        result, took = run("plan", manifest, "--state", init_state(tmp_path / "state.json"), "--refresh", url=url)

    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "does not speak https" in result.stderr and "http:// only for a local sandbox" in result.stderr
    assert took < UNREACHABLE_PATIENCE + 5


def test_http_to_a_tls_server_suggests_https(self_signed):
    with tls_server(*self_signed) as server:
        plain = server.url.replace("https://", "http://")
        started = time.monotonic()
        with pytest.raises(ApiError) as refused:
            CreditsApi(plain, TEST_KEY).preflight(ACME_ID)

    assert "write https:// in TI_BASE_URL" in str(refused.value)
    assert time.monotonic() - started < UNREACHABLE_PATIENCE + 3
