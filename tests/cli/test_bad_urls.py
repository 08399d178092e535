"""A malformed or secret-bearing URL (--state, PROVISIONER_STATE, --base-url, TI_BASE_URL) is one clear
error, exit 1, naming where it came from; never a traceback, never the secret, never a file written.

Every test runs the CLI as a user does, in a real process.
"""

from __future__ import annotations

import pytest
from conftest import init_state, run_subprocess, two_client_manifest

from provisioner.backends.file import read_state

SECRET = "s3cret%PW"


def assert_one_clear_error(result, *expected: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("Error: ") == 1, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


# --- review 3: a database password never reaches a message -------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [f"postgresql://u:{SECRET}@127.0.0.1/db", f"postgresql://u@127.0.0.1/db?password={SECRET}"],
    ids=["userinfo", "query"],
)
def test_a_bad_percent_encoding_in_the_state_url_is_refused_without_echoing_the_password(tmp_path, url):
    result = run_subprocess("init", env={"PROVISIONER_STATE": url}, cwd=tmp_path)

    assert_one_clear_error(result, "PROVISIONER_STATE", "%25")
    assert "s3cret" not in result.stdout + result.stderr


def test_driver_messages_lose_every_form_of_the_password():
    from provisioner.backends.postgres import passwords_in, scrub

    url = "postgresql://u:p%40ss@h/db?password=q%2Fw&sslmode=require"
    said = 'bad "p%40ss", "p@ss", "q%2Fw" and "q/w", but not "require"'
    assert scrub(said, passwords_in(url)) == 'bad "***", "***", "***" and "***", but not "require"'
    assert scrub("nothing secret", passwords_in("postgresql://u@h/db")) == "nothing secret"


# --- review 4: plan --out never prints a --base-url with credentials --------------------------------------


def test_plan_out_refuses_a_base_url_with_credentials_before_writing_the_plan(tmp_path):
    (tmp_path / "m.yaml").write_text(two_client_manifest())
    state = init_state(tmp_path / "s.json")
    plan_file = tmp_path / "p.plan"

    result = run_subprocess(
        "plan",
        tmp_path / "m.yaml",
        "--state",
        state,
        "--out",
        plan_file,
        "--base-url",
        "https://bob:hunter2@school.example.com",
    )

    assert_one_clear_error(result, "--base-url", "carries credentials")
    assert "hunter2" not in result.stdout + result.stderr
    assert not plan_file.exists()
    assert read_state(state).serial == 0


# --- review 5: urllib's ValueError is a user error naming the option ----------------------------------------


@pytest.mark.parametrize("source", ["--state", "PROVISIONER_STATE"])
def test_a_state_url_urllib_cannot_read_names_the_option(tmp_path, source):
    url = "postgresql://u@[::1/db"
    args, env = (["--state", url], {}) if source == "--state" else ([], {"PROVISIONER_STATE": url})

    result = run_subprocess("state", "list", *args, env=env, cwd=tmp_path)

    assert_one_clear_error(result, "--state or PROVISIONER_STATE", "postgresql://")


@pytest.mark.parametrize("url", ["https://[::1", "https://school.example.com:99999", "https://school.example.com:x"])
@pytest.mark.parametrize("source", ["--base-url", "TI_BASE_URL"])
def test_a_base_url_urllib_cannot_read_is_refused_at_once(tmp_path, url, source):
    (tmp_path / "m.yaml").write_text(two_client_manifest())
    state = init_state(tmp_path / "s.json")
    args, env = (["--base-url", url], {}) if source == "--base-url" else ([], {"TI_BASE_URL": url})

    result = run_subprocess(
        "plan",
        tmp_path / "m.yaml",
        "--state",
        state,
        "--refresh",
        *args,
        env={"TI_API_KEY": "ti_test_" + "k" * 24, **env},
        timeout=20,
    )

    assert_one_clear_error(result, "base URL", "https://yourschool.thoughtindustries.com")
    assert "Retrying" not in result.stderr and "cannot reach" not in result.stderr
