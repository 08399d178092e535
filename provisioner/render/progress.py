"""Progress of a long run (apply, refresh) for a person at a terminal and for a CI log.

One reporter per run. The work calls it with events: ``start`` (how much, at what rate),
``done`` or ``failed`` for each piece, ``notable`` for what deserves a line of its own (a
recovery, a wait), ``retry`` for a request being tried again, ``finish``. The reporter decides
what a reader sees:

- before the first request, the estimate: "Applying 300 creates at 120 requests/min: about 2 min 30 s.";
- on a terminal, one live line (done/total, rate, elapsed, ETA, failures) redrawn below the log
  of events (tqdm draws it and prints the events above it);
- without a terminal (CI), a timestamped summary line every 10 s and at every tenth of the
  work, instead of a redraw;
- ``quiet`` keeps the estimate, the live line or summaries and the final line, nothing else.

Retry notices are at most one per few seconds: a 429 storm on ten workers is one line, not forty.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TextIO

from provisioner.core.plurals import plural, word_for

SUMMARY_EVERY = 10.0  # seconds between summary lines in a log
SUMMARY_STEPS = 10  # and one at every tenth of the work...
SUMMARY_MIN_GAP = 1.0  # ...but never two within a second
RETRY_NOTICE_EVERY = 5.0  # seconds between two retry notices
REDRAW_EVERY = 0.5  # seconds between redraws of the live line (elapsed and ETA move on)
RATE_WINDOW = 15.0  # seconds of recent completions the rate and the ETA are measured over
NO_REAL_LIMIT = 100_000  # requests/min: a server announcing this much (a local sandbox) sets no pace

ACTION_NAMES = {
    "create": ("create", "creates"),
    "update": ("update", "updates"),
    "recover": ("recovery", "recoveries"),
    "replace": ("replacement", "replacements"),
}


class Progress:
    """See the module's docstring. Thread-safe: workers report from their own threads."""

    def __init__(
        self,
        write: Callable[[str], None] | None = None,
        *,
        stream: TextIO | None = None,
        live: bool = False,
        quiet: bool = False,
        summary_every: float | None = None,
        timestamps: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ):
        """``write`` receives each line (plain lines: no live line, no periodic summaries unless
        ``summary_every``); otherwise lines go to ``stream``."""
        self._stream = stream if stream is not None else sys.stderr
        self._write = write or self._print
        self._live = live
        self.quiet = quiet
        self._summary_every = summary_every
        self._timestamps = timestamps
        self._clock = clock
        self._lock = threading.RLock()  # re-entrant: a signal handler may report mid-report
        self._bar: Any = None  # a tqdm bar while one is drawn
        self._ticker: threading.Thread | None = None
        self._ticking = threading.Event()
        self._tally: Tally | None = None  # the run under way, if any
        self._title = ""
        self._unit = "changes"
        self._last_summary = 0.0
        self._next_mark = 0
        self._last_retry_notice = -math.inf
        self._retries_unsaid = 0

    @classmethod
    def for_stream(cls, stream: TextIO | None = None, quiet: bool = False) -> Progress:
        """The CLI's reporter: a live line when ``stream`` is a terminal, summary lines otherwise."""
        stream = stream if stream is not None else sys.stderr
        live = _is_terminal(stream)
        return cls(
            stream=stream, live=live, quiet=quiet, summary_every=None if live else SUMMARY_EVERY, timestamps=not live
        )

    @classmethod
    def silent(cls) -> Progress:
        return cls(write=lambda line: None)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- events -------------------------------------------------------------

    def start(
        self,
        total: int,
        rate: float | None,
        *,
        title: str = "Applying",
        what: str | None = None,
        unit: str = "changes",
        requests: int | None = None,
    ) -> None:
        """Before the first request: ``total`` pieces of work (``what`` describes them, default
        "N changes") at ``rate`` requests per minute (None: no limit); ``requests``: how many
        requests the estimate counts, when not one per piece."""
        with self._lock:
            self._tally = Tally(total, rate, self._clock)
            self._title, self._unit = title.rstrip(":"), unit
            self._last_summary = self._clock()
            self._next_mark = self._step()
            requests = total if requests is None else requests
            self._stamped(f"{title} {what or f'{total:,} {unit}'} {estimate(requests, rate)}.")
            if self._live:
                self._bar = _live_bar(total, self._stream, self._title)
                self._redraw()
            if self._live or self._summary_every:
                self._ticking.clear()
                self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
                self._ticker.start()

    def done(self, line: str | None = None) -> None:
        """One piece of work finished; ``line`` (if any) is logged as "[k/total] line"."""
        with self._lock:
            tally = self._count()
            if line is not None and not self.quiet:
                self._emit(f"[{tally.done}/{tally.total}] {line}")
            self._after_count()

    def failed(self, line: str | None) -> None:
        """One piece of work failed (it counts as done: it will not be tried again in this run);
        ``line`` None: the run's summary says it, with the others failed for the same cause."""
        with self._lock:
            self._count(failed=True)
            if line is not None and not self.quiet:
                self._emit(line)
            self._after_count()

    def notable(self, line: str) -> None:
        """Something a reader should see as it happens: a recovery, a wait, a skipped change."""
        with self._lock:
            if not self.quiet:
                self._emit(line)

    def warn(self, line: str) -> None:
        """Shown even with quiet: an interrupt, a warning that changes what the run does."""
        with self._lock:
            self._emit(line)

    def retry(self, line: str) -> None:
        """A request is being tried again: at most one line per RETRY_NOTICE_EVERY seconds."""
        with self._lock:
            now = self._clock()
            if now - self._last_retry_notice < RETRY_NOTICE_EVERY:
                self._retries_unsaid += 1
                return
            if self._retries_unsaid:
                more = self._retries_unsaid
                line += f" ({more} more {word_for(more, 'retry', 'retries')} since the last notice)"
            self._last_retry_notice, self._retries_unsaid = now, 0
            if not self.quiet:
                self._emit(f"Note: {line[:1].upper()}{line[1:]}")

    def finish(self, result: str | None = None) -> None:
        """The run is over, complete or not: the live line gives way to one final line,
        "``result`` (done/total in elapsed, rate, failures)." (default: "Done", or "Stopped"
        when not everything was done)."""
        self.close()
        with self._lock:
            tally, self._tally = self._tally, None
            if tally is None:
                return
            result = result or ("Done" if tally.done >= tally.total else "Stopped")
            self._stamped(f"{result} ({tally.outcome(self._unit)}).")

    def close(self, wait: bool = True) -> None:
        """Stops the redraws and clears the live line (idempotent; nothing is printed).
        ``wait`` False: do not wait for the ticker thread to end (the process is about to exit)."""
        self._ticking.set()
        ticker, self._ticker = self._ticker, None
        if wait and ticker is not None and ticker is not threading.current_thread():
            ticker.join(timeout=2)  # outside the lock: the ticker may be waiting for it
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    # --- what a reader sees -------------------------------------------------------

    def status(self, counts: bool = True) -> str:
        """The figures of the run under way (see Tally.status)."""
        return self._tally.status(counts) if self._tally else ""

    def _count(self, failed: bool = False) -> Tally:
        if self._tally is None:  # work reported outside a run: count it in one of unknown size
            self._tally = Tally(0, None, self._clock)
        self._tally.count(failed)
        return self._tally

    def _after_count(self) -> None:
        tally = self._tally
        assert tally is not None  # counted just before
        done = tally.done
        if self._bar is not None:
            self._bar.set_postfix_str(self.status(counts=False), refresh=False)
            self._bar.update(1)
        elif self._summary_every and done >= self._next_mark:
            while self._next_mark <= done:
                self._next_mark += self._step()
            if self._clock() - self._last_summary >= SUMMARY_MIN_GAP and done < tally.total:
                self._summary()

    def _step(self) -> int:
        assert self._tally is not None  # asked while counting
        return max(1, math.ceil(self._tally.total / SUMMARY_STEPS))

    def _summary(self) -> None:
        self._last_summary = self._clock()
        self._stamped(f"{self._title}: {self.status()}")

    def tick(self) -> None:
        """Time passes: the live line's elapsed and ETA move on; a log gets its summary line
        when the last one is SUMMARY_EVERY seconds old. Called by the ticker thread."""
        with self._lock:
            if self._tally is None:
                return
            if self._bar is not None:
                self._redraw()
            elif self._summary_every and self._clock() - self._last_summary >= self._summary_every:
                self._summary()

    def _tick(self) -> None:
        interval = REDRAW_EVERY if self._live else min(1.0, self._summary_every or 1.0)
        while not self._ticking.wait(interval):
            self.tick()

    def _redraw(self) -> None:
        self._bar.set_postfix_str(self.status(counts=False), refresh=True)

    def _stamped(self, line: str) -> None:
        if self._timestamps:
            line = f"[{datetime.now().astimezone():%H:%M:%S}] {line}"
        self._emit(line)

    def _emit(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=self._stream)
        else:
            self._write(line)

    def _print(self, line: str) -> None:
        print(line, file=self._stream, flush=True)


