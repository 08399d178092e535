"""A requests-based client of the credits API, as docs/credits-api.md describes it.

Retries are safe by construction: a request that may have reached the server
is retried only when repeating it cannot issue credits twice (list, update).
A create whose fate is unknown raises OutcomeUnknown and the applier resolves
it by listing, never by a blind second POST.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from urllib.parse import quote, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from provisioner.api.clock import ServerClock
from provisioner.api.outage import GIVE_UP_AFTER, OUTAGE_STATUSES, Outage
from provisioner.api.pacing import RateLimiter, Stopped
from provisioner.api.redaction import Redactor
from provisioner.api.retrying import Retrying
from provisioner.api.send_gate import SendWithheld, gated, install
from provisioner.core.models import batch_key, proper_id, shown_id

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
RETRYABLE_STATUSES = {429, 500, 502, 503, 504}
API_KEY_CHARACTERS = re.compile(r"[!-~]+")  # printable ASCII, no spaces


class ApiError(Exception):
    """A failure to show the user: the message says what happened and what to do."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class AuthError(ApiError):
    pass


class NotFoundError(ApiError):
    pass


class RequestRejected(ApiError):
    """400/409/422: the server refused this request; it did nothing."""


class OutcomeUnknown(ApiError):
    """A create was sent and no definite answer came back: it may or may not exist."""


class ConfigurationError(ApiError):
    pass


class RequestCancelled(ApiError):
    """The stop event was set (Ctrl-C) before this request left: the server saw nothing."""


class ApiUnavailable(RequestCancelled):
    """The API stopped answering for longer than the run waits: this request, never sent, gave up
    with every other one. The message says since when and why."""


def check_base_url(url: str) -> str:
    """The base URL without a trailing slash; https unless it is a loopback address."""
    example = "https://yourschool.thoughtindustries.com"
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - urllib judges the port only when asked: a bad one is refused here, not retried
    except ValueError as exc:
        # Not echoed: the URL may carry credentials.
        raise ConfigurationError(
            f"the API base URL (TI_BASE_URL or --base-url) cannot be read: {exc}. Expected e.g. {example}."
        ) from None
    if parts.username or parts.password:
        # Not echoed: what stands before the @ may be a password.
        raise ConfigurationError(
            f"the API base URL for {parts.hostname} carries credentials (user:password@); remove them: "
            "the API key comes from TI_API_KEY only."
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"the API base URL {url!r} is not an https:// address; expected e.g. {example}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigurationError(
            f"the API base URL {url!r} uses plain http: the API key would cross the network "
            "unencrypted. Use https:// (plain http is allowed only for loopback addresses, "
            "such as the local sandbox)."
        )
    return url.strip().rstrip("/")


