"""Recovery's hardening, proven on real processes and real servers: a journal line that fails midway
leaves no fragment, ids are compared whatever their JSON type, and a listing that does not say how many
batches there are is cross-checked before it proves that a create never happened.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import ACME_ID, run_subprocess
from faultproxy import Answer, DropThenCommit, FaultProxy, Forward, ProxiedRequest

from provisioner.backends.file import journal_path, read_state

# --- a journal append that fails midway ---------------------------------------------------------------------

# A real process, a real file descriptor: the kernel writes the part of a line that fits under the file
# size limit (RLIMIT_FSIZE), then refuses the rest with EFBIG, as a disk filling up mid-line does.
WRITER = textwrap.dedent(
    """
    import os, resource, signal, sys
    from pathlib import Path
    from provisioner.backends.file import FileWriter, journal_path
    from provisioner.core.models import Resource

    state = Path(sys.argv[1])
    writer = FileWriter(state, checkpoint_seconds=3600)

    def record(number):
        writer.record(f"acme/b{number}", Resource(batch_id=f"batch-{number}", client_id="acme-id",
                                                  attributes={"name": "n" * 200, "startingBalance": number}))

    record(0)
    before = os.path.getsize(journal_path(state))
    resource.setrlimit(resource.RLIMIT_FSIZE, (before + 100, resource.RLIM_INFINITY))  # room for part of a line
    try:
        record(1)
        print("no failure")
    except Exception as exc:
        print("failed:", type(exc).__name__, exc)
    print("size after the failure:", os.path.getsize(journal_path(state)), "before:", before)
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    record(2)  # the disk has room again: this line must stand on its own
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # a crash: nothing folds the journal in
    """
)


def test_a_journal_line_that_fails_midway_leaves_no_fragment_for_the_next_line(state):
    child = subprocess.run([sys.executable, "-c", WRITER, str(state)], capture_output=True, text=True, timeout=60)

    assert child.returncode == -signal.SIGKILL, child.stderr
    assert "failed:" in child.stdout and "File too large" in child.stdout, child.stdout
    sizes = child.stdout.split("size after the failure:")[1].split()
    assert sizes[0] == sizes[2], f"the part of the line that was written was not cut back: {child.stdout}"
    lines = journal_path(state).read_bytes().split(b"\n")
    assert lines[-1] == b"", "the journal ends with a whole line"
    entries = [json.loads(line) for line in lines[:-1]]  # every line is whole JSON: nothing glued to a fragment
    assert [entry.get("address") for entry in entries] == [None, "acme/b0", "acme/b2"]
    assert sorted(read_state(state).resources) == ["acme/b0", "acme/b2"], "the next reader sees every whole line"


def with_file_size_limit(limit: int):
    def apply_limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return apply_limit


def four_batches(write_manifest) -> Path:
    lines = ["clients:", "  acme:", f"    id: {ACME_ID}", "    batches:"]
    for number in range(4):
        lines += [f"      b{number}:", f"        name: Acme {number}", f"        startingBalance: {1000 + number}"]
    return write_manifest("\n".join(lines) + "\n")


def test_an_apply_whose_journal_cannot_grow_stops_with_one_message_and_the_next_apply_converges(
    sandbox, api_env, write_manifest, state
):
    """The disk fills up under apply: it stops naming the journal, sends no create whose intent was not
    written, and the next apply finds what was made and creates the rest, each batch once."""
    manifest = four_batches(write_manifest)
    command = [
        sys.executable,
        "-m",
        "provisioner",
        "apply",
        str(manifest),
        "--state",
        str(state),
        "--auto-approve",
        "--parallelism",
        "1",
    ]
    full = subprocess.run(
        command,
        env={**os.environ, **api_env},
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=with_file_size_limit(2500),
    )

    assert full.returncode == 1, full.stderr
    assert "Traceback" not in full.stderr
    assert str(journal_path(state)) in full.stderr and "File too large" in full.stderr, full.stderr
    made = sandbox.all_batches(ACME_ID)
    assert 0 < len(made) < 4, "the limit falls in the middle of the run"
    assert len(made) <= len(read_state(state).resources) + len(read_state(state).pending), (
        "a create left without its intent"
    )

    again = run_subprocess("apply", manifest, "--state", state, "--auto-approve", env=api_env)

    assert again.returncode == 0, again.stderr
    live = sandbox.all_batches(ACME_ID)
    recorded = read_state(state)
    assert len(live) == 4 and sorted(b["id"] for b in live) == sorted(r.batch_id for r in recorded.resources.values())
    assert not recorded.pending


# --- ids whatever their JSON type ---------------------------------------------------------------------------


class PresentedIds:
    """A gateway in front of the sandbox that shows its ids otherwise: create answers carry the id as a
    string, listings as a JSON number (``number``) or the same UUID in capitals (``capitals``)."""

    def __init__(self, style: str):
        self.style = style
        self.numbers: dict[str, int] = {}

    def _number(self, batch_id: str) -> int:
        return self.numbers.setdefault(batch_id, 1001 + len(self.numbers))

    def in_create_answer(self, payload: dict) -> dict:
        batch = payload["data"]["CreateCreditBatch"]
        batch["id"] = str(self._number(batch["id"])) if self.style == "number" else batch["id"].lower()
        return payload

    def in_listing(self, payload: dict) -> dict:
        for batch in payload["data"]["APICreditBatchesByClientAndCreditAccount"]["creditBatches"]:
            batch["id"] = self._number(batch["id"]) if self.style == "number" else batch["id"].upper()
        return payload


TWINS = """
clients:
  acme:
    id: {client}
    batches:
      twin-a:
        name: Twin
        startingBalance: 777
{second}"""
SECOND_TWIN = """      twin-b:
        name: Twin
        startingBalance: 777
