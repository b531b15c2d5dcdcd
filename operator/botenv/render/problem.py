"""What is wrong with a resource, in one vocabulary for every kind botenv reconciles.

A reconcile that cannot do (all of) its job says why with a `Problem`: the status reports
its reason and message, and the flags say how (Degraded or still progressing) and whether
the work queue tries again by itself."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Problem:
    """Why a spec was not (fully) applied or resolved. Messages never carry secrets."""

    reason: str
    message: str
    # False for a wait that resolves by itself (a tag not resolved yet): Progressing,
    # not Degraded, and no Warning event.
    degraded: bool = True
    # A transient cause (the API server or storage failed a call): the work queue retries
    # with backoff after the status is reported.
    retry: bool = False


class Retry(Exception):  # noqa: N818 (a signal for the work queue, not an error)
    """Raised by a reconcile after reporting `problem`: the work queue retries with backoff."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem
