"""Pure work over many items, shared with a forked process when the machine has a second core.

A cold plan of 10,000 files parses them and plans their clients: pure work, item by item,
the same whichever process does it. ``in_two(function, items)`` is ``function(items)``: this
process does the first half, a child (``os.fork``: it has everything loaded already, it starts
in milliseconds) does the second half and sends its results back through a pipe, pickled
(between a process and its own child, never stored). Whatever happens to the child (it died,
raised, or its results did not arrive whole), its half is done here: the result never depends
on it.

Only where forking is safe and worth it: a system with ``fork``, a process with one thread (a
child of a multi-threaded process may wait for ever on a lock another thread held), a second
CPU it may run on, and enough items.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import threading
from collections.abc import Callable
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

LEAST_ITEMS = 1000  # files: below this, a second process costs about what it saves
_LENGTH = struct.Struct("<Q")


def in_two(
    function: Callable[[list[Item]], list[Result]],
    items: list[Item],
    least: int | None = None,
    sent: Callable[[Result], Result] | None = None,
) -> list[Result]:
    """``function(items)``, its second half computed by a child process when that is possible.
    ``function`` must be pure, return one result per item in order, and its results picklable;
    ``sent`` (optional) is what the child sends of each result, when the whole is not worth its
    transfer (the caller then takes either form)."""
    if len(items) < max(LEAST_ITEMS if least is None else least, 2) or not can_fork():
        return function(items)
    half = len(items) // 2
    first, second = items[:half], items[half:]
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child's coverage is not collected)
        os.close(read_end)
        _send(write_end, function if sent is None else lambda part: list(map(sent, function(part))), second)
    os.close(write_end)
    theirs = None
    try:
        mine = function(first)
        theirs = _receive(read_end)
    except BaseException:
        os.kill(child, signal.SIGKILL)
        raise
    finally:
        os.close(read_end)
        _, status = os.waitpid(child, 0)
    if theirs is None or status != 0 or len(theirs) != len(second):
        theirs = function(second)
    return mine + theirs


def can_fork() -> bool:
    return hasattr(os, "fork") and threading.active_count() == 1 and cpus() > 1


def cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _send(write_end: int, function: Callable, items: list) -> None:
    """In the child: compute, send, and leave at once (no exit handlers, no buffers flushed twice)."""
    status = 1
    try:
        _close_inherited(keep=write_end)
        data = pickle.dumps(function(items), protocol=pickle.HIGHEST_PROTOCOL)
        with os.fdopen(write_end, "wb") as out:
            out.write(_LENGTH.pack(len(data)))
            out.write(data)
        status = 0
    except BaseException:  # noqa: BLE001 - whatever it is, the parent does this half itself
        pass
    finally:
        os._exit(status)


def _close_inherited(keep: int) -> None:
    """The child lets go of what it inherited (a state lock's file, a database connection): a lock
    is released as soon as its holder ends, whatever this child is still doing."""
    try:
        descriptors = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc: the usual range
        descriptors = list(range(3, 256))
    for descriptor in descriptors:
        if descriptor > 2 and descriptor != keep:
            try:
                os.close(descriptor)
            except OSError:
                pass


def _receive(read_end: int) -> list | None:
    """The child's results, or None when they did not arrive whole."""
    with os.fdopen(read_end, "rb", closefd=False) as pipe:
        head = pipe.read(_LENGTH.size)
        if len(head) != _LENGTH.size:
            return None
        (length,) = _LENGTH.unpack(head)
        data = pipe.read(length)
    if len(data) != length:
        return None
    return pickle.loads(data)
