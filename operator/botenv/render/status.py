"""Desired status of a BotEnvironment from what was applied and what the Deployment reports."""

from __future__ import annotations

import dataclasses
from typing import Any

from botenv.render import conditions as cond
from botenv.render.modelfile import base_name, parse_served, serves
from botenv.render.problem import Problem

__all__ = ["APPLIED_FIELDS", "Problem", "Rollout", "environment_status", "events", "rollout"]


@dataclasses.dataclass(frozen=True)
class Rollout:
    done: bool
    message: str
    stalled: bool = False


def rollout(deployment: dict[str, Any] | None, replicas: int) -> Rollout:
    """Read the Deployment's progress as `kubectl rollout status` does."""
    if deployment is None:
        return Rollout(False, "waiting for the Deployment to be created")
    status = deployment.get("status") or {}
    progressing = cond.get(status.get("conditions"), cond.PROGRESSING)
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return Rollout(False, f"rollout stalled: {progressing.get('message', '')}", stalled=True)
    if status.get("observedGeneration", 0) < deployment["metadata"].get("generation", 0):
        return Rollout(False, "waiting for the Deployment controller to see the new spec")
    updated = status.get("updatedReplicas", 0)
    total = status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < replicas:
        return Rollout(False, f"rolling out: {updated} of {replicas} replicas updated")
    if total > updated:
        return Rollout(False, f"rolling out: {total - updated} old replicas terminating")
    if available < replicas:
        return Rollout(False, f"rolling out: {available} of {replicas} updated replicas available")
    return Rollout(True, f"{available} of {replicas} replicas serve the model")


def served(
    expected: str, answers: dict[str, str], replicas: int, digest: str = ""
) -> tuple[Rollout, list[dict[str, Any]]]:
    """Whether every ready pod serves `expected` of `digest`, from what each pod's Rasa said
    (pod -> model file, "" for no answer), and the per-model counts for
    status.servedModels. A pod counts only when the digest in its file name is the
    model's (render/modelfile.py): one still on older content of the same name does not."""
    want = base_name(expected)
    counts: dict[tuple[str, str], int] = {}
    behind: dict[str, int] = {}  # what the pods that do not serve it report, for the message
    for model in answers.values():
        name, token = parse_served(model) if model else ("(no answer)", "")
        counts[(name, token)] = counts.get((name, token), 0) + 1
        if not (model and serves(model, expected, digest)):
            shown = f"{name} (digest {token})" if token and name == want else name
            behind[shown] = behind.get(shown, 0) + 1
    listing = [
        {"name": n, **({"digest": d} if d else {}), "replicas": c}
        for (n, d), c in sorted(counts.items())
    ]
    serving = len(answers) - sum(behind.values())
    if len(answers) < replicas:
        return Rollout(
            False, f"waiting for the ready pods to be seen ({len(answers)} of {replicas})"
        ), listing
    if serving == len(answers):
        return Rollout(True, f"{serving} of {replicas} replicas serve model {want}"), listing
    others = ", ".join(f"{c} {n}" for n, c in sorted(behind.items()))
    return Rollout(
        False, f"{serving} of {len(answers)} ready replicas serve model {want} (others: {others})"
    ), listing


def conditions(problem: Problem | None, progress: Rollout, generation: int) -> list[dict[str, Any]]:
    if problem is None and progress.stalled:
        problem = Problem("RolloutStalled", progress.message)
    if problem is not None and not problem.degraded:
        return [
            cond.condition(cond.READY, False, problem.reason, problem.message, generation),
            cond.condition(cond.PROGRESSING, True, problem.reason, problem.message, generation),
            cond.condition(cond.DEGRADED, False, "AsExpected", "nothing is wrong yet", generation),
        ]
    ready = problem is None and progress.done
    if ready:
        ready_reason, ready_message = "Ready", progress.message
    elif problem is not None:
        ready_reason, ready_message = problem.reason, problem.message
    else:
        ready_reason, ready_message = "RollingOut", progress.message
    return [
        cond.condition(cond.READY, ready, ready_reason, ready_message, generation),
        cond.condition(
            cond.PROGRESSING,
            not progress.done and not progress.stalled,
            "RollingOut" if not progress.done else "RolloutComplete",
            progress.message,
            generation,
        ),
        cond.condition(
            cond.DEGRADED,
            problem is not None,
            problem.reason if problem else "AsExpected",
            problem.message if problem else "spec applied",
            generation,
        ),
    ]


