"""One reconcile of a ModelTraining: start its Job once per spec generation, follow it, and
on success resolve the stored model and move the tag."""

from __future__ import annotations

import asyncio
import logging

from kubernetes.client.exceptions import ApiException

from botenv import API_VERSION
from botenv.api import SpecError, parse_tag
from botenv.api.training import TrainingSpec, parse_training
from botenv.controller.state import State
from botenv.controller.workqueue import Requeue
from botenv.render import conditions as cond
from botenv.render import training as render
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


def _status(previous: dict, generation: int, phase: str, reason: str, message: str,
            timestamp: str, **fields: object) -> dict:
    status = {k: v for k, v in previous.items()
              if k in ("jobName", "modelName", "startedAt", "digest", "size", "tag")}
    status.update({k: v for k, v in fields.items() if v not in (None, "")})
    status.update(phase=phase, observedGeneration=generation)
    if phase in ("Pending", "Training", "Uploading"):
        status.pop("finishedAt", None)
    ready = cond.condition(cond.READY, phase == "Succeeded", reason, message, generation)
    status["conditions"] = cond.merge(previous.get("conditions"), [ready], timestamp)
    if phase == "Failed":
        status["reason"], status["message"] = reason, message
    return status


def _report(state: State, body: dict, previous: dict, status: dict, timestamp: str,
            event: tuple[str, str, str] | None = None) -> None:
    meta = body["metadata"]
    patch = dict(status)
    for key in ("reason", "message", "logTail", "finishedAt"):
        if key in previous and key not in status:
            patch[key] = None
    if patch != previous:
        state.remember(state.kube.patch_status("ModelTraining", meta["namespace"],
                                               meta["name"], patch))
    if event is not None:
        state.kube.event(body, *event, timestamp)


def _credentials(state: State, namespace: str, spec: TrainingSpec) -> dict[str, str]:
    if not spec.output.secret_name:
        return {}
    return state.kube.get_secret_text(namespace, spec.output.secret_name) or {}


def _stored(state: State, namespace: str, spec: TrainingSpec) -> tuple[str, int]:
    """The stored model's digest and size, read back from storage."""
    storage = storage_for(spec.output, _credentials(state, namespace, spec),
                          policy=state.settings.storage)
    info = storage.stat(key_for(spec.output, spec.model_name))
    return info.digest, info.size


def _move_tag(state: State, namespace: str, spec: TrainingSpec) -> str:
    """Create or move spec.tag to the model; '' when done, else why not."""
    tag = state.tag(namespace, spec.tag)
    output = spec.output
    if tag is None:
        storage = output.block()
        state.kube.create({"apiVersion": API_VERSION, "kind": "ModelTag",
                           "metadata": {"name": spec.tag, "namespace": namespace},
                           "spec": {"model": spec.model_name, "storage": storage}},
                          field_manager=TAG_MANAGER)
        return ""
    try:
        current = parse_tag(tag).storage
    except SpecError as exc:
        return f"ModelTag {spec.tag!r} is invalid: {exc}"
    if current != output:
        return (f"ModelTag {spec.tag!r} reads from other storage than spec.output.storage "
                "(provider, bucket, prefix, endpoint or secret differ); it was not moved")
    state.kube.merge_patch(API_VERSION, "ModelTag", namespace, spec.tag,
                           {"spec": {"model": spec.model_name}}, field_manager=TAG_MANAGER)
    return ""


