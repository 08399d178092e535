"""Work shared with a forked process (parallel.py): the checks in forking_checks.py, in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.manifest import parallel

HERE = Path(__file__).parent


@pytest.mark.skipif(not hasattr(os, "fork") or parallel.cpus() < 2, reason="fork and a second CPU needed")
def test_work_shared_with_a_forked_process_is_the_work_done_here():
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(HERE / "forking_checks.py")],
        capture_output=True,
        text=True,
        cwd=HERE.parent,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "skipped" not in done.stdout and "failed" not in done.stdout
