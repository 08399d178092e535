"""A request as the sandbox reads it, the response it gives, and an error answer."""

from __future__ import annotations

from dataclasses import dataclass, field

_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    422: "validation_error",
    429: "rate_limit_exceeded",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    authorization: str | None
    body: bytes | None  # None: unreadable (chunked, bad or too large Content-Length)


@dataclass
class Response:
    status: int
    payload: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop_connection: bool = False


class ApiError(Exception):
    """An error answer: becomes `{"error": ..., "message": ...}` with its status."""

    def __init__(
        self, status: int, message: str, *, headers: dict[str, str] | None = None, extra: dict | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}

    def to_response(self) -> Response:
        payload = {"error": _ERROR_CODES[self.status], "message": self.message, **self.extra}
        return Response(self.status, payload, dict(self.headers))