# Status fields that describe what the children serve; kept as they were on a problem.
APPLIED_FIELDS = (
    "model",
    "modelServerUrl",
    "queue",
    "endpoint",
    "url",
    "actionServer",
    "pullToken",
)


def environment_status(
    *,
    previous: dict[str, Any],
    generation: int,
    problem: Problem | None,
    deployment: dict[str, Any] | None,
    replicas: int,
    applied: dict[str, Any] | None,
    timestamp: str,
    answers: dict[str, str] | None = None,
    verifying: bool = False,
) -> dict[str, Any]:
    """`applied` holds model/queue/endpoint fields when this reconcile applied the spec; on a
    problem they stay as they were, since the running Deployment was left as it was.

    `verifying`: botenv asks the pods which model they serve (`answers`, once the rollout
    is done). Then `model` moves to a new model only when every ready pod serves it, so it
    always says what is actually served; the Progressing message names the target."""
    status = {k: v for k, v in previous.items() if k in APPLIED_FIELDS}
    if applied is not None:
        status = {k: v for k, v in applied.items() if v not in (None, "", {})}
    live = (deployment or {}).get("status") or {}
    progress = rollout(deployment, replicas)
    target = (status.get("model") or {}).get("name")
    if answers is not None and progress.done and target:
        digest = (status.get("model") or {}).get("digest", "")
        progress, listing = served(target, answers, replicas, digest)
        status["servedModels"] = listing
    if verifying and not progress.done and status.get("model") != previous.get("model"):
        if previous.get("model"):
            status["model"] = previous["model"]
        else:
            status.pop("model", None)
        if target:
            progress = dataclasses.replace(
                progress, message=f"rolling to model {target}: {progress.message}"
            )
    status.update(
        {
            "observedGeneration": generation,
            "replicas": live.get("replicas", 0),
            "readyReplicas": live.get("readyReplicas", 0),
            "updatedReplicas": live.get("updatedReplicas", 0),
            "conditions": cond.merge(
                previous.get("conditions"), conditions(problem, progress, generation), timestamp
            ),
        }
    )
    return status


def events(previous: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(type, reason, message) Events for what changed between two statuses."""
    out: list[tuple[str, str, str]] = []
    old_deg, new_deg = (cond.get(s.get("conditions"), cond.DEGRADED) for s in (previous, current))
    if new_deg.get("status") == "True" and (
        old_deg.get("status") != "True" or old_deg.get("reason") != new_deg.get("reason")
    ):
        out.append(("Warning", new_deg["reason"], new_deg.get("message", "")))
    elif old_deg.get("status") == "True" and new_deg.get("status") == "False":
        out.append(("Normal", "Recovered", "spec applied again"))
    old_model, new_model = previous.get("model") or {}, current.get("model") or {}
    if new_model and (old_model.get("name"), old_model.get("digest")) != (
        new_model.get("name"),
        new_model.get("digest"),
    ):
        was = f" (was {old_model['name']})" if old_model.get("name") else ""
        out.append(
            (
                "Normal",
                "ModelChanged",
                f"serving model {new_model.get('name')} of tag {new_model.get('tag')}{was}",
            )
        )
    old_actions, new_actions = previous.get("actionServer") or {}, current.get("actionServer") or {}
    if new_actions.get("image") and old_actions.get("image") != new_actions.get("image"):
        was = f" (was {old_actions['image']})" if old_actions.get("image") else ""
        out.insert(
            0,
            (
                "Normal",
                "ActionServerChanged",
                f"action server {new_actions['image']} is ready{was}",
            ),
        )
    old_prog, new_prog = (
        cond.get(s.get("conditions"), cond.PROGRESSING) for s in (previous, current)
    )
    if (
        new_prog.get("status") == "True"
        and new_prog.get("reason") not in ("RollingOut", None)
        and new_prog.get("reason") != old_prog.get("reason")
    ):
        out.append(("Normal", new_prog["reason"], new_prog.get("message", "")))
    old_ready = cond.get(previous.get("conditions"), cond.READY).get("status")
    new_ready = cond.get(current.get("conditions"), cond.READY)
    if new_ready.get("status") == "True" and old_ready != "True":
        out.append(("Normal", "Ready", new_ready.get("message", "")))
    return out
