"""Applies on a state file as real processes, for the recovery stories: their environment (the
sandbox's address, the key, a shifted clock), a kill the instant after a create left, and the judge:
each declared batch issued once, its id recorded."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from conftest import TEST_KEY, wait_until
from conftest import start_apply as start_apply_process

from provisioner.backends.file import journal_path, read_state
from provisioner.sandbox import Sandbox


def cli_env(url: str, shift: dict[str, str] | None = None) -> dict[str, str]:
    return {"TI_BASE_URL": url, "TI_API_KEY": TEST_KEY, "TI_RATE_LIMIT": "0", **(shift or {})}


def start_apply(
    manifest: Path, state: Path, url: str, *options: str, shift: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen:
    """``provisioner apply --auto-approve`` as a real process; its output goes to ``log``."""
    return start_apply_process(
        manifest, state, url, *options, env=cli_env(url, shift), log=log or state.with_name("apply.log")
    )


def intent_written(state: Path) -> bool:
    try:
        return '"op":"intent"' in journal_path(state).read_text()
    except FileNotFoundError:
        return False


def kill_after_its_create_left(process: subprocess.Popen, state: Path, after: float) -> None:
    """SIGKILL ``after`` seconds after the apply wrote its intent (the POST leaves the instant after)."""
    wait_until(lambda: intent_written(state) or process.poll() is not None, "the apply wrote its intent")
    assert process.poll() is None, "the apply ended before it could be killed"
    time.sleep(after)
    process.send_signal(signal.SIGKILL)
    process.wait()


def assert_issued_once_and_recorded(sandbox: Sandbox, state: Path, declared: dict[str, str]) -> None:
    """``declared``: address -> client id. Exactly one batch per address in the API, its id in state,
    no open intent, nothing else issued."""
    recorded = read_state(state)
    live = {batch["id"]: batch for client in set(declared.values()) for batch in sandbox.all_batches(client)}
    assert len(live) == len(declared), f"{len(live)} batches issued for {len(declared)} declared: {list(live.values())}"
    assert sorted(resource.batch_id for resource in recorded.resources.values()) == sorted(live), (
        f"state {recorded.resources} does not name each live batch once"
    )
    assert set(recorded.resources) == set(declared)
    assert not recorded.pending, f"open intents left: {sorted(recorded.pending)}"


def posts(sandbox: Sandbox) -> int:
    return sum(1 for method, _, _ in sandbox.request_log if method == "POST")
