"""The state file's text: the fast indented JSON is exactly the standard library's."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.backends.snapshot import indented_json

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text()
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4), max_leaves=20
)


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_indented_json_is_the_libraries_text(value):
    assert indented_json(value) == json.dumps(value, indent=2, sort_keys=True)


def test_what_it_does_not_know_is_written_by_the_library():
    assert indented_json({1: "a", 2: [1.5, None]}) == json.dumps({1: "a", 2: [1.5, None]}, indent=2, sort_keys=True)
    assert indented_json({"t": (1, 2)}) == json.dumps({"t": (1, 2)}, indent=2, sort_keys=True)