async def reconcile(state: State, namespace: str, name: str) -> None:
    body = state.training(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    meta = body["metadata"]
    previous = body.get("status") or {}
    generation = meta.get("generation", 1)
    if previous.get("observedGeneration") == generation and previous.get("phase") in DONE:
        return  # trained (or failed) for this spec: never twice
    now = cond.now()
    try:
        spec = parse_training(body, state.settings.default_image)
    except SpecError as exc:
        status = _status(previous, generation, "Failed", "InvalidSpec", str(exc), now,
                         finishedAt=now)
        await asyncio.to_thread(_report, state, body, previous, status, now,
                                ("Warning", "InvalidSpec", str(exc)))
        return
    job_name = render.job_name(name)
    job = state.child("Job", namespace, job_name)
    ran = (job or {}).get("metadata", {}).get("annotations", {}).get(
        render.GENERATION_ANNOTATION)
    if job is not None and ran != str(generation):
        # The spec changed: the old Job (and its pod) goes, then a new one trains.
        await asyncio.to_thread(state.kube.delete, "batch/v1", "Job", namespace, job_name)
        state.forget("Job", namespace, job_name)
        raise Requeue(2.0)
    if job is None:
        await _start(state, body, spec, previous, generation, now)
        return
    await _follow(state, body, spec, job, previous, generation, now)


async def _start(state: State, body: dict, spec: TrainingSpec, previous: dict,
                 generation: int, now: str) -> None:
    namespace = spec.namespace
    try:
        # The operator reads the stored model back, and the tag it moves is resolved by the
        # operator and served by the model server: refuse a location they may not read
        # before anything trains.
        await asyncio.to_thread(state.settings.storage.check, spec.output,
                                "spec.output.storage")
    except LocationNotAllowed as exc:
        message = f"{exc}; {state.settings.storage.describe()}"
        status = _status(previous, generation, "Failed", "StorageNotAllowed", message, now,
                         finishedAt=now)
        await asyncio.to_thread(_report, state, body, previous, status, now,
                                ("Warning", "StorageNotAllowed", message))
        return
    source = {} if spec.archive is not None else await asyncio.to_thread(
        state.kube.get, "v1", "ConfigMap", namespace, spec.config_map)
    if source is None:
        message = (f"ConfigMap {spec.config_map!r} (spec.source.configMap.name) not found in "
                   f"namespace {namespace}: create it, e.g. with `botenv train DIR`")
        status = _status(previous, generation, "Pending", "SourceNotFound", message, now)
        await asyncio.to_thread(_report, state, body, previous, status, now)
        raise Requeue(SOURCE_RETRY_SECONDS)
    keys = sorted({*(source.get("data") or {}), *(source.get("binaryData") or {})})
    try:
        settings = state.settings
        job = render.job(spec, keys=keys, botenv_image=settings.botenv_image,
                         uid=body["metadata"]["uid"], generation=generation,
                         project_size_limit=settings.training_project_size_limit,
                         out_size_limit=settings.training_out_size_limit,
                         work_size_limit=settings.training_work_size_limit)
    except SpecError as exc:
        status = _status(previous, generation, "Pending", "SourceInvalid", str(exc), now)
        await asyncio.to_thread(_report, state, body, previous, status, now)
        raise Requeue(SOURCE_RETRY_SECONDS) from None
    try:
        created = await asyncio.to_thread(state.kube.apply, job)
    except ApiException as exc:
        status = _status(previous, generation, "Failed", "InvalidSpec",
                         f"the API server rejected Job {job['metadata']['name']}: "
                         f"{exc.reason}", now, finishedAt=now)
        await asyncio.to_thread(_report, state, body, previous, status, now)
        return
    state.remember(created)
    log.info("ModelTraining %s/%s: started Job %s for model %s", namespace, spec.name,
             job["metadata"]["name"], spec.model_name)
    status = _status({k: v for k, v in previous.items() if k == "conditions"}, generation,
                     "Pending", "JobCreated", f"Job {job['metadata']['name']} created",
                     now, jobName=job["metadata"]["name"], modelName=spec.model_name,
                     startedAt=now)
    await asyncio.to_thread(_report, state, body, previous, status, now,
                            ("Normal", "Started", f"training model {spec.model_name} in Job "
                                                  f"{job['metadata']['name']}"))
    raise Requeue(FOLLOW_SECONDS)


async def _follow(state: State, body: dict, spec: TrainingSpec, job: dict, previous: dict,
                  generation: int, now: str) -> None:
    namespace, job_name = spec.namespace, job["metadata"]["name"]
    pods = await asyncio.to_thread(state.kube.list_objects, "v1", "Pod", namespace,
                                   f"job-name={job_name}")
    if render.job_condition(job, "Complete"):
        await _succeeded(state, body, spec, previous, generation, now)
        return
    if render.job_condition(job, "Failed"):
        reason, message, tail = render.failure_of(job, pods)
        status = _status(previous, generation, "Failed", reason, message, now,
                         finishedAt=now, logTail=tail)
        await asyncio.to_thread(_report, state, body, previous, status, now,
                                ("Warning", reason, message))
        log.warning("ModelTraining %s/%s failed: %s", namespace, spec.name, message)
        return
    phase = render.phase_of(pods)
    messages = {"Pending": f"Job {job_name} is waiting for its pod",
                "Training": f"rasa train runs in Job {job_name}",
                "Uploading": f"uploading {spec.model_name} to {spec.output.provider} storage"}
    status = _status(previous, generation, phase, phase, messages[phase], now)
    await asyncio.to_thread(_report, state, body, previous, status, now)
    raise Requeue(FOLLOW_SECONDS)


async def _succeeded(state: State, body: dict, spec: TrainingSpec, previous: dict,
                     generation: int, now: str) -> None:
    namespace = spec.namespace
    try:
        digest, size = await asyncio.to_thread(_stored, state, namespace, spec)
    except (StorageError, ApiException) as exc:
        # The upload step verified it; storage may just be unreachable now.
        status = _status(previous, generation, "Uploading", "StorageUnavailable",
                         f"the Job finished, but {spec.model_name} cannot be read back from "
                         f"storage yet: {exc}", now)
        await asyncio.to_thread(_report, state, body, previous, status, now)
        raise Requeue(FOLLOW_SECONDS * 2) from None
    moved, problem = "", ""
    if spec.tag:
        try:
            problem = await asyncio.to_thread(_move_tag, state, namespace, spec)
        except ApiException as exc:
            problem = f"could not move ModelTag {spec.tag!r} ({exc.status} {exc.reason})"
        moved = "" if problem else spec.tag
    message = f"model {spec.model_name} stored (digest {digest}, {size} bytes)"
    message += f"; ModelTag {spec.tag!r} moved to it" if moved else ""
    message += f"; {problem}" if problem else ""
    status = _status(previous, generation, "Succeeded", "Trained", message, now,
                     digest=digest, size=size, tag=moved, finishedAt=now)
    await asyncio.to_thread(_report, state, body, previous, status, now,
                            ("Warning" if problem else "Normal",
                             "TagNotMoved" if problem else "Succeeded", message))
    log.info("ModelTraining %s/%s: %s", namespace, spec.name, message)
