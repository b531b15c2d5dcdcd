"""Validation errors that name the field and what is expected."""

from __future__ import annotations


class SpecError(ValueError):
    """One or more problems in a resource's spec, each as `field.path: what is expected`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))
