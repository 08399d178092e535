"""Start-up: each command imports what it uses; plain manifests never need PyYAML."""

from __future__ import annotations

import subprocess
import sys

from conftest import init_state
from manifest_texts import good_manifest


def test_plan_and_validate_import_neither_pyyaml_nor_the_http_client(tmp_path):
    """Start-up: commands import what they use; plain manifests never need PyYAML."""
    (tmp_path / "m.yaml").write_text(good_manifest())
    state = init_state(tmp_path / "state.json")
    probe = (
        "import sys\nfrom provisioner.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as done:\n    assert done.code in (0, None, 2), done.code\n"
        "print(sorted(m for m in ('yaml', 'requests', 'urllib3', 'provisioner.api.client') if m in sys.modules))\n"
    )
    for args in (["validate", str(tmp_path)], ["plan", str(tmp_path), "--state", str(state)]):
        done = subprocess.run(
            [sys.executable, "-c", probe, *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(tmp_path / "cache")},
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1] == "[]", done.stdout


def test_the_recovery_wait_default_shown_is_the_applier_s(cli):
    """apply reads it from the applier only when it runs; its help must still say the truth."""
    from provisioner.applying.applier import RECOVERY_WAIT

    assert f"Default: {RECOVERY_WAIT:g}." in " ".join(cli("apply", "--help").output.split())


def test_forget_intent_shows_the_same_recovery_wait_default_and_takes_no_manifests(cli):
    """Review 14, 15: its help repeats apply's default; a PATHS argument that changed nothing is gone."""
    from provisioner.applying.applier import RECOVERY_WAIT

    help_text = cli("state", "forget-intent", "--help").output
    assert f"Default: {RECOVERY_WAIT:g}." in " ".join(help_text.split())
    assert help_text.splitlines()[0].endswith(" state forget-intent [OPTIONS] ADDRESS")
