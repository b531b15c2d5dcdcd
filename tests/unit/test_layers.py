"""Which botenv packages a layer may import, read from the source with ast."""

from __future__ import annotations

import ast
from pathlib import Path

import botenv

PACKAGE = Path(botenv.__file__).parent


def botenv_imports(path: Path) -> set[str]:
    """Every botenv module `path` imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name == "botenv" or name.startswith("botenv.")}


def allowed(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_render_imports_only_api_labels_and_itself():
    """Renderers turn a parsed spec into objects: they never reach the API server, the
    controller or the settings."""
    prefixes = ("botenv.api", "botenv.labels", "botenv.render")
    wrong = {
        f"{path.name}: {name}"
        for path in sorted((PACKAGE / "render").glob("*.py"))
        for name in botenv_imports(path)
        if not allowed(name, prefixes)
    }
    assert not wrong, sorted(wrong)


def test_the_import_walk_sees_what_it_should(tmp_path: Path):
    source = tmp_path / "m.py"
    source.write_text(
        "import os\nfrom botenv.kube import client\n\ndef f():\n    import botenv.settings\n"
    )
    assert botenv_imports(source) == {"botenv.kube", "botenv.kube.client", "botenv.settings"}