def instance_name(base_url: str) -> str:
    """What a state file records as its API: the host; any local simulator is one "loopback"."""
    parts = urlsplit(base_url)
    if is_loopback(parts.hostname or ""):
        return "a loopback sandbox"
    return f"{parts.scheme}://{parts.netloc.lower()}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class CreditsApi:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        limiter: RateLimiter | None = None,
        timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        backoff_cap: float = 20.0,
        pool_size: int = 10,
        sleep: Callable[[float], None] | None = None,
        on_retry: Callable[[str], None] | None = None,
        give_up_after: float | None = GIVE_UP_AFTER,
        on_notice: Callable[[str], None] | None = None,
    ):
        """``sleep`` replaces the (interruptible) backoff wait, for tests; ``on_retry`` is told, in
        one sentence, each time a request is tried again and why.

        ``give_up_after``: seconds the API may go without answering (see outage.py) before the
        whole run stops; meanwhile a request failing for that reason is tried beyond
        ``max_attempts``. None: no watcher, each request gives up after ``max_attempts``.
        ``on_notice`` is told when the API stops answering and when it answers again."""
        if not api_key:
            raise ConfigurationError(
                "no API key: set TI_API_KEY in the environment (keys are never read from flags or files)."
            )
        if not API_KEY_CHARACTERS.fullmatch(api_key):
            # Said before any request: a header that cannot be sent must not look like a lost answer.
            raise ConfigurationError(
                "TI_API_KEY contains spaces, line breaks or other characters an API key cannot have "
                "(a trailing newline or \\r from a copied file?). Set it again without them."
            )
        self.base_url = check_base_url(base_url)
        # Everything the server says passes through it before it is printed or kept: a server
        # echoing the request's headers must not put the key in an error message or in state.
        self.redactor = Redactor([api_key])
        self.instance = instance_name(self.base_url)
        self.clock = ServerClock()
        self.answered_ok = False  # the API has answered 2xx in this run: its address is right
        self.limiter = limiter or RateLimiter(None)
        self.timeout = timeout
        self.retrying = Retrying(
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            stop=self.limiter.stop,
            sleep=sleep,
            on_retry=on_retry,
        )
        self.answered = False  # has the server answered once (any HTTP status) in this run?
        # Shared by every request of the run: the API away for too long stops them all at once.
        self.outage = Outage(give_up_after, self.limiter.stop, where=f"the API at {self.base_url}", on_notice=on_notice)
        self.watching = give_up_after is not None
        self.client_names: dict[str, str] = {}
        self.session = requests.Session()
        self.session.headers.update(
            {"Authorization": f"Bearer {api_key}", "Accept": "application/json", "User-Agent": "provisioner"}
        )
        # The environment is read once, here: requests would read it again for every request (a sixth
        # of a create's CPU, which ten workers share), and would let a ~/.netrc entry for the host
        # replace the Bearer key with Basic auth. Proxies (with NO_PROXY) and a CA bundle still apply.
        self.session.trust_env = False
        self.session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
        self.session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(pool_size, 1), max_retries=0)
        install(adapter)  # a create's caller checks again at the socket (send_gate.py)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def name_clients(self, names: Mapping[str, str]) -> None:
        """Client id -> the manifest's key for it: retry notices name "client acme", not an id."""
        self.client_names.update({client_id.lower(): key for client_id, key in names.items()})

    def _listing_of(self, client_id: str) -> str | None:
        key = self.client_names.get(client_id.lower())
        return f"the listing of client {key}" if key else None

    @property
    def stop(self) -> threading.Event:
        """Once set (Ctrl-C), no request leaves any more: waiting ones raise RequestCancelled."""
        return self.limiter.stop

    def close(self) -> None:
        self.outage.close()
        self.session.close()

    def preflight(self, client_id: str) -> None:
        """One cheap request (the first page of a client's batches) before any real work, so that a
        refused key or an unreachable API is said at once, and the server's announced rate limit
        is known. Nothing to do once the server has answered in this run."""
        if self.answered:
            return
        path = f"/incoming/v2/clients/{quote(client_id, safe='')}/creditBatches"
        try:
            self._request(
                "GET",
                path,
                params={"clientId": client_id, "page": 1},
                idempotent=True,
                subject=f"client {client_id}",
                label=self._listing_of(client_id),
            )
        except NotFoundError:
            pass  # the server answered and took the key: that is all this asks

    # --- the three calls -------------------------------------------------

    def create_batch(
        self,
        client_id: str,
        body: dict,
        before_send: Callable[[], None] | None = None,
        after_refusal: Callable[[], None] | None = None,
        about: str | None = None,
        at_socket: Callable[[], None] | None = None,
    ) -> dict:
        """``before_send`` runs the instant before each attempt leaves (after pacing and any
        Retry-After pause), so the caller's record of when the create went out is never early;
        ``after_refusal`` the instant a 429 says this attempt did nothing, before the pause, so that
        a run killed during the pause leaves nothing to prove; ``at_socket`` on the open connection,
        just before the request is written (raising SendWithheld stops it: ``before_send`` then runs
        again for the next attempt). ``about``: the batch's address, for the retry notices."""
        path = f"/incoming/v2/clients/{quote(client_id, safe='')}/creditBatches"
        payload = self._request(
            "POST",
            path,
            json=body,
            idempotent=False,
            subject=f"client {client_id}",
            before_send=before_send,
            after_refusal=after_refusal,
            at_socket=at_socket,
            label=f"the create of {about}" if about else None,
        )
        # The server accepted the create: the batch may exist even though we cannot read it.
        try:
            batch = _unwrap(payload, "CreateCreditBatch")
        except ApiError as exc:
            raise OutcomeUnknown(f"{exc} The create was accepted, so the batch may exist.") from None
        if not isinstance(batch, dict):
            raise OutcomeUnknown(
                "unexpected answer: data.CreateCreditBatch is not a credit batch. "
                "The create was accepted, so the batch may exist."
            )
        if proper_id(batch.get("id")) is None:
            # Never recorded as it came: the batch's real id would be lost. Looked up instead.
            raise OutcomeUnknown(
                f"the API accepted the create but answered with no proper batch id (id: {shown_id(batch.get('id'))}); "
                "the batch may exist, so its intent stays open until a listing shows it."
            )
        return batch

    def update_batch(self, batch_id: str, body: dict, about: str | None = None) -> dict:
        path = f"/incoming/v2/clients/creditBatches/{quote(batch_id, safe='')}"
        payload = self._request(
            "PUT",
            path,
            json=body,
            idempotent=True,
            subject=f"batch {batch_id}",
            label=f"the update of {about}" if about else None,
        )
        return _unwrap(payload, "UpdateCreditBatch")

    def list_batches(self, client_id: str) -> Listing:
        """Every batch of the client, following hasMore page after page."""
        path = f"/incoming/v2/clients/{quote(client_id, safe='')}/creditBatches"
        batches: dict[str, dict] = {}  # by id: a batch listed twice (pages shifting) counts once
        page = 1
        while True:
            params = {"clientId": client_id, "page": page}
            try:
                payload = self._request(
                    "GET",
                    path,
                    params=params,
                    idempotent=True,
                    subject=f"client {client_id}",
                    label=self._listing_of(client_id),
                )
            except NotFoundError as exc:
                if page == 1:
                    raise  # no such client
                # The client exists (page 1 answered): a later page's 404 says nothing about its batches.
                raise ApiError(
                    f"listing the batches of client {client_id}: page {page} answered 404 although the API said "
                    "more follow. Nothing was decided on it; run the command again.",
                    exc.status,
                ) from None
            listing = _unwrap(payload, "APICreditBatchesByClientAndCreditAccount")
            items, page_info = self._listed_page(listing, client_id, page)
            before = len(batches)
            for batch in items:
                batch_id = proper_id(batch.get("id"))
                # A batch without a usable id is kept (it may be the one a create made), under its
                # whole text: listed twice while pages shift, it still counts once.
                key = (
                    "id " + batch_key(batch_id)
                    if batch_id is not None
                    else "whole " + json.dumps(batch, sort_keys=True, default=repr)
                )
                batches.setdefault(key, batch)
            # A page with nothing new ends the walk even if hasMore says otherwise (a server
            # ignoring ?page would otherwise be asked forever).
            if page_info.get("hasMore") and len(batches) == before:
                raise ApiError(
                    f"listing the batches of client {client_id}: page {page} added nothing new although "
                    "the API says more follow (does it ignore ?page=?). Nothing was decided on it."
                )
            if not page_info.get("hasMore"):
                counted = _check_complete(client_id, batches, page_info.get("total"))
                return Listing(batches.values(), counted=counted)
            page += 1

    def _listed_page(self, listing, client_id: str, page: int) -> tuple[list[dict], dict]:
        """The batches and pageInfo of one listed page, their shape checked: anything else is said
        once, naming the server, and nothing is decided on it."""
        where = f"the API at {self.base_url} listed the batches of client {client_id} (page {page})"
        undecided = "Nothing was decided on it."
        if not isinstance(listing, dict):
            raise ApiError(
                f"{where} as {self._kind(listing)}, not as an object with creditBatches and pageInfo. {undecided}"
            )
        items = listing.get("creditBatches")
        if items is None:
            items = []
        if not isinstance(items, list):
            raise ApiError(f"{where}: creditBatches is {self._kind(items)}, not a list of batches. {undecided}")
        for number, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                raise ApiError(
                    f"{where}: creditBatches item {number} is {self._kind(item)}, not a batch object. {undecided}"
                )
        page_info = listing.get("pageInfo")
        if page_info is None:
            page_info = {}
        if not isinstance(page_info, dict):
            raise ApiError(f"{where}: pageInfo is {self._kind(page_info)}, not an object. {undecided}")
        return items, page_info

    def _kind(self, value) -> str:
        """What a JSON value from the server is, for a message: its type and the start of its text."""
        names = {
            dict: "an object",
            list: "a list",
            str: "a string",
            bool: "a boolean",
            int: "a number",
            float: "a number",
            type(None): "null",
        }
        text = self.redactor.message(json.dumps(value, default=repr), 40)
        return f"{names.get(type(value), type(value).__name__)} ({text})"

    # --- one request, with retries --------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        subject: str,
        before_send: Callable[[], None] | None = None,
        after_refusal: Callable[[], None] | None = None,
        at_socket: Callable[[], None] | None = None,
        label: str | None = None,
        **kwargs,
    ) -> dict:
        try:
            return self._attempts(
                method,
                path,
                idempotent=idempotent,
                subject=subject,
                label=label,
                before_send=before_send,
                after_refusal=after_refusal,
                at_socket=at_socket,
                **kwargs,
            )
        except Stopped:  # raised only where no request is on its way
            if self.outage.gave_up:
                raise ApiUnavailable(f"{self.outage.describe()} Run the command again once the API answers.") from None
            raise RequestCancelled(
                f"{method} {path}: interrupted before it was sent; the server did nothing for it."
            ) from None

    def _attempts(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        subject: str,
        before_send: Callable[[], None] | None,
        after_refusal: Callable[[], None] | None = None,
        at_socket: Callable[[], None] | None = None,
        label: str | None = None,
        **kwargs,
    ) -> dict:
        url = self.base_url + path
        what = label or f"{method} for {subject}"  # what a retry notice names
        retrying = self.retrying
        first_try = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= retrying.max_attempts
            # A request the API is not answering waits for the run's verdict (outage.py), not its own.
            last_alone = last and not self.watching
            self.limiter.acquire()
            if before_send is not None:
                before_send()
                if self.stop.is_set():  # the interrupt came while the caller got ready
                    raise Stopped()
            sent_at = time.monotonic()
            try:
                # Never follow redirects: a 301/302 would turn a create into a GET, a 307 repeat it.
                with gated(at_socket):
                    response = self.session.request(method, url, timeout=self.timeout, allow_redirects=False, **kwargs)
            except SendWithheld:
                # Nothing left this machine: the next attempt makes its caller ready again (before_send).
                if last:
                    raise ApiError(
                        f"{method} {path}: not sent: its caller withheld it at each of {attempt} "
                        "attempts (this machine stalls?); nothing was created."
                    ) from None
                continue
            except requests.RequestException as exc:
                self.outage.failed(_reason(exc), sent_at)
                if not _may_have_been_sent(exc):
                    if not self.answered and _tls_problem(exc):
                        # A certificate or a scheme that is wrong stays wrong: said at once, with the fix.
                        raise ApiError(f"cannot reach the API at {self.base_url}: {_tls_problem(exc)}") from None
                    delay = retrying.delay(attempt)
                    if last_alone or retrying.gives_up_reaching(first_try, delay, self.answered):
                        raise self._unreachable(exc, attempt, first_try) from None
                    if not self.outage.waiting:  # the outage's own notice said it once for all
                        retrying.notice(what, _reason(exc), attempt, delay)
                    retrying.wait(delay)
                    continue
                if not idempotent:
                    raise OutcomeUnknown(
                        f"{method} {path}: no answer ({_reason(exc)}); the request may have been processed."
                    ) from None
                if last_alone:
                    raise ApiError(f"{method} {path}: no answer from {self.base_url} ({_reason(exc)}).") from None
                delay = retrying.delay(attempt)
                if not isinstance(exc, requests.exceptions.Timeout) and retrying.gives_up_reaching(
                    first_try, delay, self.answered
                ):
                    # A connection dropped by a server that never answered: a wrong port or scheme.
                    raise self._unreachable(exc, attempt, first_try) from None
                retrying.notice(what, _reason(exc), attempt, delay)
                retrying.wait(delay)
                continue
            self.answered = True
            if response.status_code in OUTAGE_STATUSES:
                self.outage.failed(f"HTTP {response.status_code}", sent_at)
            else:
                self.outage.answered()
            self.limiter.observe(response.headers)
            self.clock.observe(response.headers)
            if 300 <= response.status_code < 400:
                raise (ApiError if idempotent else OutcomeUnknown)(
                    f"{method} {path}: the server redirected to "
                    f"{self.redactor.message(response.headers.get('Location', '?'))} "
                    f"(HTTP {response.status_code}). Check TI_BASE_URL: it should be the instance's https address.",
                    response.status_code,
                )
            if response.status_code < 300:
                self.answered_ok = True
                try:
                    return _json(response, method, path, self.redactor)
                except ApiError as exc:
                    if idempotent:
                        raise
                    raise OutcomeUnknown(
                        f"{exc} It was accepted (HTTP {response.status_code}), so it may have been processed.",
                        response.status_code,
                    ) from None
            status = response.status_code
            retry_after = _retry_after(response)
            if retry_after is not None and status in (429, 503):
                self.limiter.pause(retry_after)
            if status == 429:
                # A refusal before any work: even a create is safe to send again.
                if after_refusal is not None:
                    after_refusal()
                if retry_after is None:
                    pause = max(1.0, retrying.delay(attempt))
                    self.limiter.pause(pause)
                else:
                    pause = retry_after
                if last:
                    raise ApiError(f"{method} {path}: still rate limited after {attempt} attempts (HTTP 429).", status)
                retrying.notice(what, "HTTP 429, rate limited", attempt, pause)
                continue
            if status >= 500 and not idempotent:
                raise OutcomeUnknown(
                    f"{method} {path}: the server failed (HTTP {status}); the request may have been processed.",
                    status,
                )
            if status in RETRYABLE_STATUSES and (not last or (status in OUTAGE_STATUSES and self.watching)):
                retrying.back_off(attempt, what, f"HTTP {status}", paused=retry_after if status == 503 else None)
                continue
            raise _error_for(response, method, path, subject, self.base_url, self.redactor)
        raise AssertionError("unreachable")  # pragma: no cover

    def _unreachable(self, exc: Exception, attempts: int, first_try: float) -> ApiError:
        seconds = time.monotonic() - first_try
        tried = f"{attempts} attempt{'s' if attempts > 1 else ''} in {seconds:.1f} s"
        scheme = ""
        if (
            self.base_url.startswith("http://")
            and isinstance(exc, requests.RequestException)
            and _may_have_been_sent(exc)
        ):
            scheme = " If the server on that port speaks https, write https:// in TI_BASE_URL."
        return ApiError(
            f"cannot reach the API at {self.base_url} ({_reason(exc)}; {tried}). Check TI_BASE_URL (or "
            "--base-url) and that the instance is up; to try provisioner locally, use --sandbox or "
            f"run 'provisioner sandbox'.{scheme}"
        )


class Listing(list):
    """The batches of one client. ``counted``: the API's pageInfo.total vouched for the count; without
    it, a listing that proves a create never happened is cross-checked by a second one."""

    def __init__(self, batches=(), counted: bool = False):
        super().__init__(batches)
        self.counted = counted


def _check_complete(client_id: str, batches: dict, total) -> bool:
    """A short listing must fail loudly: recovery would take a missing batch for one never made.
    True when pageInfo.total was there and agreed."""
    try:
        total = None if isinstance(total, bool) or total is None else int(float(total))
    except (TypeError, ValueError, OverflowError):  # OverflowError: "inf", 1e400
        total = None  # unreadable: the walk itself (hasMore, pages adding batches) is the check
    if total is not None and len(batches) < total:
        raise ApiError(
            f"listing the batches of client {client_id} gave {len(batches)} of the {total} the API counts "
            "(pages changing while they were read?). Nothing was decided on it; run the command again."
        )
    return total is not None


NEVER_SENT = (
    requests.exceptions.ConnectTimeout,
    requests.exceptions.InvalidHeader,
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidJSONError,
)


def _may_have_been_sent(exc: requests.RequestException) -> bool:
    """False only when the request never left, so the server saw nothing."""
    if isinstance(exc, NEVER_SENT):
        return False
    if _tls_problem(exc):  # the handshake failed: not a byte of the request was sent
        return False
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        if isinstance(reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.NameResolutionError):
            return False
    return True