class Tally:
    """The figures of one run: done and failed, the recent pace, elapsed, ETA. Arithmetic on the
    clock it is given, no output."""

    def __init__(self, total: int, rate: float | None, clock: Callable[[], float]):
        self.total = total
        self.rate = rate  # requests per minute expected (None: no limit), until a pace is measured
        self.done = 0
        self.failures = 0
        self._clock = clock
        self._started_at = clock()
        self._recent: deque[float] = deque()  # completion times within the last RATE_WINDOW seconds

    def count(self, failed: bool = False) -> None:
        self.done += 1
        self.failures += failed
        now = self._clock()
        self._recent.append(now)
        while now - self._recent[0] > RATE_WINDOW:
            self._recent.popleft()

    def elapsed(self) -> float:
        return self._clock() - self._started_at

    def pace(self) -> float | None:
        """Completions per second over the recent window; None until there are enough to tell."""
        if len(self._recent) >= 2:
            span = self._recent[-1] - self._recent[0]
            if span > 0:
                return (len(self._recent) - 1) / span
        if self.done and self.elapsed() >= 2:
            return self.done / self.elapsed()
        return None

    def status(self, counts: bool = True) -> str:
        """ "30/300 (10%), 120/min, elapsed 15 s, ETA 2 min 15 s, 0 failed" (the live line draws
        done/total itself: ``counts`` False leaves them out)."""
        parts = []
        if counts:
            parts.append(
                f"{self.done:,}/{self.total:,}" + (f" ({self.done * 100 // self.total}%)" if self.total else "")
            )
        pace = self.pace()
        if pace:
            parts.append(per_minute(pace * 60))
        parts.append(f"elapsed {duration(self.elapsed(), short=True)}")
        remaining = self.total - self.done
        if remaining > 0:
            speed = pace or (self.rate / 60 if self.rate else None)
            parts.append(f"ETA {duration(remaining / speed, short=True)}" if speed else "ETA unknown")
        parts.append(f"{self.failures:,} failed")
        return ", ".join(parts)

    def outcome(self, unit: str) -> str:
        """ "300/300 changes in 2 min 30 s, 120/min, 2 failed": the final line's figures."""
        elapsed = self.elapsed()
        figures = [f"{self.done:,}/{self.total:,} {unit} in {duration(elapsed)}"]
        if self.done and elapsed >= 1:
            figures.append(per_minute(self.done / elapsed * 60))
        if self.failures:
            figures.append(f"{self.failures:,} failed")
        return ", ".join(figures)


