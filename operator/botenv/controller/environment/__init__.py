"""One reconcile of a BotEnvironment, read top to bottom:

    gather   the only reads: the watches' indexes, and the Secrets through the API
    plan     pure: spec and what was read -> children, removals, status inputs, or a Problem
    apply    the only writes to children, the pull-token Secret first
    report   observe what runs (dependencies, served models), then the status and Events

A spec that cannot be applied leaves what runs as it is; its Problem is reported, and the
work queue retries by itself when the Problem says so."""

from __future__ import annotations

import asyncio
import logging

from botenv.controller.environment import apply, gather, plan, report
from botenv.controller.state import State
from botenv.controller.workqueue import Requeue
from botenv.render import conditions as cond
from botenv.render.problem import Retry

log = logging.getLogger(__name__)

# How soon pods are asked again while they do not all serve the tag's model yet.
VERIFY_AGAIN_SECONDS = 3.0
# How soon a plan is made again after a pull-token Secret turned out to exist already.
REPLAN_SECONDS = 1.0


async def reconcile(state: State, namespace: str, name: str, *, report_later: bool = False) -> None:
    """`report_later`: once children were written, leave the status report to a later
    reconcile that waits for the other environments' (a tag move's fan-out applies every
    Deployment first, then reports)."""
    seen = await asyncio.to_thread(gather.gather, state, namespace, name)
    if seen.body is None:
        # Deleted: garbage collection removes the children, but not those it orphaned.
        await asyncio.to_thread(apply.apply_gone, state, seen)
        return
    if seen.deleting:
        return

    wanted = plan.plan(seen, state.settings)
    done = await asyncio.to_thread(apply.apply, state, wanted)
    if done.replan:
        raise Requeue(REPLAN_SECONDS)
    if (
        report_later
        and done.wrote
        and done.problem is None
        and wanted.problem is None
        # A rollback or a refused model is recorded in the status only (refusedModel):
        # reported with its write, or the next plan, which no longer sees the timed-out
        # roll, would roll forward again.
        and wanted.rolled_back is None
        and wanted.refused is None
    ):
        raise Requeue(0.0, after_others=True)
    # A failed write comes first: the plan's own problems are all found after the step
    # that writes the pull token (the only write made despite a problem).
    problem = done.problem or wanted.problem
    if problem is not None:
        log.log(
            logging.WARNING if problem.degraded else logging.INFO,
            "BotEnvironment %s/%s not applied: %s",
            namespace,
            name,
            problem.message,
            extra={"reason": problem.reason},
        )

    observed = await report.observe(state, seen, wanted, done)
    timestamp = cond.now()
    status = report.status_of(seen, wanted, observed, timestamp)
    await asyncio.to_thread(report.report, state, seen, status, timestamp)

    if problem is not None and problem.retry:
        raise Retry(problem)  # the work queue retries with backoff
    if observed.lost:
        raise Requeue(VERIFY_AGAIN_SECONDS * 2)  # notice the recovery soon
    if (
        observed.answers is not None
        and cond.get(status["conditions"], cond.READY).get("status") != "True"
        and (
            observed.problem is None
            or cond.get(status["conditions"], cond.PROGRESSING).get("status") == "True"
        )
    ):
        # Pods pull or load the model on their own: nothing in the API tells when; look again.
        raise Requeue(VERIFY_AGAIN_SECONDS)
