"""The sandbox's pipeline: a request passes auth, then the rate limit, then the faults, then routing."""

from __future__ import annotations

import hmac
import traceback
from collections import Counter
from urllib.parse import unquote

from provisioner.sandbox.endpoints import Endpoints, Handler
from provisioner.sandbox.faults import FaultInjector, FaultPlan
from provisioner.sandbox.messages import ApiError, Request, Response
from provisioner.sandbox.quirks import Quirks
from provisioner.sandbox.ratelimit import RateLimiter, RateVerdict
from provisioner.sandbox.store import BatchStore
from provisioner.sandbox.traffic import Traffic


class SandboxApp:
    """Turns a request into a response: auth, then rate limit, then faults, then routing."""

    def __init__(
        self,
        *,
        store: BatchStore,
        api_key: str | None,
        limiter: RateLimiter,
        faults: FaultInjector,
        page_size: int,
        known_clients: set[str] | None,
        verbose: bool,
        quirks: Quirks | None = None,
    ) -> None:
        self._api_key = api_key
        self._limiter = limiter
        self._faults = faults
        self._verbose = verbose
        self._traffic = Traffic()
        self._routes = Endpoints(
            store=store,
            faults=faults,
            page_size=page_size,
            known_clients=known_clients,
            quirks=quirks or Quirks(),
            traffic=self._traffic,
        ).routes()
        self.request_log = self._traffic.request_log

    def stats(self) -> Counter:
        return self._traffic.stats()

    def handle(self, request: Request) -> Response:
        response = self._respond(request)
        self._traffic.record(request, response)
        return response

    def _respond(self, request: Request) -> Response:
        latency = self._faults.current.latency
        try:
            api_key = self._authenticate(request.authorization)
        except ApiError as error:
            return self._finish(error.to_response(), self._limiter.full_bucket(), latency)
        verdict = self._limiter.take(api_key)
        if not verdict.allowed:
            return self._finish(self._rate_limited(verdict), verdict, latency)
        plan = self._faults.plan()
        response = self._injected_failure(plan) or self._routed(request)
        if response.status == 201:
            response = self._after_commit(response, plan)
        return self._finish(response, verdict, plan.faults.latency)

    @staticmethod
    def _finish(response: Response, verdict: RateVerdict, latency: float) -> Response:
        response.headers.update(verdict.headers())
        response.delay = latency
        return response

    # -- auth and the rate limit

    def _authenticate(self, authorization: str | None) -> str:
        scheme, _, key = (authorization or "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise self._unauthorized("missing API key: send Authorization: Bearer <key>")
        if self._api_key is not None:
            accepted = hmac.compare_digest(key.encode(), self._api_key.encode())
        else:
            accepted = key.startswith("ti_test_")
        if not accepted:
            raise self._unauthorized("invalid API key")  # never echo the key back
        return key

    @staticmethod
    def _unauthorized(message: str) -> ApiError:
        return ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})

    def _rate_limited(self, verdict: RateVerdict) -> Response:
        return ApiError(
            429,
            f"rate limit of {verdict.limit} requests per minute exceeded",
            headers={"Retry-After": str(verdict.retry_after)},
            extra={"retryAfter": verdict.retry_after},
        ).to_response()

    # -- injected faults

    def _injected_failure(self, plan: FaultPlan) -> Response | None:
        retry_after = plan.faults.retry_after
        if plan.in_429_storm:
            self._traffic.count("injected_429")
            return ApiError(
                429,
                "too many requests (injected by the sandbox)",
                headers={"Retry-After": _format_seconds(retry_after)},
                extra={"retryAfter": _json_seconds(retry_after)},
            ).to_response()
        if plan.error_status is not None:
            self._traffic.count("injected_errors")
            headers = {"Retry-After": _format_seconds(retry_after)} if plan.error_status == 503 else {}
            return ApiError(plan.error_status, "server error (injected by the sandbox)", headers=headers).to_response()
        return None

    def _after_commit(self, response: Response, plan: FaultPlan) -> Response:
        # The batch is already committed: these faults leave the client unsure whether it exists.
        if plan.drop_after_commit:
            self._traffic.count("drops")
            return Response(0, drop_connection=True)
        if plan.error_after_commit:
            self._traffic.count("errors_after_commit")
            return ApiError(500, "server error after the batch was saved (injected by the sandbox)").to_response()
        return response

    # -- routing

    def _routed(self, request: Request) -> Response:
        try:
            handler, path_values = self._route(request)
            return handler(request, **path_values)
        except ApiError as error:
            return error.to_response()
        except Exception:
            if self._verbose:
                traceback.print_exc()
            return ApiError(500, "unexpected sandbox error").to_response()

    def _route(self, request: Request) -> tuple[Handler, dict[str, str]]:
        for pattern, handlers in self._routes:
            match = pattern.match(request.path)
            if match is None:
                continue
            handler = handlers.get(request.method)
            if handler is None:
                raise ApiError(
                    405, f"{request.method} is not allowed here", headers={"Allow": ", ".join(sorted(handlers))}
                )
            return handler, {name: unquote(value) for name, value in match.groupdict().items()}
        raise ApiError(404, f"no endpoint at {request.path}")


def _format_seconds(seconds: float) -> str:
    """1.0 -> "1", 0.25 -> "0.25": Retry-After as short as it can be."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def _json_seconds(seconds: float) -> int | float:
    return int(seconds) if float(seconds).is_integer() else seconds
