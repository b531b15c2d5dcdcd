"""The reasons the operator reports, read from its source, so that the health checks are
tested against every reason it can write, including ones added later."""

from __future__ import annotations

import ast
import inspect
from types import ModuleType


def reported(module: ModuleType, *callables: str) -> list[tuple[str, str, dict]]:
    """(callable, reason, keyword arguments) of every call in `module` to one of `callables`
    whose first argument is a literal reason or a module constant."""
    found = []
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in callables
            and node.args
        ):
            continue
        first = node.args[0]
        if not isinstance(first, ast.Constant | ast.Attribute):
            continue  # a variable: the reason is passed through from elsewhere
        reason = eval(compile(ast.Expression(first), module.__name__, "eval"), vars(module))
        keywords = {k.arg: literal(k.value) for k in node.keywords}
        found.append((node.func.id, reason, keywords))
    return found


def literal(node: ast.expr) -> object:
    """The keyword's value, or BOTH when it is computed at run time."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        return BOTH


BOTH = object()  # a flag computed at run time: each value is checked
