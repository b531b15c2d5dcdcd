"""botenv's import graph, read from the source with ast: its modules import each other in one
direction only (type-only imports included), and none imports a _private name of another
botenv module."""

from __future__ import annotations

import ast
from pathlib import Path

import botenv

PACKAGE = "botenv"
ROOT = Path(botenv.__file__).parent


def modules() -> dict[str, ast.Module]:
    """Every module of botenv by dotted name, parsed."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join((PACKAGE, *parts))] = ast.parse(path.read_text(), str(path))
    return found


def is_package(name: str) -> bool:
    return (ROOT.joinpath(*name.split(".")[1:]) / "__init__.py").is_file()


def absolute(name: str, node: ast.ImportFrom) -> str:
    """The module an ImportFrom names, with relative imports resolved."""
    if not node.level:
        return node.module or ""
    base = name.split(".")
    if not is_package(name):
        base = base[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports(name: str, tree: ast.Module, known: set[str]) -> list[tuple[str, str]]:
    """(module, imported name or "") for every import in the module, at any depth (a
    function's lazy import counts too). `from package import module` is the module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = absolute(name, node)
            for alias in node.names:
                if f"{source}.{alias.name}" in known:
                    found.append((f"{source}.{alias.name}", ""))
                else:
                    found.append((source, alias.name))
    return found


def test_the_modules_import_each_other_without_a_circle() -> None:
    trees = modules()
    known = set(trees)
    graph = {
        name: sorted(
            {
                module
                for module, _ in imports(name, tree, known)
                if module in known and module != name
            }
        )
        for name, tree in trees.items()
    }
    circles: set[tuple[str, ...]] = set()
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            circle = path[path.index(name) :]
            first = circle.index(min(circle))  # one spelling per circle
            circles.add((*circle[first:], *circle[:first]))
            return
        if name in done:
            return
        for child in graph[name]:
            visit(child, [*path, name])
        done.add(name)

    for name in graph:
        visit(name, [])
    assert not circles, "import circles:\n" + "\n".join(
        " -> ".join([*circle, circle[0]]) for circle in sorted(circles)
    )


def private_attributes(tree: ast.Module, known: set[str]) -> list[str]:
    """`module._name` where `module` is a botenv module bound by an import."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update(
                {
                    alias.asname: alias.name
                    for alias in node.names
                    if alias.asname and alias.name.startswith("botenv.")
                }
            )
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("botenv"):
            aliases.update(
                {
                    alias.asname or alias.name: f"{node.module}.{alias.name}"
                    for alias in node.names
                    if f"{node.module}.{alias.name}" in known
                }
            )
    return [
        f"{aliases[node.value.id]}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in aliases
        and node.attr.startswith("_")
    ]


def test_no_module_imports_a_private_name_of_another_module() -> None:
    trees = modules()
    known = set(trees)
    private = [
        f"{name}: {module}.{imported or ''}".rstrip(".")
        for name, tree in trees.items()
        for module, imported in imports(name, tree, known)
        if module.split(".")[0] == "botenv"
        and module != name
        and (imported.startswith("_") or any(part.startswith("_") for part in module.split(".")))
    ]
    private += [
        f"{name}: {used}"
        for name, tree in trees.items()
        for used in private_attributes(tree, known)
    ]
    assert not private, "private names of other modules:\n" + "\n".join(private)


def test_the_walk_sees_the_package() -> None:
    # A guard for the two tests above: they must look at the real modules and edges.
    trees = modules()
    assert {
        "botenv.cli",
        "botenv.cli.parser",
        "botenv.cli.shared",
        "botenv.cli.jobsteps.upload",
    } <= set(trees)
    edges = imports("botenv.cli.parser", trees["botenv.cli.parser"], set(trees))
    assert ("botenv.cli.people", "") not in edges  # it imports a name from people
    assert ("botenv.cli.people", "add_people_commands") in edges
