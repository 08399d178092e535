"""The last check before a create's first byte leaves: on the connection, after it is open.

A run may stall anywhere (a frozen VM, a SIGSTOP, a long pause), also between the checks its caller
makes before a create (its lock still held, its intent young enough) and the moment the request is
written to the socket. So the caller's gate runs again at the socket, once the connection is open, and
the request line, headers and body then leave in one write: a stall after the gate leaves either the
whole request or nothing, never headers waiting for their body. A gate that refuses raises SendWithheld:
nothing left this machine.

Only requests sent with a gate (creates) are held this way; every other request is untouched. Through an
HTTP proxy the gate still runs, at the proxy's connection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class SendWithheld(Exception):
    """The gate refused at the socket: nothing of the request was sent."""


class _Held:
    __slots__ = ("gate", "head", "done")

    def __init__(self, gate: Callable[[], None]):
        self.gate = gate
        self.head: bytes | None = None  # the request line and headers, until the body comes
        self.done = False


_current = threading.local()  # a request is sent on the thread that asked for it


@contextmanager
def gated(gate: Callable[[], None] | None) -> Iterator[None]:
    """Requests sent on this thread inside the block pass ``gate`` at the socket (it raises to stop one)."""
    if gate is None:
        yield
        return
    _current.held = _Held(gate)
    try:
        yield
    finally:
        _current.held = None


class _Gated:
    def send(self, data) -> None:
        held: _Held | None = getattr(_current, "held", None)
        if held is None or held.done:
            return super().send(data)  # type: ignore[misc]
        if held.head is None:
            held.head = bytes(data)  # the headers: held until the body joins them
            return None
        if self.sock is None:  # type: ignore[attr-defined]
            self.connect()  # type: ignore[attr-defined]
        held.done = True
        held.gate()
        return super().send(held.head + bytes(data))  # type: ignore[misc]


class GatedHTTPConnection(_Gated, HTTPConnection):
    pass


class GatedHTTPSConnection(_Gated, HTTPSConnection):
    pass


class GatedHTTPPool(HTTPConnectionPool):
    ConnectionCls = GatedHTTPConnection


class GatedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = GatedHTTPSConnection


def install(adapter) -> None:
    """A requests HTTPAdapter's direct connections become gated ones."""
    adapter.poolmanager.pool_classes_by_scheme = {"http": GatedHTTPPool, "https": GatedHTTPSPool}
