"""Imports go one way. Read from the source (every import statement, those inside functions too,
but not those only for type checkers), so that an import made lazily to hide a cycle is seen."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "provisioner"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (
        isinstance(test, ast.Name)
        and test.id == "TYPE_CHECKING"
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def import_nodes(tree: ast.AST):
    """Every Import/ImportFrom, at any depth, except in ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        children = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.If) and is_type_checking(node):
            children = node.orelse  # the body is for type checkers only
        stack.extend(children)


def imports_of(module: str) -> list[tuple[str, str | None]]:
    """(the provisioner module imported, the name taken from it or None) for each import of ``module``."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, str | None]] = []
    for node in import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names if alias.name.split(".")[0] == "provisioner"]
            continue
        base = node.module or ""
        if node.level:  # relative: from the package, up level - 1
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*parts, base] if base else parts)
        if base.split(".")[0] != "provisioner":
            continue
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            found.append((submodule, None) if submodule in MODULES else (base, alias.name))
    return found


def import_graph() -> dict[str, set[str]]:
    return {
        module: {imported for imported, _ in imports_of(module) if imported in MODULES and imported != module}
        for module in MODULES
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_graph_sees_imports_inside_functions():
    # The reader itself: the loader is imported inside functions there; a cycle is found as one.
    assert "provisioner.manifest.loader" in {imported for imported, _ in imports_of("provisioner.operations.manifests")}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_cycle_between_modules():
    found = cycles(import_graph())
    assert not found, "modules that import each other (lazily or not): " + "; ".join(" <-> ".join(c) for c in found)


def test_reading_manifests_imports_only_core_and_manifest():
    allowed = ("provisioner.core", "provisioner.manifest")
    wrong = [
        f"{module} imports {imported}"
        for module in MODULES
        if module.startswith("provisioner.manifest.")
        for imported, _ in imports_of(module)
        if imported != "provisioner"
        and not imported.startswith(tuple(f"{prefix}." for prefix in allowed))
        and imported not in allowed
    ]
    assert not wrong, wrong


def test_the_core_imports_only_itself():
    wrong = [
        f"{module} imports {imported}"
        for module in MODULES
        if module.startswith("provisioner.core.")
        for imported, _ in imports_of(module)
        if imported != "provisioner" and not imported.startswith("provisioner.core.")
    ]
    assert not wrong, wrong


def test_no_private_name_is_imported_from_another_module():
    wrong = [
        f"{module} imports {name} from {imported}"
        for module in MODULES
        for imported, name in imports_of(module)
        if name is not None and name.startswith("_") and not name.startswith("__")
    ]
    assert not wrong, wrong
