"""One file as a YAML document: its node tree (with positions), or the issue that stops it; and whether
it is meant as a manifest at all, or is some other YAML (a CI workflow, say) passed by mistake."""

from __future__ import annotations

import difflib

import yaml

from provisioner.manifest.fields import BATCH_FIELDS, CLIENT_FIELDS, POLICY_FIELDS, TOP_FIELDS
from provisioner.manifest.loader import ManifestIssue
from provisioner.manifest.located_values import MERGE, describe, is_null

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def compose(file: str, data: bytes, issues: list[ManifestIssue]) -> yaml.Node | None:
    """The node tree of ``data``; None, with the issue added to ``issues``, when it is not YAML."""
    try:
        return yaml.compose(data, Loader=LOADER)
    except yaml.MarkedYAMLError as error:
        issues.append(_syntax_issue(file, error, data))
    except yaml.reader.ReaderError as error:
        line, column = _line_and_column(data, error.position)
        reason = str(error).splitlines()[0]
        issues.append(ManifestIssue(file, line, column, "", f"not valid UTF-8 text: {reason}"))
    except yaml.YAMLError as error:
        issues.append(ManifestIssue(file, 0, 0, "", f"invalid YAML: {error}"))
    return None


def _syntax_issue(file: str, error: yaml.MarkedYAMLError, data: bytes) -> ManifestIssue:
    mark = error.problem_mark or error.context_mark
    message = f"invalid YAML: {error.problem or error.context}"
    if mark and _is_tab(data, mark):
        message = "invalid YAML: a tab where YAML expects indentation; indent with spaces, not tabs"
    elif error.problem and error.context and error.context_mark:
        message += f" ({error.context} started on line {error.context_mark.line + 1})"
    line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
    return ManifestIssue(file, line, column, "", message)


def _is_tab(data: bytes, mark: yaml.Mark) -> bool:
    lines = data.split(b"\n")
    return mark.line < len(lines) and lines[mark.line].lstrip(b" ")[:1] == b"\t"


def _line_and_column(data: bytes, position: int) -> tuple[int, int]:
    before = data[:position]
    return before.count(b"\n") + 1, position - (before.rfind(b"\n") + 1) + 1


# --------------------------------------------------------------------------- telling manifests from other YAML

NOT_A_MANIFEST_HINT = "pass the directory of your manifests, not a parent of other YAML files"
# Fields that only a client or a batch has: an entry holding one is a manifest's, misplaced.
ENTRY_FIELDS = (frozenset(CLIENT_FIELDS) | frozenset(BATCH_FIELDS)) - {"name"}


def not_a_manifest(root: yaml.Node) -> str | None:
    """Why a document is no manifest at all (a CI workflow, say), or None if it is meant as one, however wrong."""
    if is_null(root):
        return None
    if not isinstance(root, yaml.MappingNode):
        return f"its top level is {describe(root)}, not a mapping with 'clients' or 'policy'"
    if not root.value or any(_meant_for_a_manifest(key, value) for key, value in root.value):
        return None
    return "no 'clients' or 'policy' at its top level"


def _meant_for_a_manifest(key: yaml.Node, value: yaml.Node) -> bool:
    """A top-level entry that shows its file is meant as a manifest: a manifest key or a typo of one
    ('cleints:'), a policy limit or a client written without the mapping around it, or a merge."""
    if key.tag == MERGE:
        return True
    if not isinstance(key, yaml.ScalarNode):
        return False
    if key.value in POLICY_FIELDS or difflib.get_close_matches(key.value, TOP_FIELDS, n=1):
        return True
    return isinstance(value, yaml.MappingNode) and any(
        isinstance(field, yaml.ScalarNode) and field.value in ENTRY_FIELDS for field, _ in value.value
    )
