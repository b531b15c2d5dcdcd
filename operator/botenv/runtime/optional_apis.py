"""Kinds botenv watches in two versions, because servers differ: HorizontalPodAutoscalers
(autoscaling/v2 from 1.23, v2beta2 until 1.25) and PodDisruptionBudgets (policy/v1 from
1.21, v1beta1 until 1.24). A server serves one version or both; kopf watches what it serves."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

# kopf names a resource the server does not serve in one warning at start-up; botenv's
# second versions are expected to be missing there.
_UNRESOLVED = "Unresolved resources cannot be served (try creating their CRDs): "
_OPTIONAL = re.compile(
    r"Selector\([^)]*version='(v2|v2beta2|v1|v1beta1)', "
    r"any_name='(horizontalpodautoscalers|poddisruptionbudgets)'\)(, )?"
)


class EitherIndex(Mapping[Any, Iterable[dict[str, Any]]]):
    """Two kopf indexes of one kind as one: the first version's object where both have it
    (a server serving both versions shows each object in both)."""

    def __init__(self, first: Mapping[Any, Any], second: Mapping[Any, Any]) -> None:
        self.first, self.second = first, second

    def __getitem__(self, key: object) -> Iterable[dict[str, Any]]:
        if key in self.first:
            return self.first[key]  # type: ignore[no-any-return]
        return self.second[key]  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        return key in self.first or key in self.second

    def __iter__(self) -> Iterator[Any]:
        yield from self.first
        yield from (k for k in self.second if k not in self.first)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _QuietOptionalVersions(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(_UNRESOLVED):
            return True
        rest = _OPTIONAL.sub("", message[len(_UNRESOLVED) :]).strip(", ")
        if not rest:
            return False
        record.msg, record.args = _UNRESOLVED + rest, ()
        return True


def quiet_optional_versions() -> None:
    """Keep kopf from warning about the version of these kinds a server does not serve
    (it still warns about any other resource it cannot find)."""
    logger = logging.getLogger("kopf._core.reactor.observation")
    if not any(isinstance(f, _QuietOptionalVersions) for f in logger.filters):
        logger.addFilter(_QuietOptionalVersions())
