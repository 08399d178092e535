"""Where the API is: TI_BASE_URL/TI_API_KEY from the environment, or an embedded sandbox."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioner.api.outage import GIVE_UP_AFTER
from provisioner.api.pacing import STANDARD_RATE, RateLimiter

if TYPE_CHECKING:  # the HTTP client is imported when a command connects, not at start-up
    from provisioner.api.client import CreditsApi
    from provisioner.backends import Backend
    from provisioner.core.models import State
    from provisioner.render.progress import Progress

SANDBOX_DATA_FILE = "sandbox.sqlite"
EMBEDDED_SANDBOX = "the embedded sandbox (--sandbox)"


def sandbox_files(sandbox_dir: Path) -> list[Path]:
    """The embedded sandbox's database, and the write-ahead log and shared memory SQLite keeps beside it."""
    data = sandbox_dir / SANDBOX_DATA_FILE
    return [data, data.with_name(data.name + "-wal"), data.with_name(data.name + "-shm")]


@contextmanager
def open_api(
    *,
    base_url: str | None,
    sandbox_dir: Path | None,
    rate_limit: float | None,
    parallelism: int,
    timeout: tuple[float, float] | None = None,
    on_retry: Callable[[str], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
    give_up_after: float | None = None,
) -> Iterator[CreditsApi]:
    """An API client for one command; with ``sandbox_dir`` a local sandbox serves it.

    ``rate_limit`` (requests per minute) is a ceiling; 0: none of our own. None: start at the
    Standard plan's 120/min and follow the limit the server announces, up or down.
    """
    from provisioner.api.client import ConfigurationError, CreditsApi

    limiter = rate_limiter(rate_limit)
    options: dict[str, Any] = {
        "limiter": limiter,
        "pool_size": parallelism,
        "on_retry": on_retry,
        "on_notice": on_notice,
        "give_up_after": GIVE_UP_AFTER if give_up_after is None else give_up_after,
    }
    if timeout is not None:
        options["timeout"] = timeout
    if sandbox_dir is not None:
        from provisioner.sandbox import Sandbox

        key = "ti_test_" + secrets.token_hex(16)
        with Sandbox(data_path=sandbox_files(sandbox_dir)[0], api_key=key) as server:
            api = CreditsApi(server.url, key, **options)
            api.instance = EMBEDDED_SANDBOX
            try:
                yield api
            finally:
                api.close()
        return
    url = base_url or os.environ.get("TI_BASE_URL")
    if not url:
        raise ConfigurationError(
            "no API address: set TI_BASE_URL (e.g. https://yourschool.thoughtindustries.com) or pass "
            "--base-url; to try provisioner without an account, add --sandbox."
        )
    api = CreditsApi(url, os.environ.get("TI_API_KEY", ""), **options)
    try:
        yield api
    finally:
        api.close()


def rate_limiter(rate_limit: float | None) -> RateLimiter:
    if rate_limit is None:
        return RateLimiter(None, start=STANDARD_RATE)
    return RateLimiter(rate_limit or None)


def sandbox_directory(backend: Backend) -> Path:
    """Where the embedded sandbox keeps its data: beside its state file (--sandbox always has one)."""
    from provisioner.backends.file import FileBackend

    assert isinstance(backend, FileBackend), "--sandbox opens its own state file"
    return backend.path.parent


def api_context(
    sandbox: bool,
    base_url: str | None,
    backend: Backend,
    rate_limit: float | None,
    parallelism: int,
    reporter: Progress | None = None,
    give_up_after: float | None = None,
):
    """``give_up_after``: --give-up-after (None: the outage watcher's default)."""
    from provisioner.render.progress import Progress

    reporter = reporter or Progress.for_stream()
    return open_api(
        base_url=base_url,
        sandbox_dir=sandbox_directory(backend) if sandbox else None,
        rate_limit=rate_limit,
        parallelism=parallelism,
        on_retry=reporter.retry,
        on_notice=reporter.warn,
        give_up_after=give_up_after,
    )


@dataclass(frozen=True)
class ApiSettings:
    """Where the API is and how hard to press it: a command's --sandbox, --base-url, --rate-limit,
    --parallelism and --give-up-after (None: the outage watcher's default)."""

    sandbox: bool = False
    base_url: str | None = None
    rate_limit: float | None = None
    parallelism: int = 10
    give_up_after: float | None = None

    def open(self, backend: Backend, reporter: Progress | None = None):
        """The API client for one command (a context manager); ``backend`` places the embedded sandbox."""
        return api_context(
            self.sandbox, self.base_url, backend, self.rate_limit, self.parallelism, reporter, self.give_up_after
        )


def check_instance(state: State, api, backend: Backend) -> None:
    from provisioner.backends import check_instance as check

    check(state, api.instance, backend.name)