"""


def test_ids_are_compared_whatever_their_case(sandbox, api_env, write_manifest, state):
    """twin-a is recorded with the id its create answer gave; listings show it in capitals. The duplicate
    guard must see it as claimed (not block twin-b as a copy of it), and the recovery of twin-b's lost
    answer must leave it to twin-a (not see two candidates and stop)."""
    style = "capitals"
    ids = PresentedIds(style)
    lose_the_second_answer = {"POST": 0}

    def rule(request: ProxiedRequest):
        if request.method == "POST":
            lose_the_second_answer["POST"] += 1
            if lose_the_second_answer["POST"] == 2:
                return DropThenCommit(after=0)  # committed just before the next request: the lookup sees it
            return Forward(rewrite=ids.in_create_answer)
        return Forward(rewrite=ids.in_listing)

    with FaultProxy(sandbox.url, rule) as gateway:
        env = {**api_env, "TI_BASE_URL": gateway.url}
        one = write_manifest(TWINS.format(client=ACME_ID, second=""))
        first = run_subprocess("apply", one, "--state", state, "--auto-approve", env=env)
        both = write_manifest(TWINS.format(client=ACME_ID, second=SECOND_TWIN))
        second = run_subprocess("apply", both, "--state", state, "--auto-approve", env=env)
        refreshed = run_subprocess("plan", both, "--state", state, "--refresh", env=env)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "created (its answer was lost; found by listing)" in second.stderr, second.stderr
    assert refreshed.returncode == 0 and "No changes" in refreshed.stdout, refreshed.stdout + refreshed.stderr
    assert gateway.posts() == 2
    recorded = read_state(state)
    live = sandbox.all_batches(ACME_ID)
    assert len(live) == 2 and {r.batch_id.lower() for r in recorded.resources.values()} == {b["id"] for b in live}
    assert not recorded.pending


def test_an_id_listed_as_a_number_is_no_id_and_stops_rather_than_guessing(sandbox, api_env, write_manifest, state):
    """The contract's ids are strings (UUIDs). twin-a's create answer gives "1001"; listings give 1001, a
    JSON number. Turned into text, it used to pass for twin-a's id. Now it is no batch's id: the listed
    batch is claimed by nobody, so twin-b, just like it, is stopped by the duplicate guard, naming it."""
    ids = PresentedIds("number")

    def rule(request: ProxiedRequest):
        return Forward(rewrite=ids.in_create_answer if request.method == "POST" else ids.in_listing)

    with FaultProxy(sandbox.url, rule) as gateway:
        env = {**api_env, "TI_BASE_URL": gateway.url}
        first = run_subprocess(
            "apply",
            write_manifest(TWINS.format(client=ACME_ID, second="")),
            "--state",
            state,
            "--auto-approve",
            env=env,
        )
        both = write_manifest(TWINS.format(client=ACME_ID, second=SECOND_TWIN))
        second = run_subprocess("apply", both, "--state", state, "--auto-approve", env=env)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 1, second.stderr
    assert gateway.posts() == 1, second.stderr
    assert "1001 (not a batch id)" in second.stderr and "without a proper id" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr
    assert set(read_state(state).resources) == {"acme/twin-a"}


# --- a listing without pageInfo.total ------------------------------------------------------------------------


def without_total(payload: dict) -> dict:
    payload["data"]["APICreditBatchesByClientAndCreditAccount"]["pageInfo"].pop("total", None)
    return payload


def test_without_a_total_a_negative_is_concluded_only_on_two_listings_that_agree(
    sandbox, api_env, write_manifest, state
):
    """The API lists without pageInfo.total; a create is answered 503 before any work. Before it is sent
    again, the client's batches are listed twice, and only the same batches twice prove it never happened."""

    def rule(request: ProxiedRequest):
        if request.method == "POST" and request.number == 1:
            return Answer(503)
        return Forward(rewrite=without_total if request.method == "GET" else None)

    manifest = four_batches(write_manifest)
    with FaultProxy(sandbox.url, rule) as gateway:
        env = {**api_env, "TI_BASE_URL": gateway.url}
        result = run_subprocess(
            "apply",
            manifest,
            "--state",
            state,
            "--auto-approve",
            "--parallelism",
            "1",
            "--recovery-wait",
            "0.5",
            env=env,
        )
        log = list(gateway.log)

    assert result.returncode == 0, result.stderr
    refused = next(index for index, (method, _, what) in enumerate(log) if what == "answered 503")
    resent = next(index for index, (method, _, _) in enumerate(log) if method == "POST" and index > refused)
    lookups = [entry for entry in log[refused + 1 : resent] if entry[0] == "GET"]
    assert len(lookups) == 3, f"looked once at once, then twice to prove the negative: {log}"
    assert len(sandbox.all_batches(ACME_ID)) == 4 and len(read_state(state).resources) == 4


