"""Apply: the only writes of a BotEnvironment reconcile, to its children. The pull-token
Secret first (created once, its labels kept current), then the children that differ from
what the API server holds: the action server before Rasa, whose roll waits until the
action server is rolled out. A write that fails becomes a Problem; nothing is raised."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from kubernetes.client.exceptions import ApiException

from botenv.controller.environment.plan import Plan, PullToken
from botenv.controller.environment.seen import Seen
from botenv.controller.state import State
from botenv.kube.client import api_message, api_version_of
from botenv.kube.diff import contains
from botenv.labels import ENVIRONMENT_LABEL, PULL_TOKEN_LABEL
from botenv.render import autoscaling, disruption, names
from botenv.render.problem import Problem
from botenv.render.status import rollout

log = logging.getLogger(__name__)

# Creates pull-token Secrets; a manager of its own, so botenv's later applies (labels
# only) never own, and so never remove, the token.
PULL_TOKEN_MANAGER = "botenv-pull-token"


@dataclasses.dataclass
class Done:
    problem: Problem | None = None  # a write the API server failed, or one that must wait
    # The pull-token Secret existed after all (the watch had not shown it yet): its token
    # is not the one the children were rendered for; plan again.
    replan: bool = False
    wrote: bool = False  # something was written (or its write tried)


def apply(state: State, plan: Plan) -> Done:
    wrote = False
    if plan.pull_token is not None:
        done = _pull_token(state, plan.pull_token)
        if done.problem is not None or done.replan:
            return done
        wrote = done.wrote
    if plan.problem is not None:
        return Done(wrote=wrote)
    first, children = _stale(state, plan.first), _stale(state, plan.children)
    problem = (
        _dry_run(state, first + children)
        or _write(state, first, plan.handovers)
        or _wait_for_action_server(state, plan)
        or _write(state, children, plan.handovers)
        or _remove(state, plan.remove)
    )
    return Done(problem=problem, wrote=wrote or bool(first or children or plan.remove))


def apply_gone(state: State, seen: Seen) -> None:
    """Delete the pull-token Secret of an environment that is gone (deleted with
    --cascade=orphan, say): a token that outlives its environment opens nothing, and is
    not left lying around either."""
    secret = seen.pull_token
    if secret is None or (secret["metadata"].get("labels") or {}).get(PULL_TOKEN_LABEL) != "true":
        return
    meta = secret["metadata"]
    try:
        state.kube.delete("v1", "Secret", seen.namespace, meta["name"], uid=meta.get("uid"))
        log.info(
            "deleted pull token Secret %s/%s: its BotEnvironment is gone",
            seen.namespace,
            meta["name"],
        )
    except ApiException as exc:
        log.warning(
            "could not delete the orphaned pull token Secret %s/%s (%s)",
            seen.namespace,
            meta["name"],
            exc.status,
        )


def _pull_token(state: State, pull: PullToken) -> Done:
    meta = pull.labels["metadata"]
    wrote = False
    try:
        live = pull.live
        if pull.create is not None:
            live = state.kube.create(pull.create, field_manager=PULL_TOKEN_MANAGER)
            if live is None:  # it existed already (the watch had not shown it yet)
                return Done(replan=True)
            state.remember(live)
            wrote = True
            log.info("created pull token Secret %s/%s", meta["namespace"], meta["name"])
        if not contains(live, pull.labels):
            state.remember(state.kube.apply(pull.labels))
            wrote = True
    except ApiException as exc:
        return Done(
            problem=Problem(
                "ApplyFailed",
                f"could not write Secret {meta['name']} "
                f"({exc.status}): {api_message(exc)}; retrying",
                retry=True,
            )
        )
    return Done(wrote=wrote)


def _stale(state: State, children: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        c
        for c in children
        if not contains(
            state.child(c["kind"], c["metadata"]["namespace"], c["metadata"]["name"]), c
        )
    ]


# Children that carry fields the spec passes through (an HPA's behavior, a budget's bounds):
# checked with a dry run before anything is written, even on a first creation.
_CHECKED_FIRST = (autoscaling.KIND, disruption.KIND)


def _dry_run(state: State, stale: list[dict[str, Any]]) -> Problem | None:
    """All or nothing: when something runs already (or a child carries pass-through fields)
    and more than one child changes, the server checks every change (validation and
    admission, writing nothing) before the first is written, so a change it rejects leaves
    every child as it was. A plain first creation has nothing to keep and skips the round
    trips."""
    running = any(
        state.child(c["kind"], c["metadata"]["namespace"], c["metadata"]["name"]) is not None
        for c in stale
    )
    checked = any(c["kind"] in _CHECKED_FIRST for c in stale)
    if len(stale) < 2 or not (running or checked):
        return None
    return _apply_each(state, stale, {}, dry_run=True)


def _write(
    state: State,
    stale: list[dict[str, Any]],
    handovers: dict[tuple[str, str, str], dict[str, Any]],
) -> Problem | None:
    """Apply `stale`, in order; a child's handover is applied just before it."""
    return _apply_each(state, stale, handovers, dry_run=False)