def _live_bar(total: int, stream: TextIO, title: str):
    from tqdm import tqdm

    # A terminal that reports no size (a fresh pseudo-terminal, some CI runners) gets 80 x 24:
    # tqdm would otherwise trim the line to nothing or hide it.
    sized = _columns(stream) > 0
    return tqdm(
        total=total,
        file=stream,
        desc=title,
        leave=False,
        dynamic_ncols=sized,
        ncols=None if sized else 80,
        nrows=None if sized else 24,
        mininterval=0.1,
        # done/total and a short bar from tqdm; rate, elapsed, ETA and failures from status().
        bar_format="{desc}: {n_fmt}/{total_fmt} {bar:12} {percentage:3.0f}%{postfix}",
        ascii=" #" if not _speaks_unicode(stream) else None,
    )


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 0


def _speaks_unicode(stream: TextIO) -> bool:
    return "utf" in (getattr(stream, "encoding", "") or "").lower()


# --- words and figures ---------------------------------------------------------------


def estimate(requests: int, rate: float | None) -> str:
    """ "at 120 requests/min: about 2 min 30 s" (the rate limit is the floor of the duration)."""
    if not rate:
        return "with no rate limit of our own"
    if rate >= NO_REAL_LIMIT:
        return "with no rate limit (the server announces none that matters)"
    seconds = requests * 60 / rate
    return f"at {rate:,.0f} requests/min: {'about ' if seconds >= 1 else ''}{duration(seconds)}"


def describe_work(actions: Mapping[str, int] | Counter) -> str:
    """ "300 creates" or "302 changes (300 creates, 2 updates)"."""
    counts = {action: count for action, count in actions.items() if count}
    total = sum(counts.values())
    named = [
        f"{count:,} {ACTION_NAMES.get(action, (action, action + 's'))[count != 1]}" for action, count in counts.items()
    ]
    if len(named) == 1:
        return named[0]
    return f"{plural(total, 'change', 'changes')} ({', '.join(named)})"


def duration(seconds: float, short: bool = False) -> str:
    """ "under a second" ("0 s" when ``short``), "45 s", "2 min 30 s", "1 h 05 min"."""
    if seconds < 1 and not short:
        return "under a second"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def per_minute(rate: float) -> str:
    return f"{rate:,.0f}/min" if rate >= 10 else f"{rate:.1f}/min"
