"""One reconcile of a ModelTraining: start its Job once per spec generation, follow it, and
on success read the stored model back and move the tag. The same steps as every kind:

    gather   the training, its Job and pods, its source ConfigMap, the stored model, the tag
    plan     pure: the next status and Event, and the writes that get there
    apply    the only writes: delete an outdated Job, create the Job, create or move the tag
    report   the status patch and the Event (a write that failed changes what they say)"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from kubernetes.client.exceptions import ApiException

from botenv import API_VERSION
from botenv.api import SpecError, parse_tag
from botenv.api.tag_moves import move_refused
from botenv.api.training import TrainingSpec, parse_training
from botenv.controller import job_status, reporting, training_gates
from botenv.controller.state import State
from botenv.controller.workqueue import Requeue
from botenv.render import conditions as cond
from botenv.render import training as render
from botenv.render.problem import Problem
from botenv.settings import Settings
from botenv.storage import StorageError
from botenv.storage.factory import key_for, storage_for
from botenv.storage.policy import LocationNotAllowed

log = logging.getLogger(__name__)

DONE = ("Succeeded", "Failed")
# Moves the tag a training names: a manager of its own, so a tag's spec.model shows who
# moved it (and a GitOps tool that owns the tag sees another writer, not a conflict).
TAG_MANAGER = "botenv-training"
FOLLOW_SECONDS = 5.0  # a running Job is looked at this often (phase Training -> Uploading)
SOURCE_RETRY_SECONDS = 5.0
RESTART_SECONDS = 2.0  # after an outdated Job is deleted
# Status fields a new status may drop: removed from the status by the merge patch.
REMOVABLE = ("reason", "message", "logTail", "finishedAt", "gates", "testResults")


# --- gather -----------------------------------------------------------------------------


@dataclasses.dataclass
class Seen:
    body: dict[str, Any]
    spec: TrainingSpec | None = None  # None: invalid (`invalid` says why)
    invalid: str = ""
    job: dict[str, Any] | None = None
    not_allowed: str = ""  # why the output storage may not be used
    source: dict[str, Any] | None = None  # the project ConfigMap ({} for an archive source)
    pods: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # the Job's pods
    stored: tuple[str, int] | None = None  # (digest, size) read back from storage
    unstored: str = ""  # why the model could not be read back
    tag: dict[str, Any] | None = None  # the ModelTag the training moves

    @property
    def previous(self) -> dict[str, Any]:
        return self.body.get("status") or {}

    @property
    def generation(self) -> int:
        return int(self.body["metadata"].get("generation", 1))

    @property
    def outdated_job(self) -> bool:
        """The Job ran for another spec generation."""
        ran = (
            (self.job or {})
            .get("metadata", {})
            .get("annotations", {})
            .get(render.GENERATION_ANNOTATION)
        )
        return self.job is not None and ran != str(self.generation)


def gather(state: State, namespace: str, name: str) -> Seen | None:
    """None when there is nothing to do: the training is gone, or it trained (or failed)
    for this spec already (never twice)."""
    body = state.training(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    seen = Seen(body=body)
    if (
        seen.previous.get("observedGeneration") == seen.generation
        and seen.previous.get("phase") in DONE
    ):
        return None
    try:
        seen.spec = spec = parse_training(body, state.settings.default_image)
    except SpecError as exc:
        seen.invalid = str(exc)
        return seen
    seen.job = state.child("Job", namespace, render.job_name(name))
    if seen.outdated_job:
        return seen
    if seen.job is None:
        try:
            # The operator reads the stored model back, and the tag it moves is resolved by
            # the operator and served by the model server: refuse a location they may not
            # read before anything trains.
            state.settings.storage.check(spec.output, "spec.output.storage")
        except LocationNotAllowed as exc:
            seen.not_allowed = f"{exc}; {state.settings.storage.describe()}"
            return seen
        if spec.tag:  # a tag that does not let trainings move it: refused before training
            seen.tag = state.tag(namespace, spec.tag)
        seen.source = (
            {}
            if spec.archive is not None
            else state.kube.get("v1", "ConfigMap", namespace, spec.config_map)
        )
        return seen
    seen.pods = state.kube.list_objects(
        "v1", "Pod", namespace, f"job-name={seen.job['metadata']['name']}"
    )
    if job_status.job_condition(seen.job, "Complete"):
        if training_gates.threshold_missed(spec, seen.pods):
            return seen  # the Job stored nothing
        try:
            seen.stored = _stored(state, namespace, spec)
        except (StorageError, ApiException) as exc:
            seen.unstored = str(exc)
        if spec.tag:
            seen.tag = state.tag(namespace, spec.tag)
    return seen


def _stored(state: State, namespace: str, spec: TrainingSpec) -> tuple[str, int]:
    """The stored model's digest and size, read back from storage."""
    credentials = (
        (state.kube.get_secret_text(namespace, spec.output.secret_name) or {})
        if spec.output.secret_name
        else {}
    )
    storage = storage_for(spec.output, credentials, policy=state.settings.storage)
    info = storage.stat(key_for(spec.output, spec.model_name))
    return info.digest, info.size


# --- plan -------------------------------------------------------------------------------


@dataclasses.dataclass
class Plan:
    status: dict[str, Any] | None = None  # None: the status stays as it is
    event: reporting.Event | None = None
    delete_job: str = ""  # an outdated Job to delete
    create_job: dict[str, Any] | None = None
    create_tag: dict[str, Any] | None = None
    move_tag: dict[str, Any] | None = None  # a merge patch of the tag's spec
    requeue: float | None = None  # look again after this many seconds


def _status(
    previous: dict[str, Any],
    generation: int,
    phase: str,
    reason: str,
    message: str,
    timestamp: str,
    **fields: object,
) -> dict[str, Any]:
    status = {
        k: v
        for k, v in previous.items()
        if k in ("jobName", "modelName", "startedAt", "digest", "size", "tag")
    }
    status.update({k: v for k, v in fields.items() if v not in (None, "")})
    status.update(phase=phase, observedGeneration=generation)
    if phase in ("Pending", "Training", "Uploading"):
        status.pop("finishedAt", None)
    ready = cond.condition(cond.READY, phase == "Succeeded", reason, message, generation)
    status["conditions"] = cond.merge(previous.get("conditions"), [ready], timestamp)
    if phase == "Failed":
        status["reason"], status["message"] = reason, message
    return status


def _failed(
    seen: Seen,
    problem: Problem,
    now: str,
    *,
    event: bool = True,
    log_tail: str = "",
    **fields: object,
) -> Plan:
    status = _status(
        seen.previous,
        seen.generation,
        "Failed",
        problem.reason,
        problem.message,
        now,
        finishedAt=now,
        logTail=log_tail,
        **fields,
    )
    return Plan(
        status=status, event=("Warning", problem.reason, problem.message) if event else None
    )


def _waiting(seen: Seen, phase: str, problem: Problem, now: str, again: float) -> Plan:
    return Plan(
        status=_status(seen.previous, seen.generation, phase, problem.reason, problem.message, now),
        requeue=again,
    )


def plan(seen: Seen, settings: Settings, now: str) -> Plan:
    if seen.spec is None:
        return _failed(seen, Problem("InvalidSpec", seen.invalid), now)
    spec = seen.spec
    if seen.outdated_job:
        # The spec changed: the old Job (and its pod) goes, then a new one trains.
        assert seen.job is not None
        return Plan(delete_job=seen.job["metadata"]["name"], requeue=RESTART_SECONDS)
    if seen.job is None:
        return _start(seen, spec, settings, now)
    return _follow(seen, spec, now)


def _start(seen: Seen, spec: TrainingSpec, settings: Settings, now: str) -> Plan:
    if seen.not_allowed:
        return _failed(seen, Problem("StorageNotAllowed", seen.not_allowed), now)
    refused = move_refused(spec.tag, seen.tag) if spec.tag else ""
    if refused:
        return _failed(seen, Problem("TagMoveNotAllowed", f"{refused}; nothing was trained"), now)
    if seen.source is None:
        return _waiting(
            seen,
            "Pending",
            Problem(
                "SourceNotFound",
                f"ConfigMap {spec.config_map!r} (spec.source.configMap.name) "
                f"not found in namespace {spec.namespace}: create it, e.g. with "
                "`botenv train DIR`",
                degraded=False,
            ),
            now,
            SOURCE_RETRY_SECONDS,
        )
    keys = sorted({*(seen.source.get("data") or {}), *(seen.source.get("binaryData") or {})})
    try:
        job = render.job(
            spec,
            keys=keys,
            botenv_image=settings.botenv_image,
            uid=seen.body["metadata"]["uid"],
            generation=seen.generation,
            project_size_limit=settings.training_project_size_limit,
            out_size_limit=settings.training_out_size_limit,
            work_size_limit=settings.training_work_size_limit,
        )
    except SpecError as exc:
        return _waiting(
            seen, "Pending", Problem("SourceInvalid", str(exc)), now, SOURCE_RETRY_SECONDS
        )
    name = job["metadata"]["name"]
    status = _status(
        {k: v for k, v in seen.previous.items() if k == "conditions"},
        seen.generation,
        "Pending",
        "JobCreated",
        f"Job {name} created",
        now,
        jobName=name,
        modelName=spec.model_name,
        startedAt=now,
    )
    return Plan(
        status=status,
        create_job=job,
        requeue=FOLLOW_SECONDS,
        event=("Normal", "Started", f"training model {spec.model_name} in Job {name}"),
    )


