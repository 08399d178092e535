"""A cache file of appended segments: what reads back, what does not, when it is written whole."""

from __future__ import annotations

from pathlib import Path

from provisioner.manifest import cachefile
from provisioner.manifest.cachefile import MOST_SEGMENTS, CacheFile

FILES = [Path("a.yaml"), Path("b.yaml")]


def cache(directory: Path, identity: str = "i" * 64) -> CacheFile:
    return CacheFile(directory, "test", identity, FILES)


def read_back(cache_file: CacheFile) -> list[tuple[list, bytes]]:
    return [(segment.index, bytes(segment.blob)) for segment in cache_file.read()]


def test_segments_appended_read_back_in_order(tmp_path):
    first = cache(tmp_path)
    first.write([["one", 3]], [b"abc"], append=False)
    first.write([["two", 2]], [b"de"], append=True)
    again = cache(tmp_path)
    assert read_back(again) == [([["one", 3]], b"abc"), ([["two", 2]], b"de")]
    assert not again.damaged and again.segments == 2


def test_a_torn_append_ends_the_reading_and_asks_for_a_whole_write(tmp_path):
    first = cache(tmp_path)
    first.write([["one", 3]], [b"abc"], append=False)
    first.write([["two", 2]], [b"de"], append=True)
    raw = first.path.read_bytes()
    first.path.write_bytes(raw[:-1])  # the last segment lost its last byte
    again = cache(tmp_path)
    assert read_back(again) == [([["one", 3]], b"abc")]
    assert again.damaged and again.must_rewrite(read_entries=1, used_entries=1)


def test_an_altered_byte_is_caught_by_its_segment_s_digest(tmp_path):
    first = cache(tmp_path)
    first.write([["one", 3]], [b"abc"], append=False)
    first.path.write_bytes(first.path.read_bytes().replace(b"abc", b"abd"))
    again = cache(tmp_path)
    assert read_back(again) == [] and again.damaged


def test_another_identity_is_another_file_and_replaces_this_tree_s(tmp_path):
    old = cache(tmp_path, identity="o" * 64)
    old.write([["one", 3]], [b"abc"], append=False)
    new = cache(tmp_path, identity="n" * 64)
    assert read_back(new) == []
    new.write([["two", 2]], [b"de"], append=False)
    assert not old.path.exists() and read_back(cache(tmp_path, identity="n" * 64)) == [([["two", 2]], b"de")]


def test_written_whole_when_mostly_stale_or_in_too_many_segments(tmp_path):
    cache_file = cache(tmp_path)
    cache_file.write([["one", 1]], [b"a"], append=False)
    cache_file.read()
    assert not cache_file.must_rewrite(read_entries=10, used_entries=5)
    assert cache_file.must_rewrite(read_entries=10, used_entries=4)
    for number in range(MOST_SEGMENTS):
        cache_file.write([[str(number), 1]], [b"b"], append=True)
    cache_file.read()
    assert cache_file.must_rewrite(read_entries=1, used_entries=1)


def test_a_directory_it_cannot_write_fails_nothing(tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    cache_file = cache(blocked / "cache")
    cache_file.write([["one", 1]], [b"a"], append=False)
    cache_file.write([["two", 1]], [b"b"], append=True)
    assert read_back(cache_file) == []


def test_the_code_identity_changes_with_the_source_of_the_modules_it_names(tmp_path, monkeypatch):
    package = tmp_path / "provisioner"
    (package / "sub").mkdir(parents=True)
    for name in ("a.py", "b.py", "sub/c.py"):
        (package / name).write_text(f"# {name}\n")
    monkeypatch.setattr(cachefile, "__file__", str(package / "manifest" / "cachefile.py"))
    named, every = cachefile.code_identity("v1", ["a.py"]), cachefile.code_identity("v1")
    assert cachefile.code_identity("v2", ["a.py"]) != named  # the header: versions
    (package / "b.py").write_text("# b.py, changed\n")
    assert cachefile.code_identity("v1", ["a.py"]) == named
    assert cachefile.code_identity("v1") != every
    every = cachefile.code_identity("v1")
    (package / "sub" / "c.py").write_text("# in a subpackage, changed\n")
    assert cachefile.code_identity("v1") != every
    (package / "a.py").write_text("# a.py, changed\n")
    assert cachefile.code_identity("v1", ["a.py"]) != named
