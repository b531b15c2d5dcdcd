"""Runs the Argo CD health scripts of gitops/argocd/ the way Argo CD runs them.

Argo CD evaluates a custom health check with gopher-lua (Lua 5.1 semantics). It converts the
live object from JSON into Lua values (objects become tables with string keys, arrays become
tables indexed from 1, numbers become Lua numbers), sets it as the global `obj`, runs the
script and reads the table it returns as `{status, message}`. Scripts from argocd-cm run
without Lua's standard libraries: only the base functions, `table`, and a reduced `os`.

Here the scripts run in a real Lua 5.1 interpreter (lupa), in an environment that holds only
the base functions and `table`, so a script that leans on `string`, `math` or `os` fails
here as it would in Argo CD.
"""

from __future__ import annotations

from pathlib import Path

import lupa.lua51 as lua51

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = {
    kind: REPO / "gitops" / "argocd" / "botenv.dev" / kind / "health.lua"
    for kind in ("BotEnvironment", "ModelTag", "ModelTraining")
}
# Health statuses Argo CD accepts from a script (anything else becomes Unknown).
STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}

# Lua 5.1 base functions a health script may use. Argo CD also opens `package` (require)
# and a reduced `os`; these scripts need neither.
_BASE = (
    "assert",
    "error",
    "getmetatable",
    "ipairs",
    "next",
    "pairs",
    "pcall",
    "rawequal",
    "rawget",
    "rawset",
    "select",
    "setmetatable",
    "tonumber",
    "tostring",
    "type",
    "unpack",
    "xpcall",
    "_VERSION",
)


def to_lua(runtime: lua51.LuaRuntime, value: object) -> object:
    """A JSON-like Python value as Argo CD hands it to Lua: dicts become tables with string
    keys, lists become arrays indexed from 1, None is absent (nil)."""
    if isinstance(value, dict):
        table = runtime.table()
        for key, item in value.items():
            if item is not None:
                table[str(key)] = to_lua(runtime, item)
        return table
    if isinstance(value, list):
        table = runtime.table()
        for index, item in enumerate(value, start=1):
            table[index] = to_lua(runtime, item)
        return table
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"not a JSON value: {value!r}")


def run_health(script: str, obj: dict) -> dict:
    """Run one health script against `obj`; returns the table it returned as a dict."""
    runtime = lua51.LuaRuntime(
        register_eval=False, register_builtins=False, unpack_returned_tuples=True
    )
    sandbox = runtime.execute(
        """
        local allowed = ...
        local env = {table = table}
        for _, name in ipairs(allowed) do env[name] = _G[name] end
        -- Strings lose their methods too ("x"):sub(...) needs the string library.
        getmetatable("").__index = nil
        return env
        """,
        to_lua(runtime, list(_BASE)),
    )
    sandbox["obj"] = to_lua(runtime, obj)
    result = runtime.execute(
        """
        local script, env = ...
        local chunk, problem = loadstring(script, "=health.lua")
        if chunk == nil then error(problem) end
        setfenv(chunk, env)
        return chunk()
        """,
        script,
        sandbox,
    )
    if lua51.lua_type(result) != "table":
        raise AssertionError(f"the health script returned {result!r}, not a table")
    health = {str(k): v for k, v in result.items()}
    assert set(health) <= {"status", "message"}, health
    assert health.get("status") in STATUSES, health
    assert isinstance(health.get("message", ""), str), health
    return health


def health(obj: dict) -> dict:
    """Argo CD's view of a botenv object: {"status": ..., "message": ...}."""
    return run_health(SCRIPTS[obj["kind"]].read_text(), obj)