def test_listings_without_a_total_that_never_agree_stop_the_run_instead_of_creating_again(
    sandbox, api_env, write_manifest, state
):
    """A flaky listing without a total (an index that drops a batch every other time) cannot prove a negative:
    the run stops for that address, says why, and sends nothing again."""
    flaky = {"listings": 0}

    def hide_one_every_other_time(payload: dict) -> dict:
        flaky["listings"] += 1
        listing = without_total(payload)["data"]["APICreditBatchesByClientAndCreditAccount"]
        if flaky["listings"] % 2:
            listing["creditBatches"] = listing["creditBatches"][1:]
        return payload

    def rule(request: ProxiedRequest):
        if request.method == "POST" and request.number == 2:
            return Answer(503)
        return Forward(rewrite=hide_one_every_other_time if request.method == "GET" else None)

    manifest = four_batches(write_manifest)
    with FaultProxy(sandbox.url, rule) as gateway:
        env = {**api_env, "TI_BASE_URL": gateway.url}
        result = run_subprocess(
            "apply",
            manifest,
            "--state",
            state,
            "--auto-approve",
            "--parallelism",
            "1",
            "--recovery-wait",
            "0.5",
            env=env,
        )
        posts = gateway.posts()

    assert result.returncode == 1
    assert "came back different" in result.stderr and "pageInfo.total" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert posts == 4, "the refused create of acme/b1 was sent again on listings that prove nothing"
    assert sorted(batch["startingBalance"] for batch in sandbox.all_batches(ACME_ID)) == [1000, 1002, 1003]
    assert set(read_state(state).pending) == {"acme/b1"}, "its outcome stays open for the next apply"