def _apply_each(
    state: State,
    stale: list[dict[str, Any]],
    handovers: dict[tuple[str, str, str], dict[str, Any]],
    *,
    dry_run: bool,
) -> Problem | None:
    if not stale:
        return None
    child = stale[0]
    try:
        for child in stale:
            if dry_run:
                state.kube.apply(child, dry_run=True)
                continue
            meta = child["metadata"]
            handover = handovers.get((child["kind"], meta["namespace"], meta["name"]))
            if handover is not None:
                state.remember(
                    state.kube.apply(handover, field_manager=autoscaling.HANDOVER_MANAGER)
                )
            state.remember(state.kube.apply(child))
            log.info(
                "applied %s %s/%s",
                child["kind"],
                child["metadata"]["namespace"],
                child["metadata"]["name"],
            )
    except ApiException as exc:
        what = f"{child['kind']} {child['metadata']['name']}"
        if exc.status in (400, 422):
            return Problem("InvalidSpec", f"the API server rejected {what}: {api_message(exc)}")
        return Problem(
            "ApplyFailed",
            f"could not apply {what} ({exc.status}): {api_message(exc)}; retrying",
            retry=True,
        )
    return None


def _wait_for_action_server(state: State, plan: Plan) -> Problem | None:
    """A change to running Rasa pods waits until the action server is rolled out."""
    if not plan.first or not _stale(state, plan.children):
        return None
    actions = plan.first[0]
    meta = actions["metadata"]
    rasa = state.child(
        "Deployment", meta["namespace"], names.rasa_name(meta["labels"][ENVIRONMENT_LABEL])
    )
    live = state.child("Deployment", meta["namespace"], meta["name"])
    progress = rollout(live, autoscaling.desired_replicas(actions, live))
    if rasa is None or progress.done:
        return None
    image = actions["spec"]["template"]["spec"]["containers"][0]["image"]
    return Problem(
        "WaitingForActionServer",
        f"Rasa waits for action server {meta['name']} "
        f"({image}) to be ready before it rolls: {progress.message}",
        degraded=progress.stalled,
    )


def _remove(state: State, remove: list[tuple[str, str, str]]) -> Problem | None:
    for kind, namespace, name in remove:
        live = state.child(kind, namespace, name) or {}
        api_version = live.get("apiVersion") or api_version_of(kind)
        try:
            state.kube.delete(api_version, kind, namespace, name)
            # Gone (or going): what botenv wrote of it must not stand in for it until a
            # watch event comes (a kind whose watch started late may never send one).
            state.forget(kind, namespace, name)
            log.info("deleted %s %s/%s (no longer in the spec)", kind, namespace, name)
        except ApiException as exc:
            return Problem(
                "DeleteFailed",
                f"could not delete {kind} {name} ({exc.status}): {api_message(exc)}; retrying",
                retry=True,
            )
    return None
