"""One reconcile of a BotEnvironment: gather -> render -> apply what differs -> status."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging

from kubernetes.client.exceptions import ApiException

from botenv.api import SpecError, parse_environment, parse_tag
from botenv.api.environment import EnvironmentSpec
from botenv.api.tag import StorageSpec
from botenv.controller import queues, reachability, verify
from botenv.controller.state import State
from botenv.controller.workqueue import Requeue
from botenv.kube.diff import contains
from botenv.render import actionserver, names, pulltoken
from botenv.render import conditions as cond
from botenv.render import secretenv as se
from botenv.render.configmap import configmap
from botenv.render.deployment import RASA_PORT, ModelRef, deployment, needs_probe_script
from botenv.render.endpoints import endpoints
from botenv.render.hashing import secrets_hash, stable_hash
from botenv.render.service import service
from botenv.render.status import APPLIED_FIELDS, Problem, environment_status, events, rollout

log = logging.getLogger(__name__)

# How soon pods are asked again while they do not all serve the tag's model yet.
VERIFY_AGAIN_SECONDS = 3.0

# Creates pull-token Secrets; a manager of its own, so botenv's later applies (labels
# only) never own, and so never remove, the token.
PULL_TOKEN_MANAGER = "botenv-pull-token"
PULL_TOKEN_INVALID = "PullTokenInvalid"


class Blocked(Exception):
    """The spec cannot be applied now; what is running stays as it is."""

    def __init__(self, reason: str, message: str, *, degraded: bool = True) -> None:
        super().__init__(message)
        self.problem = Problem(reason, message, degraded)


class ApiFailure(Blocked):
    """The API server failed a call (not a validation error): reported, then retried."""


@dataclasses.dataclass
class Plan:
    children: list[dict]
    applied: dict  # status fields describing what the children serve
    # The action server's Deployment and Service: applied, and Ready, before a change of
    # the Rasa children rolls Rasa (its actions must match the model it serves).
    first: list[dict] = dataclasses.field(default_factory=list)
    # Children botenv made earlier that the spec no longer asks for: (kind, namespace, name).
    remove: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    # How botenv may ask the pods' Rasa which model they serve: None when it cannot (a
    # JWT-only API), "" without auth, else the auth token. Never logged or stored.
    status_token: str | None = ""
    dependencies: list[reachability.Dependency] = dataclasses.field(default_factory=list)

    def __repr__(self) -> str:  # keeps the token out of any log or traceback
        return f"Plan({len(self.children)} children)"


def _action_server(state: State, spec: EnvironmentSpec, model: ModelRef, uid: str
                   ) -> tuple[list[dict], list[tuple[str, str, str]], dict | None]:
    """(children to apply first, children to remove, status field)."""
    name = names.action_server_name(spec.name)
    if spec.action_server is None:
        gone = [(kind, spec.namespace, name) for kind in ("Deployment", "Service")
                if state.child(kind, spec.namespace, name) is not None]
        return [], gone, None
    try:
        image = actionserver.image(spec, model.action_server_image)
    except SpecError as exc:
        raise Blocked("InvalidSpec", str(exc)) from exc
    children = [actionserver.deployment(spec, image=image, tag=spec.model_tag, uid=uid),
                actionserver.service(spec, tag=spec.model_tag, uid=uid)]
    endpoint = names.action_server_url(spec.name, spec.namespace, spec.action_server.port)
    source = "tag" if model.action_server_image else "environment"
    return children, [], {"image": image, "endpoint": endpoint, "imageFrom": source}


def _model(state: State, spec: EnvironmentSpec) -> ModelRef:
    tag = state.tag(spec.namespace, spec.model_tag)
    if tag is None:
        raise Blocked("TagNotFound", f"ModelTag {spec.model_tag!r} not found in namespace "
                      f"{spec.namespace}: create it, or set spec.modelTag to an existing tag")
    status = tag.get("status") or {}
    if not status.get("model"):
        ready = cond.get(status.get("conditions"), cond.READY)
        why = f": {ready['message']}" if ready.get("message") else ""
        raise Blocked("WaitingForTag", f"ModelTag {spec.model_tag!r} has no model yet{why}",
                      degraded=False)
    storage = StorageSpec(provider="http")
    if spec.delivery == "remoteStorage":
        try:
            storage = parse_tag(tag).storage
        except SpecError as exc:
            raise Blocked("TagInvalid", f"ModelTag {spec.model_tag!r}: {exc}") from exc
    return ModelRef(tag=spec.model_tag, model=status["model"],
                    digest=status.get("digest", ""), storage=storage,
                    action_server_image=status.get("actionServerImage", ""))


def _ensure_pull_token(state: State, spec: EnvironmentSpec, uid: str) -> dict:
    """Create the environment's pull-token Secret once; keep its labels current without
    ever touching the token. Returns `status.pullToken`, which is what the model server
    authorizes; a Secret whose token is unusable revokes it (Blocked)."""
    name = names.pull_token_secret_name(spec.name)
    wanted = pulltoken.labels_only(environment=spec.name, namespace=spec.namespace,
                                   tag=spec.model_tag, uid=uid)
    live = state.child("Secret", spec.namespace, name)
    try:
        if live is None:
            live = state.kube.create(pulltoken.secret(
                environment=spec.name, namespace=spec.namespace, tag=spec.model_tag, uid=uid,
                token=pulltoken.new_token()), field_manager=PULL_TOKEN_MANAGER)
            if live is not None:
                state.remember(live)
                log.info("created pull token Secret %s/%s", spec.namespace, name)
            else:  # it existed already (the watch had not shown it yet): read it
                live = state.kube.get("v1", "Secret", spec.namespace, name) or {}
        if not contains(live, wanted):
            state.remember(state.kube.apply(wanted))
    except ApiException as exc:
        raise ApiFailure("ApplyFailed", f"could not write Secret {name} ({exc.status}): "
                         f"{api_message(exc)}; retrying") from exc
    token = pulltoken.token_of(live)
    if token is None:
        raise Blocked(PULL_TOKEN_INVALID, f"Secret {name} holds no usable pull token (key "
                      f"{se.PULL_TOKEN_KEY!r}: UTF-8 text of at least "
                      f"{pulltoken.MIN_TOKEN_BYTES} bytes); the model server refuses it until "
                      "it is fixed: delete the Secret and botenv makes a new one")
    return pulltoken.status(environment=spec.name, tag=spec.model_tag, token=token)


def _remove_orphaned_pull_token(state: State, namespace: str, name: str) -> None:
    """Delete the pull-token Secret of an environment that is gone (deleted with
    --cascade=orphan, say): a token that outlives its environment opens nothing, and is
    not left lying around either."""
    secret = state.child("Secret", namespace, names.pull_token_secret_name(name))
    if secret is None or (secret["metadata"].get("labels") or {}).get(
            names.PULL_TOKEN_LABEL) != "true":
        return
    meta = secret["metadata"]
    try:
        state.kube.delete("v1", "Secret", namespace, meta["name"], uid=meta.get("uid"))
        log.info("deleted pull token Secret %s/%s: its BotEnvironment is gone", namespace,
                 meta["name"])
    except ApiException as exc:
        log.warning("could not delete the orphaned pull token Secret %s/%s (%s)", namespace,
                    meta["name"], exc.status)


def _read_secrets(state: State, namespace: str, uses: list[se.SecretUse]
                  ) -> tuple[dict[str, frozenset[str] | None], dict[str, dict[str, str]]]:
    present: dict[str, frozenset[str] | None] = {}
    data: dict[str, dict[str, str]] = {}
    for name in sorted({u.secret for u in uses}):
        own = state.child("Secret", namespace, name)
        if own is not None:
            # botenv's own Secrets (pull tokens) are watched: no API call for them.
            present[name] = frozenset(own.get("data") or {})
            data[name] = dict(own.get("data") or {})
            continue
        try:
            values = state.kube.get_secret_data(namespace, name)
        except ApiException as exc:
            raise ApiFailure("SecretUnreadable", f"could not read Secret {name!r} "
                             f"({exc.status}): {api_message(exc)}; retrying") from exc
        present[name] = None if values is None else frozenset(values)
        data[name] = values or {}
    return present, data


async def plan(state: State, body: dict) -> Plan:
    meta = body["metadata"]
    try:
        spec = parse_environment(body, state.settings.default_image)
    except SpecError as exc:
        raise Blocked("InvalidSpec", str(exc)) from exc
    model = _model(state, spec)

    queue = ""
    if spec.event_broker is not None:
        other = queues.holder(body, state.all_environments())
        if other is not None:
            o = other["metadata"]
            _, queue = queues.queue_of(body)
            raise Blocked(queues.QUEUE_CONFLICT,
                          f"event queue {queue!r} on broker {spec.event_broker.host}:"
                          f"{spec.event_broker.port} is already used by BotEnvironment "
                          f"{o['namespace']}/{o['name']}: set spec.eventBroker.queue to another "
                          "name, or leave it empty for a unique derived name")
        queue = spec.event_broker.queue or names.derived_queue(spec.namespace, spec.name)

    try:
        uses = se.secret_uses(spec, model.storage if spec.delivery == "remoteStorage" else None)
    except SpecError as exc:
        raise Blocked("InvalidSpec", str(exc)) from exc
    pull_token = None
    if spec.delivery == "pull":
        pull_token = await asyncio.to_thread(_ensure_pull_token, state, spec, meta["uid"])
    present, data = await asyncio.to_thread(_read_secrets, state, spec.namespace, uses)
    missing = se.missing_keys(uses, present)
    if missing:
        raise Blocked("SecretMissing", "; ".join(missing))
    usable = se.usable(uses, present)

    first, remove, action_status = _action_server(state, spec, model, meta["uid"])
    model_url = names.model_url(state.settings.model_server_url, spec.namespace, spec.model_tag)
    # Restart pins the pods to the model they start with, so running pods never swap models
    # before the roll (and before a new action server is ready); HotSwap follows the tag.
    pull_url = names.model_url(state.settings.model_server_url, spec.namespace,
                               spec.model_tag, pinned=spec.rollout == "Restart")
    doc = endpoints(spec, model_url=pull_url, queue=queue,
                    used_vars={u.var for u in usable if u.var})
    config = configmap(environment=spec.name, namespace=spec.namespace, tag=spec.model_tag,
                       uid=meta["uid"], endpoints=doc,
                       needs_probe_script=needs_probe_script(spec))
    hashed = [(u.secret, u.key, base64.b64decode(data[u.secret][u.key])) for u in usable]
    try:
        deploy = deployment(spec, model=model, uid=meta["uid"], uses=usable,
                            config_hash=stable_hash(config["data"]),
                            secrets_hash=secrets_hash(meta["uid"], hashed))
    except SpecError as exc:
        raise Blocked("InvalidSpec", str(exc)) from exc
    applied = {
        "model": {"tag": model.tag, "name": model.model, "digest": model.digest or None},
        "modelServerUrl": model_url if spec.delivery == "pull" else None,
        "queue": queue or None,
        "endpoint": names.service_endpoint(spec.name, spec.namespace, spec.service.port),
        "actionServer": action_status,
        "pullToken": pull_token,
    }
    applied["model"] = {k: v for k, v in applied["model"].items() if v}
    token: str | None = ""
    if spec.auth_token is not None:
        token = base64.b64decode(data[spec.auth_token.name][spec.auth_token.key]).decode()
    elif spec.jwt_secret is not None:
        token = None
    return Plan(children=[config, service(spec, tag=spec.model_tag, uid=meta["uid"]), deploy],
                applied=applied, first=first, remove=remove, status_token=token,
                dependencies=reachability.dependencies(spec))


def _stale(state: State, children: list[dict]) -> list[dict]:
    return [c for c in children if not contains(
        state.child(c["kind"], c["metadata"]["namespace"], c["metadata"]["name"]), c)]


def _write(state: State, stale: list[dict]) -> None:
    """Apply `stale`; a Deployment already running is checked with a dry run first, so a
    spec the server rejects changes nothing."""
    if not stale:
        return
    child = stale[0]
    try:
        for child in stale:
            meta = child["metadata"]
            running = state.child("Deployment", meta["namespace"], meta["name"])
            if child["kind"] == "Deployment" and running is not None and len(stale) > 1:
                state.kube.apply(child, dry_run=True)
        for child in stale:
            state.remember(state.kube.apply(child))
            log.info("applied %s %s/%s", child["kind"], child["metadata"]["namespace"],
                     child["metadata"]["name"])
    except ApiException as exc:
        what = f"{child['kind']} {child['metadata']['name']}"
        if exc.status in (400, 422):
            raise Blocked("InvalidSpec", f"the API server rejected {what}: "
                          f"{api_message(exc)}") from exc
        raise ApiFailure("ApplyFailed", f"could not apply {what} ({exc.status}): "
                          f"{api_message(exc)}; retrying") from exc


def _apply(state: State, plan: Plan) -> None:
    """Apply the children that differ from what the API server holds: the action server
    first; a change to running Rasa pods waits until the action server is rolled out."""
    _write(state, _stale(state, plan.first))
    stale = _stale(state, plan.children)
    if stale and plan.first:
        actions = plan.first[0]
        meta = actions["metadata"]
        rasa = state.child("Deployment", meta["namespace"], names.rasa_name(
            meta["labels"][names.ENVIRONMENT_LABEL]))
        progress = rollout(state.child("Deployment", meta["namespace"], meta["name"]),
                           actions["spec"]["replicas"])
        if rasa is not None and not progress.done:
            image = actions["spec"]["template"]["spec"]["containers"][0]["image"]
            raise Blocked("WaitingForActionServer", f"Rasa waits for action server "
                          f"{meta['name']} ({image}) to be ready before it rolls: "
                          f"{progress.message}", degraded=progress.stalled)
    _write(state, stale)
    for kind, namespace, name in plan.remove:
        try:
            state.kube.delete("apps/v1" if kind == "Deployment" else "v1", kind, namespace,
                              name)
            log.info("deleted %s %s/%s (no longer in the spec)", kind, namespace, name)
        except ApiException as exc:
            raise ApiFailure("DeleteFailed", f"could not delete {kind} {name} "
                             f"({exc.status}): {api_message(exc)}; retrying") from exc


def api_message(exc: ApiException) -> str:
    try:
        return json.loads(exc.body or "{}").get("message") or str(exc.reason)
    except ValueError:
        return str(exc.reason)


async def reconcile(state: State, namespace: str, name: str) -> None:
    body = state.environment(namespace, name)
    if body is None:
        # Deleted: garbage collection removes the children, but not those it orphaned.
        await asyncio.to_thread(_remove_orphaned_pull_token, state, namespace, name)
        return
    if body["metadata"].get("deletionTimestamp"):
        return
    previous = body.get("status") or {}
    problem, applied, retry, result = None, None, None, None
    try:
        result = await plan(state, body)
        await asyncio.to_thread(_apply, state, result)
        applied = result.applied
    except Blocked as blocked:
        problem = blocked.problem
        retry = blocked if isinstance(blocked, ApiFailure) else None
        log.log(logging.WARNING if problem.degraded else logging.INFO,
                "BotEnvironment %s/%s not applied: %s", namespace, name, problem.message)
    lost = []
    if result is not None and problem is None and state.settings.check_dependencies:
        lost = await reachability.unreachable(result.dependencies)
        if lost:
            # Reported, not acted on: what runs stays, and Ready says the environment
            # cannot do its whole job (events or conversations cannot be stored).
            problem = Problem(lost[0][0].reason, reachability.message(lost))
            was = cond.get(previous.get("conditions"), cond.DEGRADED).get("reason")
            log.log(logging.INFO if was == problem.reason else logging.WARNING,
                    "BotEnvironment %s/%s: %s", namespace, name, problem.message)
    replicas = (body.get("spec") or {}).get("replicas", 1)
    replicas = replicas if isinstance(replicas, int) else 1
    deploy = state.child("Deployment", namespace, names.rasa_name(name))
    answers = None
    verifying = (result is not None and problem is None and result.status_token is not None
                 and state.settings.verify_models)
    if verifying and rollout(deploy, replicas).done:
        answers = await verify.served_models(state.pods_of(namespace, name), port=RASA_PORT,
                                             token=result.status_token)
    timestamp = cond.now()
    status = environment_status(
        previous=previous, generation=body["metadata"].get("generation", 0), problem=problem,
        deployment=deploy, replicas=replicas, applied=applied, timestamp=timestamp,
        answers=answers, verifying=verifying)
    if problem is not None and problem.reason == PULL_TOKEN_INVALID:
        status.pop("pullToken", None)  # revoked: never keep the last good one
    if status != previous:
        await asyncio.to_thread(_report, state, body, previous, status, timestamp)
    if retry is not None:
        raise retry  # the work queue retries with backoff
    if lost:
        raise Requeue(VERIFY_AGAIN_SECONDS * 2)  # notice the recovery soon
    if answers is not None and cond.get(status["conditions"], cond.READY).get("status") != "True":
        # Pods pull or load the model on their own: nothing in the API tells when; look again.
        raise Requeue(VERIFY_AGAIN_SECONDS)


def _report(state: State, body: dict, previous: dict, status: dict, timestamp: str) -> None:
    meta = body["metadata"]
    patch = dict(status)
    for key in (*APPLIED_FIELDS, "servedModels"):
        if key in previous and key not in status:
            patch[key] = None  # merge patch: remove fields that no longer apply
    state.remember(state.kube.patch_status("BotEnvironment", meta["namespace"], meta["name"],
                                           patch))
    for type_, reason, message in events(previous, status):
        state.kube.event(body, type_, reason, message, timestamp)
