"""Applies on a PostgreSQL state as real processes: the manifests they apply (fresh clients, two
identical twins), what those declare, starting an apply and waiting for its end."""

from __future__ import annotations

import functools
import subprocess
import uuid
from pathlib import Path

from conftest import start_apply as start_apply_process
from conftest import wait_until as wait_until_within

RECOVERY_WAIT = "0.5"  # the sandbox commits a create the moment it reads it


def manifest_text(tag: str, clients: int = 2, batches: int = 6) -> str:
    """Batches of distinct names plus two identical twins (the same request twice), for fresh clients."""
    lines = ["clients:"]
    for number in range(clients):
        client = uuid.uuid5(uuid.NAMESPACE_URL, f"provisioner-pg-faults/{tag}/{number}")
        lines += [f"  c{number}:", f"    id: {client}", "    batches:"]
        for batch in range(batches):
            lines += [
                f"      b{batch}:",
                f"        name: Client {number} batch {batch}",
                f"        startingBalance: {100 * (batch + 1)}",
            ]
        if number == 0:
            for twin in ("twin-a", "twin-b"):
                lines += [f"      {twin}:", "        name: Twin", "        startingBalance: 777"]
    return "\n".join(lines) + "\n"


def write_manifest(directory: Path, tag: str, **shape) -> Path:
    path = directory / "manifests" / "m.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(manifest_text(tag, **shape), encoding="utf-8")
    return path


def declared(manifest: Path) -> dict[str, tuple[str, str, int]]:
    """address -> (client id, name, starting balance), read back from the manifest's text."""
    from provisioner.manifest.loader import load

    return {
        address: (spec.client_id, spec.attributes()["name"], spec.attributes()["startingBalance"])
        for address, spec in load([manifest]).batches.items()
    }


# These applies run while PostgreSQL servers are started, stopped and cut: waits get a little longer
# than elsewhere.
wait_until = functools.partial(wait_until_within, timeout=30.0)


def start_apply(
    manifest: Path, url: str, workspace: str, api_url: str, *extra: str, cwd: Path | None = None
) -> subprocess.Popen:
    return start_apply_process(
        manifest,
        url,
        api_url,
        "--workspace",
        workspace,
        "--rate-limit",
        "0",
        "--recovery-wait",
        RECOVERY_WAIT,
        *extra,
        cwd=cwd,
    )


def finish(process: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"the apply did not finish in {timeout} s:\n{err}") from None
    return process.returncode, out, err
