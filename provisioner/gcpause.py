"""Pausing Python's cycle collector during bulk work.

Loading, planning and rendering 100,000 batches allocate millions of objects that stay
alive to the end. The cycle collector would walk them again and again (it is triggered by
allocations) and find nothing: none of them forms a cycle. Pausing it is the difference
between seconds and fractions of one; it is switched back on afterwards, and whatever
memory counting it relies on is kept (objects are still freed by reference counting).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
