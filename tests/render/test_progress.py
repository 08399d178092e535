"""Progress a person and a CI log can read: the estimate before the first request, a live line on a
terminal, timestamped summary lines without one, --quiet, throttled retry notices.

The reporter's arithmetic runs on a fake clock; the CLI runs as a user runs it (a real process,
on a real pseudo-terminal for the live line) against the sandbox.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from conftest import TEST_KEY, init_state

from provisioner.render.progress import Progress, describe_work, duration, estimate
from provisioner.sandbox import Faults, Sandbox

STAMP = r"\[\d\d:\d\d:\d\d\] "


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def log_reporter(clock: FakeClock, **options) -> tuple[Progress, list[str]]:
    """The CI form, lines into a list: timestamps and summaries, no ticker thread (``tick`` by hand)."""
    lines: list[str] = []
    reporter = Progress(write=lines.append, timestamps=True, clock=clock, **options)
    reporter._summary_every = 10.0  # summaries on, without starting the ticker thread in start()
    return reporter, lines


# ---------------------------------------------------------------- words and figures


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0.4, "under a second"),
        (45, "45 s"),
        (150, "2 min 30 s"),
        (120, "2 min"),
        (3900, "1 h 05 min"),
    ],
)
def test_durations_read_as_a_person_says_them(seconds, text):
    assert duration(seconds) == text


def test_the_estimate_says_how_many_at_what_rate_and_how_long():
    assert (
        f"{describe_work({'create': 300})} {estimate(300, 120)}" == "300 creates at 120 requests/min: about 2 min 30 s"
    )
    assert (
        describe_work({"create": 298, "update": 1, "recover": 2}) == "301 changes (298 creates, 1 update, 2 recoveries)"
    )
    assert estimate(10, None) == "with no rate limit of our own"


# ---------------------------------------------------------------- the CI form


def test_a_log_gets_a_timestamped_summary_at_every_tenth_of_the_work():
    clock = FakeClock()
    reporter, lines = log_reporter(clock)
    reporter.start(100, 120, what="100 creates")
    for n in range(100):
        clock.now += 0.5  # 120/min
        reporter.done(f"acme/b{n}: created")
    reporter.finish()

    assert re.fullmatch(STAMP + r"Applying 100 creates at 120 requests/min: about 50 s\.", lines[0])
    summaries = [line for line in lines if re.match(STAMP + "Applying: ", line)]
    assert len(summaries) == 9  # 10 %, 20 % ... 90 %; the final line says 100 %
    assert re.fullmatch(STAMP + r"Applying: 10/100 \(10%\), 120/min, elapsed 5 s, ETA 45 s, 0 failed", summaries[0])
    assert lines[1] == "[1/100] acme/b0: created"
    assert re.fullmatch(STAMP + r"Done \(100/100 changes in 50 s, 120/min\)\.", lines[-1])


def test_a_slow_run_gets_a_summary_every_ten_seconds_even_when_nothing_finishes():
    clock = FakeClock()
    reporter, lines = log_reporter(clock)
    reporter.start(1000, 6, what="1,000 creates")
    for _ in range(25):
        clock.now += 1
        reporter.tick()

    summaries = [line for line in lines if "Applying: " in line]
    assert len(summaries) == 2
    assert "0/1,000 (0%)" in summaries[0] and "elapsed 10 s" in summaries[0] and "ETA 2 h 46 min" in summaries[0]


def test_quiet_keeps_the_estimate_the_summaries_and_the_final_line_only():
    clock = FakeClock()
    reporter, lines = log_reporter(clock, quiet=True)
    reporter.start(20, 120, what="20 creates")
    reporter.notable("acme/b1: the interrupted create never happened; creating it now")
    reporter.retry("retrying GET for client x: HTTP 503 (attempt 1 of 6); next try in 0.4 s")
    for n in range(19):
        clock.now += 0.5
        reporter.done(f"acme/b{n}: created")
    clock.now += 0.5
    reporter.failed("acme/b19: error: refused")
    reporter.warn("Interrupt received: no new requests")
    reporter.finish()

    assert not [line for line in lines if "created" in line or "retrying" in line.lower() or "error" in line]
    assert "Interrupt received: no new requests" in lines
    assert lines[0].endswith("Applying 20 creates at 120 requests/min: about 10 s.")
    assert lines[-1].endswith("Done (20/20 changes in 10 s, 120/min, 1 failed).")


def test_retry_notices_are_at_most_one_every_few_seconds_and_count_the_rest():
    clock = FakeClock()
    reporter, lines = log_reporter(clock)
    for attempt in range(1, 6):
        reporter.retry(f"retrying GET for client x: HTTP 429, rate limited (attempt {attempt} of 6); next try in 1.0 s")
        clock.now += 0.5
    clock.now += 5
    reporter.retry("retrying GET for client y: HTTP 503 (attempt 1 of 6); next try in 0.3 s")

    assert lines == [
        "Note: Retrying GET for client x: HTTP 429, rate limited (attempt 1 of 6); next try in 1.0 s",
        "Note: Retrying GET for client y: HTTP 503 (attempt 1 of 6); next try in 0.3 s "
        "(4 more retries since the last notice)",
    ]


def test_the_eta_follows_the_recent_pace():
    clock = FakeClock()
    reporter, _ = log_reporter(clock)
    reporter.start(400, 120)
    for _ in range(100):  # 60/min at first...
        clock.now += 1
        reporter.done()
    for _ in range(200):  # ...then the server announced more: 600/min
        clock.now += 0.1
        reporter.done()

    assert "600/min" in reporter.status() and "ETA 10 s" in reporter.status()


# ---------------------------------------------------------------- through the CLI


def manifest_file(tmp_path: Path, clients: int, batches_per_client: int) -> Path:
    lines = ["clients:"]
    for client in range(clients):
        lines += [f"  c{client}:", f"    id: 00000000-0000-4000-8000-{client:012d}", "    batches:"]
        for batch in range(batches_per_client):
            lines += [f"      b{batch}:", f"        startingBalance: {100 + batch}"]
    path = tmp_path / "m.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def user_env(sandbox: Sandbox) -> dict:
    env = {name: value for name, value in os.environ.items() if name != "TI_RATE_LIMIT"}
    return {**env, "TI_BASE_URL": sandbox.url, "TI_API_KEY": TEST_KEY}


def run(*args, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "provisioner", *map(str, args)], env=env, capture_output=True, text=True, timeout=120
    )


def test_apply_in_a_ci_log_says_the_estimate_first_then_timestamped_summaries(tmp_path):
    with Sandbox(api_key=TEST_KEY, rate_limit=600, burst=5) as sandbox:
        manifest = manifest_file(tmp_path, clients=3, batches_per_client=10)
        applied = run(
            "apply", manifest, "--state", init_state(tmp_path / "s.json"), "--auto-approve", env=user_env(sandbox)
        )

    assert applied.returncode == 0, applied.stderr
    lines = applied.stderr.splitlines()
    # The duplicate guard lists the two clients the preflight did not: 32 requests.
    assert re.fullmatch(
        STAMP + r"Applying 30 creates and 2 listings for the duplicate guard at 600 requests/min: "
        r"about 3 s\.",
        lines[0],
    )
    assert sum(1 for line in lines if re.match(r"\[\d+/30\] c\d/b\d: created \[id=", line)) == 30
    assert any(
        re.fullmatch(STAMP + r"Applying: \d+/30 \(\d+%\), [\d.]+/min, elapsed .*, ETA .*, 0 failed", line)
        for line in lines
    )
    assert re.fullmatch(STAMP + r"Done \(30/30 changes in .*\)\.", lines[-1])
    assert "\r" not in applied.stderr, "a log must not get a redrawn line"


def test_apply_quiet_prints_no_line_per_batch(tmp_path):
    with Sandbox(api_key=TEST_KEY) as sandbox:
        manifest = manifest_file(tmp_path, clients=2, batches_per_client=3)
        applied = run(
            "apply",
            manifest,
            "--state",
            init_state(tmp_path / "s.json"),
            "--auto-approve",
            "--quiet",
            env=user_env(sandbox),
        )

    assert applied.returncode == 0, applied.stderr
    assert "created [id=" not in applied.stderr
    assert re.search(STAMP + r"Applying 6 creates and 1 listing for the duplicate guard (at|with)", applied.stderr)
    assert re.search(STAMP + r"Done \(6/6 changes", applied.stderr)
    assert "Apply complete! Batches: 6 created" in applied.stdout


def test_plan_refresh_over_many_clients_reports_progress_in_a_log(tmp_path):
    with Sandbox(api_key=TEST_KEY, rate_limit=600, burst=5) as sandbox:
        manifest = manifest_file(tmp_path, clients=30, batches_per_client=1)
        planned = run("plan", manifest, "--state", init_state(tmp_path / "s.json"), "--refresh", env=user_env(sandbox))

    assert planned.returncode == 0, planned.stderr
    assert "Plan: 30 to create" in planned.stdout and "Refreshing" not in planned.stdout
    assert re.search(
        STAMP + r"Refreshing: listing the batches of 30 client\(s\) at 600 requests/min: about 3 s\.", planned.stderr
    )
    assert re.search(STAMP + r"Refreshing: \d+/30 \(\d+%\), .*ETA", planned.stderr)
    assert re.search(STAMP + r"Refreshed: 0 batches found \(30/30 clients in .*\)\.", planned.stderr)


def test_retries_are_announced_with_why_and_when(tmp_path):
    faults = Faults(error_rate=0.25, retry_after=0.01, seed=4)
    with Sandbox(api_key=TEST_KEY, faults=faults) as sandbox:
        manifest = manifest_file(tmp_path, clients=12, batches_per_client=1)
        planned = run("refresh", manifest, "--state", init_state(tmp_path / "s.json"), env=user_env(sandbox))
        failed_answers = sum(1 for _, _, status in sandbox.request_log if status >= 500)

    assert planned.returncode == 0, planned.stderr
    notices = [line for line in planned.stderr.splitlines() if line.startswith("Note: Retrying ")]
    assert failed_answers > len(notices) >= 1  # several retries, at most one line per few seconds
    # The client's key in the manifest, not its id.
    assert re.fullmatch(
        r"Note: Retrying the listing of client c\d+: HTTP 50[023] \(attempt \d of 6\); "
        r"next try in \d+\.\d s.*",
        notices[0],
    )


def on_terminal(args, env: dict, columns: int, timeout: float = 60) -> tuple[int, str]:
    """Runs the CLI on a real pseudo-terminal of ``columns`` x 40 (0: one that reports no size)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40 if columns else 0, columns, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "provisioner", *map(str, args)],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env,
        close_fds=True,
    )
    os.close(terminal)
    output = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed: the process is done
                break
            output += chunk
        elif process.poll() is not None:
            break
    code = process.wait(timeout=timeout)
    os.close(controller)
    return code, output.decode(errors="replace")