def _follow(seen: Seen, spec: TrainingSpec, now: str) -> Plan:
    assert seen.job is not None
    job_name = seen.job["metadata"]["name"]
    if job_status.job_condition(seen.job, "Complete"):
        gates = training_gates.results(spec, seen.pods)
        if training_gates.threshold_missed(spec, seen.pods):
            return _failed(
                seen,
                Problem(
                    "TestThresholdNotMet",
                    f"rasa test: {training_gates.describe(gates, failed_only=True)}; model "
                    f"{spec.model_name} was not stored"
                    + (f" and ModelTag {spec.tag!r} not moved" if spec.tag else ""),
                ),
                now,
                gates=gates or None,
                testResults=training_gates.figures(spec, seen.pods) or None,
            )
        if seen.stored is None:
            # The upload step verified it; storage may just be unreachable now.
            return _waiting(
                seen,
                "Uploading",
                Problem(
                    "StorageUnavailable",
                    f"the Job finished, but {spec.model_name} cannot be read "
                    f"back from storage yet: {seen.unstored}",
                    retry=True,
                ),
                now,
                FOLLOW_SECONDS * 2,
            )
        refused = move_refused(spec.tag, seen.tag) if spec.tag else ""
        if refused:
            digest, size = seen.stored
            return _failed(
                seen,
                Problem(
                    "TagMoveNotAllowed",
                    f"model {spec.model_name} stored (digest {digest}, {size} bytes), but "
                    f"the tag was not moved: {refused}",
                ),
                now,
                digest=digest,
                size=size,
                gates=gates or None,
                testResults=training_gates.figures(spec, seen.pods) or None,
            )
        out = succeeded(seen, spec, now, _tag_problem(seen, spec))
        if spec.tag and out.status is not None and out.status.get("tag"):
            if seen.tag is None:
                out.create_tag = {
                    "apiVersion": API_VERSION,
                    "kind": "ModelTag",
                    "metadata": {"name": spec.tag, "namespace": spec.namespace},
                    "spec": {
                        "model": spec.model_name,
                        "storage": spec.output.block(),
                        # made by a training: later trainings of this tag may move it
                        # (whoever may patch the tag can turn this off)
                        "trainings": {"allowed": True},
                    },
                }
            else:
                out.move_tag = {"spec": {"model": spec.model_name}}
        return out
    if job_status.job_condition(seen.job, "Failed"):
        reason, message, tail = job_status.failure_of(seen.job, seen.pods)
        gates = training_gates.results(spec, seen.pods)
        return _failed(seen, Problem(reason, message), now, log_tail=tail, gates=gates or None)
    phase = job_status.phase_of(seen.pods)
    messages = {
        "Pending": f"Job {job_name} is waiting for its pod",
        "Validating": f"rasa data validate runs in Job {job_name}",
        "Training": f"rasa train runs in Job {job_name}",
        "Testing": f"rasa test runs on model {spec.model_name} in Job {job_name}",
        "Uploading": f"uploading {spec.model_name} to {spec.output.provider} storage",
    }
    return Plan(
        status=_status(seen.previous, seen.generation, phase, phase, messages[phase], now),
        requeue=FOLLOW_SECONDS,
    )


