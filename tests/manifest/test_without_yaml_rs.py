"""yaml-rs is a default dependency, but a platform without its wheel still runs provisioner:
the fast reader steps aside and the located reader (PyYAML) reads every file, to the same result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from provisioner.manifest.loader import load

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "manifests"

# Runs the given code with yaml_rs unimportable (a None entry in sys.modules makes `import` fail).
WITHOUT_YAML_RS = """
import sys
sys.modules["yaml_rs"] = None
{code}
"""


def run_without_yaml_rs(code: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_YAML_RS.format(code=code), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )


def test_the_manifests_read_without_yaml_rs_are_the_same(tmp_path):
    code = """
from provisioner.manifest import fast_reader
from provisioner.manifest.loader import load
assert fast_reader.yaml_rs is None and "yaml_rs" not in fast_reader.PARSER
print(load(sys.argv[1:]).model_dump_json())
"""
    paths = sorted(str(path) for path in EXAMPLES.glob("*.yaml"))
    result = run_without_yaml_rs(code, tmp_path, *paths)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(load(paths).model_dump_json())


def test_validate_runs_without_yaml_rs(tmp_path):
    result = run_without_yaml_rs(
        "from provisioner.cli import main\nsys.argv[0] = 'provisioner'\nmain()", tmp_path, "validate", str(EXAMPLES)
    )
    assert result.returncode == 0, result.stderr
    assert "yaml_rs" not in result.stderr


def test_a_mistake_is_reported_with_its_line_without_yaml_rs(tmp_path):
    manifest = tmp_path / "bad.yaml"
    manifest.write_text((EXAMPLES / "acme.yaml").read_text().replace("startingBalance: ", "startingBalance: -", 1))
    result = run_without_yaml_rs(
        "from provisioner.cli import main\nsys.argv[0] = 'provisioner'\nmain()", tmp_path, "validate", str(manifest)
    )
    assert result.returncode == 1
    assert f"{manifest}:" in result.stderr and "startingBalance" in result.stderr
    assert "Traceback" not in result.stderr
