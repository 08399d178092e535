"""Work shared with a forked process gives what the work gives in one process, whatever the child does.

Run by tests/manifest/test_parallel.py in a fresh interpreter: a process that has started threads (the
sandbox's, tqdm's) never forks, and the whole test session has.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone

import pytest

from provisioner.core.models import State
from provisioner.manifest import loader, parallel
from provisioner.manifest.cache import ManifestCache
from provisioner.planning import plan_memo
from provisioner.planning.plan_memo import PlanMemo
from provisioner.render.text import render_text

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
PARENT = os.getpid()


def client_file(number: int) -> str:
    return (
        f"clients:\n  client-{number:03d}:\n    id: {uuid.UUID(int=number + 1)}\n    batches:\n"
        f"      q1:\n        startingBalance: {10 + number}\n        expiresOn: 2031-03-31T23:59:59+02:00\n"
        f"      q2:\n        name: Second\n        startingBalance: 7\n"
    )


def squares(numbers: list[int]) -> list[int]:
    return [number * number for number in numbers]


def in_the_child(action):
    def work(numbers: list[int]) -> list[int]:
        if os.getpid() != PARENT:
            action()
        return squares(numbers)

    return work


@pytest.fixture(autouse=True)
def one_thread():
    assert parallel.can_fork(), "this process must be able to fork: one thread, a second CPU"


def test_the_halves_come_back_in_order():
    assert parallel.in_two(squares, list(range(1000)), least=2) == squares(list(range(1000)))


@pytest.mark.parametrize("action", [lambda: os._exit(3), lambda: 1 / 0, lambda: os.kill(os.getpid(), 9)])
def test_a_child_that_fails_has_its_half_done_here(action):
    assert parallel.in_two(in_the_child(action), list(range(500)), least=2) == squares(list(range(500)))


def test_a_failure_here_ends_the_child_too():
    def work(numbers):
        if os.getpid() == PARENT:
            raise KeyboardInterrupt
        return squares(numbers)

    with pytest.raises(KeyboardInterrupt):
        parallel.in_two(work, list(range(500)), least=2)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no child left behind


def test_a_cold_plan_in_two_processes_is_the_plan_in_one(tmp_path, monkeypatch):
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    for number in range(60):
        (manifests / f"client-{number:03d}.yaml").write_text(client_file(number))

    def cold_plan():
        cache = tmp_path / f"cache-{parallel.LEAST_ITEMS}"
        declarations = loader.read_declarations([manifests], ManifestCache(cache))
        return plan_memo.plan(declarations, State(), NOW, declarations.policy, PlanMemo(cache))

    monkeypatch.setattr(parallel, "LEAST_ITEMS", 10**9)
    alone = cold_plan()
    forks = []
    fork = os.fork
    monkeypatch.setattr(os, "fork", lambda: forks.append(1) or fork())
    monkeypatch.setattr(parallel, "LEAST_ITEMS", 2)
    shared = cold_plan()
    assert len(forks) == 2  # the files' reading and the clients' planning
    assert shared == alone and render_text(shared) == render_text(alone)


def test_the_child_holds_nothing_it_inherited(tmp_path):
    """A lock (flock) held here is released when this process ends, not when the child does."""
    import fcntl

    descriptor = os.open(tmp_path / "lock", os.O_CREAT | os.O_RDWR)
    fcntl.flock(descriptor, fcntl.LOCK_EX)

    def work(numbers):
        if os.getpid() != PARENT:
            try:
                os.fstat(descriptor)
            except OSError:
                return squares(numbers)  # closed in the child, as it should be
            return [-1] * len(numbers)  # still open: results that show it
        return squares(numbers)

    try:
        assert parallel.in_two(work, list(range(500)), least=2) == squares(list(range(500)))
    finally:
        os.close(descriptor)
