"""The client-side rate limiter: with a fake clock for the arithmetic, against the real sandbox for the promise.

The promise: paced at the instance's limit, an apply meets no 429 in steady state.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import pytest
import requests
from conftest import ACME_ID, TEST_KEY, init_state

from provisioner.api.client import CreditsApi
from provisioner.api.pacing import RateLimiter
from provisioner.core.timestamps import parse_timestamp
from provisioner.operations.connection import rate_limiter
from provisioner.sandbox import Sandbox


class FakeClock:
    """A monotonic clock that moves only when told; sleep() records, and advances time if asked to."""

    def __init__(self, advance_on_sleep: bool = True):
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._advance = advance_on_sleep
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            if self._advance:
                self.now += seconds


def limiter_with(clock: FakeClock, rpm: float | None) -> RateLimiter:
    return RateLimiter(rpm, clock=clock, sleep=clock.sleep)


def send_times(limiter: RateLimiter, clock: FakeClock, count: int) -> list[float]:
    times = []
    for _ in range(count):
        limiter.acquire()
        times.append(clock.now)
    return times


# ---------------------------------------------------------------- spacing


def test_slots_are_spaced_by_sixty_over_rpm():
    clock = FakeClock()

    times = send_times(limiter_with(clock, 120), clock, 5)

    assert [t - times[0] for t in times] == pytest.approx([0, 0.5, 1.0, 1.5, 2.0])


def test_no_rpm_means_no_pacing():
    clock = FakeClock()
    limiter = limiter_with(clock, None)

    send_times(limiter, clock, 10)

    assert clock.sleeps == []


def test_time_already_spent_is_not_waited_again():
    clock = FakeClock()
    limiter = limiter_with(clock, 60)
    limiter.acquire()
    clock.now += 5  # the caller was busy for longer than one interval

    limiter.acquire()

    assert clock.sleeps == []


@pytest.fixture
def frequent_thread_switches():
    """Threads switch every microsecond, so an unguarded read-modify-write would be interleaved."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


def test_threads_share_one_sequence_of_slots(frequent_thread_switches):
    clock = FakeClock(advance_on_sleep=False)  # time stands still: every caller's wait shows its slot
    limiter = limiter_with(clock, 600)

    start = threading.Barrier(8)

    def worker():
        start.wait()
        for _ in range(1000):
            limiter.acquire()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # 8,000 distinct slots 0.1 s apart: the first one needs no wait.
    assert sorted(clock.sleeps) == pytest.approx([0.1 * n for n in range(1, 8000)])


# ---------------------------------------------------------------- pause


def test_pause_holds_every_caller_until_it_ends():
    clock = FakeClock(advance_on_sleep=False)
    limiter = limiter_with(clock, None)
    limiter.pause(5)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: limiter.acquire(), range(4)))

    assert clock.sleeps == [5, 5, 5, 5]


def test_paced_slots_resume_after_a_pause():
    clock = FakeClock(advance_on_sleep=False)
    limiter = limiter_with(clock, 60)
    limiter.pause(5)

    for _ in range(3):
        limiter.acquire()

    assert clock.sleeps == pytest.approx([5, 6, 7])


def test_a_shorter_pause_does_not_cut_a_longer_one():
    clock = FakeClock()
    limiter = limiter_with(clock, None)
    limiter.pause(5)
    limiter.pause(1)

    limiter.acquire()

    assert clock.sleeps == [5]


# ---------------------------------------------------------------- the server's X-RateLimit-* headers


def test_a_lower_announced_limit_is_adopted():
    clock = FakeClock()
    limiter = limiter_with(clock, 600)

    limiter.observe({"X-RateLimit-Limit": "120", "X-RateLimit-Remaining": "19"})
    times = send_times(limiter, clock, 3)

    assert limiter.rpm == 120
    assert [t - times[0] for t in times] == pytest.approx([0, 0.5, 1.0])


def test_a_higher_announced_limit_is_not_adopted_over_an_explicit_one():
    limiter = RateLimiter(120)

    limiter.observe({"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "99"})

    assert limiter.rpm == 120


def test_an_unpaced_limiter_adopts_the_announced_limit():
    limiter = RateLimiter(None)

    limiter.observe({"X-RateLimit-Limit": "120"})

    assert limiter.rpm == 120


@pytest.mark.parametrize(
    "headers",
    [
        {"X-RateLimit-Limit": "soon"},
        {"X-RateLimit-Limit": "0"},
        {"X-RateLimit-Limit": "-5"},
        {},
    ],
)
def test_unusable_limit_headers_are_ignored(headers):
    limiter = RateLimiter(120)

    limiter.observe(headers)

    assert limiter.rpm == 120


def test_an_empty_window_pauses_until_its_reset():
    clock = FakeClock()
    limiter = limiter_with(clock, None)

    limiter.observe({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(time.time() + 3)})
    limiter.acquire()

    # Reset is wall-clock unix seconds, so the wait is 3 s less the few microseconds spent above.
    assert clock.sleeps == [pytest.approx(3, abs=0.5)]


def test_requests_left_in_the_window_mean_no_pause():
    clock = FakeClock()
    limiter = limiter_with(clock, None)

    limiter.observe({"X-RateLimit-Remaining": "1", "X-RateLimit-Reset": str(time.time() + 3)})
    limiter.acquire()

    assert clock.sleeps == []


def test_a_far_reset_pauses_at_most_a_minute():
    clock = FakeClock()
    limiter = limiter_with(clock, None)

    limiter.observe({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(time.time() + 3600)})
    limiter.acquire()

    assert clock.sleeps == [60]


# ---------------------------------------------------------------- against the sandbox's token bucket


def paced_api(url: str, rpm: float | None) -> CreditsApi:
    return CreditsApi(url, TEST_KEY, limiter=RateLimiter(rpm), timeout=(1.0, 5.0), pool_size=4)


def test_sequential_creates_paced_at_the_limit_meet_no_429():
    with Sandbox(api_key=TEST_KEY, rate_limit=600, burst=5) as sandbox:
        api = paced_api(sandbox.url, 600)

        for n in range(40):
            api.create_batch(ACME_ID, {"startingBalance": n})

        assert sandbox.stats["429"] == 0
        assert sandbox.stats["201"] == 40 and len(sandbox.all_batches()) == 40


def test_parallel_creates_share_the_pace_and_meet_no_429():
    with Sandbox(api_key=TEST_KEY, rate_limit=600, burst=5) as sandbox:
        api = paced_api(sandbox.url, 600)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda n: api.create_batch(ACME_ID, {"startingBalance": n}), range(20)))

        assert sandbox.stats["429"] == 0 and len(sandbox.all_batches()) == 20


