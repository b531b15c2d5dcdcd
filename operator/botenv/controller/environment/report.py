"""Report: what the environment's status says, and the Events for what changed. Before
the status is written, botenv looks at what runs (observe): whether the stores and the
broker can be reached, and which model the pods serve once the rollout is done."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from botenv.controller import reachability, reporting, verify
from botenv.controller.environment.apply import Done
from botenv.controller.environment.plan import PULL_TOKEN_INVALID, Plan
from botenv.controller.environment.seen import Seen
from botenv.controller.state import State
from botenv.render import autoscaling, ingress, names, risks, rollback
from botenv.render import conditions as cond
from botenv.render.deployment import RASA_PORT
from botenv.render.problem import Problem
from botenv.render.status import APPLIED_FIELDS, environment_status, events, rollout

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Observed:
    problem: Problem | None  # from the plan, the writes, or a dependency out of reach
    applied: bool  # the plan was applied: its status fields describe what runs
    deployment: dict[str, Any] | None  # Rasa's Deployment as botenv last saw or wrote it
    lost: bool = False  # a store or the broker cannot be reached
    verifying: bool = False  # the pods are asked which model they serve
    answers: dict[str, str] | None = None  # pod -> model file, once the rollout is done


async def observe(state: State, seen: Seen, plan: Plan, done: Done) -> Observed:
    problem = done.problem or plan.problem
    applied = problem is None
    observed = Observed(
        problem=problem,
        applied=applied,
        deployment=state.child("Deployment", seen.namespace, names.rasa_name(seen.name)),
    )
    if applied and state.settings.check_dependencies:
        lost = await reachability.unreachable(plan.dependencies)
        if lost:
            # Reported, not acted on: what runs stays, and Ready says the environment
            # cannot do its whole job (events or conversations cannot be stored).
            reason = lost[0][0].reason  # the first dependency out of reach names it
            observed.problem, observed.lost = Problem(reason, reachability.message(lost)), True
            previous = (seen.body or {}).get("status") or {}
            was = cond.get(previous.get("conditions"), cond.DEGRADED).get("reason")
            log.log(
                logging.INFO if was == observed.problem.reason else logging.WARNING,
                "BotEnvironment %s/%s: %s",
                seen.namespace,
                seen.name,
                observed.problem.message,
            )
    if observed.problem is None and plan.refused is not None and applied:
        # Applied with the model it serves: what runs is right, the tag's model is not.
        observed.problem = plan.refused
    observed.verifying = (
        applied
        and not observed.lost
        and plan.status_token is not None
        and state.settings.verify_models
    )
    if observed.verifying and rollout(observed.deployment, seen.replicas).done:
        observed.answers = await verify.served_models(
            state.pods_of(seen.namespace, seen.name), port=RASA_PORT, token=plan.status_token
        )
    return observed


def status_of(seen: Seen, plan: Plan, observed: Observed, timestamp: str) -> dict[str, Any]:
    """Pure: the environment's next status."""
    assert seen.body is not None
    previous = seen.body.get("status") or {}
    problem = observed.problem
    applied = plan.applied if observed.applied else None
    status = environment_status(
        previous=previous,
        generation=seen.body["metadata"].get("generation", 0),
        problem=problem,
        deployment=observed.deployment,
        replicas=seen.replicas,
        applied=applied,
        timestamp=timestamp,
        answers=observed.answers,
        verifying=observed.verifying,
    )
    generation = seen.body["metadata"].get("generation", 0)
    status = risks.with_warning(status, previous, plan.warning, generation, timestamp)
    # Kept as it was when nothing was applied: a passing problem must not retry the model.
    refused = plan.rolled_back if observed.applied else previous.get("refusedModel")
    status = rollback.report(status, previous, refused, generation, timestamp)
    if problem is not None and problem.reason == PULL_TOKEN_INVALID:
        status.pop("pullToken", None)  # revoked: never keep the last good one
    # The scale subresource's selector (labelSelectorPath): an HPA on the environment
    # measures these pods.
    status["selector"] = autoscaling.label_selector(names.selector_labels(seen.name))
    return ingress.with_exposed(
        status, previous, plan.exposed, applied=observed.applied, timestamp=timestamp
    )


def report(state: State, seen: Seen, status: dict[str, Any], timestamp: str) -> None:
    """Patch the status when it changed, and post an Event for each change worth one."""
    assert seen.body is not None
    previous = seen.body.get("status") or {}
    reporting.report(
        state,
        "BotEnvironment",
        seen.body,
        status,
        removable=(*APPLIED_FIELDS, "servedModels", "refusedModel"),
        # (a refused model's Warning event is Degraded's, RolledBack)
        events=[
            *events(previous, status),
            *risks.warning_events(previous, status),
            *ingress.events(previous, status),
        ],
        timestamp=timestamp,
    )
