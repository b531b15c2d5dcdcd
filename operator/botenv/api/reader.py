"""Reading typed values out of a resource body, collecting problems with their field paths."""

from __future__ import annotations

from typing import Any


class Reader:
    """Reads typed values out of a plain dict, collecting problems with their field paths."""

    def __init__(self, data: object, path: str, problems: list[str]) -> None:
        self.data = data if isinstance(data, dict) else {}
        self.path = path
        self.problems = problems
        if data is not None and not isinstance(data, dict):
            self.fail(path, "must be an object")

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def child(self, key: str) -> Reader | None:
        value = self.data.get(key)
        return None if value is None else Reader(value, f"{self.path}.{key}", self.problems)

    def text(self, key: str, default: str = "") -> str:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            self.fail(f"{self.path}.{key}", f"must be a string, got {type(value).__name__}")
            return default
        return value

    def integer(
        self,
        key: str,
        default: int | None = None,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"{self.path}.{key}", f"must be an integer, got {value!r}")
            return default
        if minimum is not None and value < minimum:
            self.fail(f"{self.path}.{key}", f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            self.fail(f"{self.path}.{key}", f"must be at most {maximum}, got {value}")
        return value

    def flag(self, key: str, default: bool | None = None) -> bool | None:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(f"{self.path}.{key}", f"must be true or false, got {value!r}")
            return default
        return value

    def enum(self, key: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.text(key, default) or default
        if value not in allowed:
            self.fail(f"{self.path}.{key}", f"must be one of {', '.join(allowed)}; got {value!r}")
            return default
        return value

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(f"{self.path}.{key}", "must be an object")
            return {}
        return value

    def items(self, key: str) -> list[Any]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(f"{self.path}.{key}", "must be a list")
            return []
        return value

    def text_map(self, key: str) -> dict[str, str]:
        value = self.mapping(key)
        for k, v in value.items():
            if not isinstance(v, str):
                self.fail(f"{self.path}.{key}.{k}", "must be a string")
        return {k: v for k, v in value.items() if isinstance(v, str)}