CERTIFICATE_DETAIL = re.compile(r"certificate verify failed: ([^()]*?)\s*\(_ssl")


def _tls_problem(exc: Exception) -> str | None:
    """What a failed TLS handshake says about the set-up, and the fix; None for any other error."""
    if not isinstance(exc, requests.exceptions.SSLError):
        return None
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        detail = CERTIFICATE_DETAIL.search(text)
        return (
            "TLS: the server's certificate could not be verified"
            + (f" ({detail.group(1)})" if detail else "")
            + ". If the instance is reached through your organisation's proxy or its own certificate "
            "authority, set REQUESTS_CA_BUNDLE to that authority's certificate file (PEM); otherwise "
            "check that TI_BASE_URL names the instance itself."
        )
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text or "record layer failure" in text:
        return (
            "TLS: the server on this port does not speak https (a plain http server?). Check the scheme "
            "and port of TI_BASE_URL: https:// for an instance; http:// only for a local sandbox."
        )
    return None


def _reason(exc: Exception) -> str:
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    if _tls_problem(exc):
        return "TLS handshake failed"
    text = str(exc)
    reasons = {
        "Connection refused": "connection refused",
        "RemoteDisconnected": "the server closed the connection without an answer",
        "Connection reset": "the connection was reset",
        "Name or service not known": "the host name is unknown",
        "nodename nor servname": "the host name is unknown",
        "Temporary failure in name resolution": "the host name could not be resolved",
    }
    for marker, reason in reasons.items():
        if marker in text:
            return reason
    return type(exc).__name__


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _json(response: requests.Response, method: str, path: str, redactor: Redactor) -> dict:
    try:
        payload = response.json()
    except (ValueError, RecursionError):
        raise ApiError(f"{method} {path}: the server answered HTTP {response.status_code} without JSON.") from None
    if not isinstance(payload, dict):
        raise ApiError(f"{method} {path}: unexpected answer shape (expected a JSON object).")
    if redactor.in_body(response.content):
        payload = redactor.value(payload)  # never kept in state, nor shown
    return payload