@pytest.mark.parametrize("columns", [120, 0])
def test_the_live_line_on_a_terminal(tmp_path, columns):
    with Sandbox(api_key=TEST_KEY, rate_limit=600, burst=5) as sandbox:
        manifest = manifest_file(tmp_path, clients=2, batches_per_client=10)
        code, output = on_terminal(
            ["apply", manifest, "--state", init_state(tmp_path / "s.json"), "--auto-approve"],
            user_env(sandbox),
            columns,
        )

    assert code == 0, output
    estimate_at = output.index(
        "Applying 20 creates and 1 listing for the duplicate guard at 600 requests/min: about 2 s."
    )
    assert estimate_at < output.index("[1/20] c")
    # One line redrawn in place (carriage returns, no new line) with its figures...
    tail = ", 0 failed" if columns else ""  # 80 columns (a terminal of no size) may cut it short
    redraws = re.findall(
        rf"\rApplying: (\d+)/20 [^\r\n]*?(\d+)%, ([\d.]+/min, )?elapsed [^,]+, ETA [^,]+{tail}", output
    )
    assert len(redraws) >= 5 and {int(done) for done, _, _ in redraws} >= {0, 10}
    # ...below the log of events, which stays: every batch's line, each on a line of its own.
    assert len(re.findall(r"\[\d+/20\] c\d/b\d: created \[id=[0-9a-f-]+\]\r\n", output)) == 20
    assert re.search(r"Done \(20/20 changes in [^)]*\)\.\r\n", output)
    assert not re.search(STAMP, output), "timestamps are for logs, not for the terminal"
    assert "Apply complete! Batches: 20 created" in output