def test_the_same_creates_sent_unpaced_do_meet_429():
    """The control for the two tests above: this sandbox does refuse a client that does not pace.

    Plain requests here, because any CreditsApi paces itself once it has seen X-RateLimit-Limit.
    """
    with Sandbox(api_key=TEST_KEY, rate_limit=600, burst=5) as sandbox, requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {TEST_KEY}"
        url = f"{sandbox.url}/incoming/v2/clients/{ACME_ID}/creditBatches"
        statuses = [session.post(url, json={"startingBalance": n}, timeout=5).status_code for n in range(8)]

    assert statuses[:5] == [201] * 5 and 429 in statuses[5:]


# ---------------------------------------------------------------- following the server's announced limit


def test_without_a_ceiling_the_announced_limit_is_followed_up_and_down():
    limiter = rate_limiter(None)  # what the CLI builds when neither --rate-limit nor TI_RATE_LIMIT is given
    assert limiter.rpm == 120 and limiter.ceiling is None

    rates = []
    for announced in ("600", "60", "600"):
        limiter.observe({"X-RateLimit-Limit": announced})
        rates.append(limiter.rpm)

    assert rates == [600, 60, 600]


def test_an_explicit_limit_is_a_ceiling_the_announced_limit_moves_under():
    limiter = rate_limiter(300)

    rates = []
    for announced in ("600", "60", "600"):
        limiter.observe({"X-RateLimit-Limit": announced})
        rates.append(limiter.rpm)

    assert rates == [300, 60, 300]


def test_zero_means_no_limit_of_our_own_until_the_server_announces_one():
    limiter = rate_limiter(0)
    assert limiter.rpm is None and limiter.ceiling is None

    limiter.observe({"X-RateLimit-Limit": "600"})

    assert limiter.rpm == 600


def test_a_faster_pace_announced_while_a_caller_waits_shortens_its_wait():
    """The first answer of a run announces 600/min while the next caller waits out a 120/min slot."""
    limiter = RateLimiter(None, start=6)  # a slot every 10 s
    limiter.acquire()
    waited: list[float] = []

    def caller():
        started = time.monotonic()
        limiter.acquire()
        waited.append(time.monotonic() - started)

    thread = threading.Thread(target=caller)
    thread.start()
    time.sleep(0.2)
    limiter.observe({"X-RateLimit-Limit": "600"})
    thread.join(timeout=12)

    assert waited and waited[0] < 2, "the wait kept the old pace"


def created_gaps(sandbox: Sandbox) -> list[float]:
    created = sorted(parse_timestamp(batch["createdAt"]) for batch in sandbox.all_batches())
    return [(later - earlier).total_seconds() for earlier, later in pairwise(created)]


def apply_as_a_user(sandbox: Sandbox, tmp_path, batches: int, *extra: str):
    manifest = tmp_path / "m.yaml"
    lines = ["clients:", "  acme:", f"    id: {ACME_ID}", "    batches:"]
    for n in range(batches):
        lines += [f"      b{n}:", f"        startingBalance: {n + 1}"]
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = {name: value for name, value in os.environ.items() if name != "TI_RATE_LIMIT"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "provisioner",
            "apply",
            str(manifest),
            "--state",
            str(init_state(tmp_path / "s.json")),
            "--auto-approve",
            *extra,
        ],
        env={**env, "TI_BASE_URL": sandbox.url, "TI_API_KEY": TEST_KEY},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_apply_with_no_flag_paces_at_the_limit_the_server_announces(tmp_path):
    """An Enterprise key (600/min): no flag needed to use it, and still no 429 (a burst of 5 only)."""
    with Sandbox(api_key=TEST_KEY, rate_limit=600, burst=5) as sandbox:
        applied = apply_as_a_user(sandbox, tmp_path, 30)

        assert applied.returncode == 0, applied.stderr
        assert sandbox.stats["429"] == 0
        gaps = created_gaps(sandbox)
    assert statistics.median(gaps) < 0.3, f"paced slower than the announced 600/min (0.1 s apart): {gaps}"
    assert "Applying 30 creates at 600 requests/min: about 3 s." in applied.stderr


def test_an_explicit_rate_limit_stays_a_ceiling_under_a_higher_announced_limit(tmp_path):
    with Sandbox(api_key=TEST_KEY, rate_limit=600, burst=5) as sandbox:
        applied = apply_as_a_user(sandbox, tmp_path, 12, "--rate-limit", "200")

        assert applied.returncode == 0, applied.stderr
        gaps = created_gaps(sandbox)
    assert min(gaps) > 0.2, f"faster than --rate-limit 200 (0.3 s apart): {gaps}"