def _tag_problem(seen: Seen, spec: TrainingSpec) -> str:
    """Why the tag cannot be moved to the model ('' when it can, or none is named)."""
    if not spec.tag or seen.tag is None:
        return ""
    try:
        current = parse_tag(seen.tag).storage
    except SpecError as exc:
        return f"ModelTag {spec.tag!r} is invalid: {exc}"
    if current != spec.output:
        return (
            f"ModelTag {spec.tag!r} reads from other storage than spec.output.storage "
            "(provider, bucket, prefix, endpoint or secret differ); it was not moved"
        )
    return ""


def succeeded(seen: Seen, spec: TrainingSpec, now: str, problem: str) -> Plan:
    """The Succeeded status; `problem` says why the tag was not moved."""
    assert seen.stored is not None
    digest, size = seen.stored
    moved = spec.tag if spec.tag and not problem else ""
    gates = training_gates.results(spec, seen.pods)
    message = f"model {spec.model_name} stored (digest {digest}, {size} bytes)"
    message += f"; gates passed: {training_gates.describe(gates)}" if gates else ""
    message += f"; ModelTag {spec.tag!r} moved to it" if moved else ""
    message += f"; {problem}" if problem else ""
    status = _status(
        seen.previous,
        seen.generation,
        "Succeeded",
        "Trained",
        message,
        now,
        digest=digest,
        size=size,
        tag=moved,
        finishedAt=now,
        gates=gates or None,
        testResults=training_gates.figures(spec, seen.pods) or None,
    )
    return Plan(
        status=status,
        event=(
            "Warning" if problem else "Normal",
            "TagNotMoved" if problem else "Succeeded",
            message,
        ),
    )


# --- apply ------------------------------------------------------------------------------


def apply(state: State, seen: Seen, plan: Plan, now: str) -> Plan:
    """Make the writes; returns the plan to report, changed when a write failed."""
    namespace = seen.body["metadata"]["namespace"]
    if plan.delete_job:
        state.kube.delete("batch/v1", "Job", namespace, plan.delete_job)
        state.forget("Job", namespace, plan.delete_job)
    if plan.create_job is not None:
        name = plan.create_job["metadata"]["name"]
        try:
            state.remember(state.kube.apply(plan.create_job))
        except ApiException as exc:
            return _failed(
                seen,
                Problem("InvalidSpec", f"the API server rejected Job {name}: {exc.reason}"),
                now,
                event=False,
            )
        assert seen.spec is not None
        log.info(
            "ModelTraining %s/%s: started Job %s for model %s",
            namespace,
            seen.spec.name,
            name,
            seen.spec.model_name,
        )
    if plan.create_tag is not None or plan.move_tag is not None:
        spec = seen.spec
        assert spec is not None
        try:
            if plan.create_tag is not None:
                state.kube.create(plan.create_tag, field_manager=TAG_MANAGER)
            else:
                state.kube.merge_patch(
                    API_VERSION,
                    "ModelTag",
                    namespace,
                    spec.tag,
                    plan.move_tag or {},
                    field_manager=TAG_MANAGER,
                )
        except ApiException as exc:
            return succeeded(
                seen, spec, now, f"could not move ModelTag {spec.tag!r} ({exc.status} {exc.reason})"
            )
    return plan


# --- report -----------------------------------------------------------------------------


def report(state: State, seen: Seen, plan: Plan, now: str) -> None:
    if plan.status is None:
        return
    reporting.report(
        state,
        "ModelTraining",
        seen.body,
        plan.status,
        removable=REMOVABLE,
        events=[plan.event] if plan.event else [],
        timestamp=now,
    )
    meta, phase = seen.body["metadata"], plan.status["phase"]
    if phase == "Failed" and plan.event is not None:
        log.warning(
            "ModelTraining %s/%s failed: %s",
            meta["namespace"],
            meta["name"],
            plan.status["message"],
        )
    elif phase == "Succeeded":
        log.info(
            "ModelTraining %s/%s: %s",
            meta["namespace"],
            meta["name"],
            cond.get(plan.status["conditions"], cond.READY).get("message"),
        )


async def reconcile(state: State, namespace: str, name: str) -> None:
    seen = await asyncio.to_thread(gather, state, namespace, name)
    if seen is None:
        return
    now = cond.now()
    wanted = plan(seen, state.settings, now)
    done = await asyncio.to_thread(apply, state, seen, wanted, now)
    await asyncio.to_thread(report, state, seen, done, now)
    if done.requeue is not None:
        raise Requeue(done.requeue)
