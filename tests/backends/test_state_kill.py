"""The file backend under SIGKILL, as real processes: no acknowledged change is lost or applied twice."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from provisioner.backends.file import FileWriter, journal_path, read_state, write_snapshot
from provisioner.core.models import Resource, State

REPO = Path(__file__).resolve().parents[2]

PRELUDE = """
import os, signal, sys, threading
from pathlib import Path
from provisioner.backends import file as backend
from provisioner.backends.file import FileWriter
from provisioner.core.models import Intent, Resource

path = Path(sys.argv[1])

def killed():
    os.kill(os.getpid(), signal.SIGKILL)

def intent(address):
    return Intent(address=address, client_id="c", attributes={}, digest="0" * 64, at="2025-01-02T03:04:05.000Z")

def resource(batch_id):
    return Resource(batch_id=batch_id, client_id="c", attributes={"name": batch_id})
"""


def run_killed(script: str, path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(script), str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == -9, result.stderr


def batches(state: State) -> dict[str, str]:
    return {address: resource.batch_id for address, resource in state.resources.items()}


def test_a_fold_killed_before_dropping_the_journal_does_not_replay_a_dead_checkpoints_tail(tmp_path):
    path = tmp_path / "default.json"
    write_snapshot(path, State(serial=1, resources={"acme/a": Resource(batch_id="X", client_id="c", attributes={})}))
    # A run killed while its checkpoint wrote snapshot 2: its journal names serial 2, and the changes
    # made meanwhile follow that line (a move, then a new batch at the address it left).
    run_killed(
        """
        writer = FileWriter(path, checkpoint_seconds=1e9)
        writer.record_intent(intent("acme/z"))

        def writing_snapshot(*args, **kwargs):
            def meanwhile():
                writer.move("acme/a", "acme/b")
                writer.record_intent(intent("acme/a"))
                writer.record("acme/a", resource("Y"))
            worker = threading.Thread(target=meanwhile)
            worker.start()
            worker.join()
            killed()

        backend.write_snapshot = writing_snapshot
        writer.checkpoint()
    """,
        path,
    )
    assert batches(read_state(path)) == {"acme/b": "X", "acme/a": "Y"}
    # The next writer folds that journal into a new snapshot and is killed before it drops the journal.
    run_killed(
        """
        backend.FileWriter._drop_journal = lambda self: killed()
        FileWriter(path)
    """,
        path,
    )
    assert journal_path(path).exists()

    state = read_state(path)
    assert batches(state) == {"acme/b": "X", "acme/a": "Y"}  # X moved once, not twice: no id lost
    assert set(state.pending) == {"acme/z"}
    writer = FileWriter(path)
    writer.close()
    assert batches(read_state(path)) == {"acme/b": "X", "acme/a": "Y"}
    assert not journal_path(path).exists()


def test_kill_campaign_loses_no_acknowledged_change():
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "statekill"), "--trials", "8", "--resources", "2000", "--seed", "7"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "violations: 0" in result.stdout
    assert "trials: 8," in result.stdout
