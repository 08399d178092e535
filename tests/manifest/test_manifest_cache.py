"""The manifest cache: a warm plan is the cold plan; a damaged or foreign cache is ignored and rebuilt."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import pytest
from conftest import init_state, run_subprocess

from provisioner.manifest import cache as manifest_cache
from provisioner.manifest import fast_reader, located_reader
from provisioner.manifest.cache import ManifestCache
from provisioner.manifest.files import find_files
from provisioner.manifest.issues import ManifestError
from provisioner.manifest.loader import load

NAMESPACE = uuid.UUID("2b7c4f1e-9a3d-4e5f-8a6b-1c2d3e4f5a6b")


def client_file(number: int, balance: int = 1000, extra: str = "") -> str:
    client_id = uuid.uuid5(NAMESPACE, f"client-{number}")
    account = uuid.uuid5(NAMESPACE, f"account-{number}")
    return (
        textwrap.dedent(f"""\
        clients:
          client-{number:03d}:
            id: {client_id}
            creditAccountId: {account}
            batches:
              q1:
                name: Client {number} Q1
                startingBalance: {balance}
                expiresOn: 2031-03-31T23:59:59+02:00
              q2:
                startingBalance: {balance * 2}
        """)
        + extra
    )


@pytest.fixture
def tree(tmp_path):
    """Twenty client files (one with a policy and anchors, which the located reader reads)."""
    directory = tmp_path / "manifests"
    directory.mkdir()
    for number in range(20):
        (directory / f"client-{number:03d}.yaml").write_text(client_file(number))
    anchors = f"""\
policy:
  maxCreates: 500
clients:
  client-100:
    id: {uuid.uuid5(NAMESPACE, "client-100")}
    batches:
      q1: &shared
        startingBalance: 5
      q2:
        <<: *shared
        name: Second