def _unwrap(payload: dict, operation: str):
    try:
        return payload["data"][operation]
    except (KeyError, TypeError):
        raise ApiError(f"unexpected answer: no data.{operation} in the response.") from None


def _server_message(response: requests.Response, redactor: Redactor) -> str:
    """The server's own words about a refusal: redacted, one line, cut short."""
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return redactor.message(response.text) or "no message"
    if isinstance(body, dict):
        for key in ("message", "error", "errors"):
            if body.get(key):
                text = body[key] if isinstance(body[key], str) else json.dumps(body[key], default=repr)
                return redactor.message(text)
    return redactor.message(json.dumps(body, default=repr))


def _error_for(
    response: requests.Response, method: str, path: str, subject: str, base_url: str, redactor: Redactor
) -> ApiError:
    status = response.status_code
    message = _server_message(response, redactor)
    if status == 401:
        return AuthError(
            f"the API rejected the key in TI_API_KEY (HTTP 401 Unauthorized) at {base_url}. "
            "Check that the key belongs to this instance and has not been revoked.",
            status,
        )
    if status == 403:
        return AuthError(
            f"the key in TI_API_KEY is valid but its role may not manage credit batches (HTTP 403 "
            f"Forbidden) at {base_url}. Ask an administrator for a key with that permission.",
            status,
        )
    if status == 404:
        return NotFoundError(
            f"{subject} was not found at {base_url} (HTTP 404: {message}). Check the id, and that "
            "TI_BASE_URL is the instance's address with no extra path.",
            status,
        )
    if status in (400, 409, 422):
        return RequestRejected(f"the API refused {method} for {subject} (HTTP {status}): {message}", status)
    return ApiError(f"{method} {path} failed with HTTP {status}: {message}", status)
