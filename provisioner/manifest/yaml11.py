"""The implicit types of YAML 1.1 plain scalars, exactly as PyYAML resolves them.

A manifest means what YAML 1.1 (PyYAML, the located loader) says it means. The fast
reader parses with a YAML 1.2 parser, so it must know where the two disagree: a plain
``yes`` is a boolean to YAML 1.1 and text to YAML 1.2, ``0o17`` the other way round.
These are PyYAML's resolver patterns (yaml/resolver.py), without their ``^``/``$``
anchors so that they can be embedded in larger patterns; the tests check them against
PyYAML itself.
"""

from __future__ import annotations

# tag -> pattern of a plain scalar YAML 1.1 reads as that type (anchored by the user).
IMPLICIT = {
    "bool": r"(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)",
    "float": (
        r"(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?"
        r"|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
        r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*"
        r"|[-+]?\.(?:inf|Inf|INF)"
        r"|\.(?:nan|NaN|NAN))"
    ),
    "int": (
        r"(?:[-+]?0b[0-1_]+"
        r"|[-+]?0[0-7_]+"
        r"|[-+]?(?:0|[1-9][0-9_]*)"
        r"|[-+]?0x[0-9a-fA-F_]+"
        r"|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)"
    ),
    "merge": r"(?:<<)",
    "null": r"(?:~|null|Null|NULL|)",
    "timestamp": (
        r"(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"
        r"|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?"
        r"(?:[Tt]|[ \t]+)[0-9][0-9]?"
        r":[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?"
        r"(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)"
    ),
    "value": r"(?:=)",
}


def pattern_of(*tags: str) -> str:
    """One alternation of the given types' patterns, for embedding."""
    return "(?:" + "|".join(IMPLICIT[tag] for tag in tags) + ")"