"""
    (directory / "policy.yaml").write_text(anchors)
    return directory


@pytest.fixture
def cache(tmp_path):
    return ManifestCache(tmp_path / "cache")


def counting(monkeypatch, module, name) -> list:
    calls = []
    original = getattr(module, name)

    def wrapper(*args):
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(module, name, wrapper)
    return calls


# --------------------------------------------------------------------------- same answers


def test_a_warm_load_is_the_cold_load_and_reads_no_unchanged_file(tree, cache, monkeypatch):
    cold = load([tree])
    assert load([tree], cache=cache) == cold  # fills the cache
    fast = counting(monkeypatch, fast_reader, "read")
    located = counting(monkeypatch, located_reader, "read_one")
    assert load([tree], cache=cache) == cold
    assert fast == [] and located == []


def test_one_changed_file_is_the_only_one_read_again(tree, cache, monkeypatch):
    load([tree], cache=cache)
    (tree / "client-007.yaml").write_text(client_file(7, balance=4242))
    fast = counting(monkeypatch, fast_reader, "read")
    warm = load([tree], cache=cache)
    assert len(fast) == 1
    assert warm == load([tree])
    assert warm.batches["client-007/q1"].starting_balance == 4242


def test_cold_and_warm_plans_are_identical_in_every_format(tree, tmp_path, cli, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    state = init_state(tmp_path / "state.json")
    for output in ("text", "json", "markdown"):
        cold = cli("plan", tree, "--state", state, "--format", output, "--no-cache")
        first = cli("plan", tree, "--state", state, "--format", output)
        warm = cli("plan", tree, "--state", state, "--format", output)
        assert cold.exit_code == first.exit_code == warm.exit_code == 0, cold.output
        assert cold.output == first.output == warm.output
    assert list((tmp_path / "xdg" / "provisioner").glob("manifests-*.cache"))


def test_a_file_renamed_keeps_its_own_name_in_messages_and_sources(tree, cache):
    load([tree], cache=cache)
    (tree / "client-003.yaml").rename(tree / "renamed.yaml")
    desired = load([tree], cache=cache)
    assert desired.batches["client-003/q1"].source == f"{tree / 'renamed.yaml'}:6:7"
    assert desired == load([tree])


def test_errors_are_the_located_readers_whatever_the_cache_holds(tree, cache):
    load([tree], cache=cache)
    (tree / "client-004.yaml").write_text(client_file(4).replace("startingBalance: 1000", "startingBalence: 1000"))
    with pytest.raises(ManifestError) as warm:
        load([tree], cache=cache)
    with pytest.raises(ManifestError) as cold:
        located_reader.load([tree])
    assert warm.value.issues == cold.value.issues
    assert "did you mean 'startingBalance'?" in str(warm.value)


def test_a_client_moved_into_a_second_file_is_caught_with_a_warm_cache(tree, cache):
    load([tree], cache=cache)
    (tree / "zz-copy.yaml").write_text(client_file(5))
    with pytest.raises(ManifestError) as caught:
        load([tree], cache=cache)
    assert "client 'client-005' is also declared at" in str(caught.value)


# --------------------------------------------------------------------------- safety


def pack(cache: ManifestCache) -> Path:
    (found,) = cache.directory.glob("manifests-*.cache")
    return found


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: b"",
        lambda raw: b"\x00\xff garbage",
        lambda raw: raw[: len(raw) // 2],  # a torn write
        lambda raw: raw.replace(b"Client 1 Q1", b"Client 9 Q9"),  # altered: the digest no longer matches
        lambda raw: raw.split(b"\n", 1)[0],  # the header alone
    ],
)
def test_an_unreadable_cache_is_ignored_and_rebuilt(tree, cache, damage):
    expected = load([tree], cache=cache)
    path = pack(cache)
    path.write_bytes(damage(path.read_bytes()))
    assert load([tree], cache=cache) == expected
    assert load([tree], cache=cache) == expected
    header = json.loads(path.read_bytes().split(b"\n", 1)[0])
    assert header["identity"] == cache.identity  # written again, whole


def test_entries_of_the_wrong_shape_are_caught_when_the_models_are_built(tree, cache):
    """A cache whose digest matches but whose entries are wrong (a bug, a hand edit) is dropped."""
    expected = load([tree], cache=cache)
    path = pack(cache)
    cache_file = cache.file_for(find_files([tree])[0])
    assert cache_file.path == path
    index, blob = [], b""
    for segment in cache_file.read():
        start = 0
        for content, head, length in segment.index:
            rows = json.loads(bytes(segment.blob[start : start + length]))
            start += length
            if rows:
                rows[0][3] = "not a number"
            text = json.dumps(rows).encode()
            index.append([content, head, len(text)])
            blob += text
    cache_file.write(index, [blob], append=False)
    assert load([tree], cache=cache) == expected
    assert not path.exists()  # dropped, and written again whole by the next load
    assert load([tree], cache=cache) == expected and path.exists()


def test_a_cache_of_another_version_is_not_used(tree, tmp_path, monkeypatch):
    old = ManifestCache(tmp_path / "cache")
    load([tree], cache=old)
    monkeypatch.setattr(manifest_cache, "__version__", "99.0")
    new = ManifestCache(tmp_path / "cache")
    assert new.identity != old.identity and new.read(sorted(tree.iterdir())) == {}
    fast = counting(monkeypatch, fast_reader, "read")
    assert load([tree], cache=new) == load([tree])
    assert len(fast) >= 20


def test_a_cache_that_cannot_be_written_fails_nothing(tree, tmp_path):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the cache directory would be")
    assert load([tree], cache=ManifestCache(blocked / "cache")) == load([tree])


def test_writes_are_atomic_and_the_directory_ignores_itself(tree, cache):
    load([tree], cache=cache)
    names = sorted(path.name for path in cache.directory.iterdir())
    assert names[0] == ".gitignore" and len(names) == 2 and names[1].startswith("manifests-")
    assert (cache.directory / ".gitignore").read_text().splitlines()[-1] == "*"


def test_default_directory_is_xdg_or_dot_provisioner(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert manifest_cache.ManifestCache().directory == tmp_path / "provisioner"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert manifest_cache.ManifestCache().directory == Path(".provisioner") / "cache"


# --------------------------------------------------------------------------- the CLI


def test_no_cache_neither_reads_nor_writes_it(tree, tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    state = init_state(tmp_path / "state.json")
    done = run_subprocess("plan", tree, "--state", state, "--no-cache", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "xdg").exists()
    done = run_subprocess("validate", tree, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "xdg" / "provisioner").is_dir()  # without --no-cache it is written


def test_without_xdg_the_cache_is_under_dot_provisioner_of_the_working_directory(tree, tmp_path):
    env = {"XDG_CACHE_HOME": ""}
    done = run_subprocess("validate", tree, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Success! 42 batches of 21 clients are valid." in done.stdout
    assert list((tmp_path / ".provisioner" / "cache").glob("manifests-*.cache"))
