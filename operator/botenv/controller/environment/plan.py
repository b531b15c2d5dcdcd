"""Plan: pure. The parsed spec and what gather read -> the children to apply, the ones to
remove, the pull-token Secret to keep, and what the status says was applied. No reads, no
writes; a spec that cannot be applied now yields a Problem (what is running stays)."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

from botenv.api import SpecError, parse_tag
from botenv.api.environment import EnvironmentSpec, check_tag_fits
from botenv.api.tag import StorageSpec
from botenv.controller import broker_queues, reachability
from botenv.controller.environment import exposure, gate, scaling
from botenv.controller.environment.seen import Seen
from botenv.render import actionserver, names, pulltoken, risks, rollback
from botenv.render import conditions as cond
from botenv.render import secretenv as se
from botenv.render.configmap import configmap
from botenv.render.deployment import ModelRef, deployment, injected_env, needs_probe_script
from botenv.render.endpoints import endpoints
from botenv.render.hashing import secrets_hash, stable_hash
from botenv.render.problem import Problem
from botenv.render.service import service
from botenv.settings import Settings

PULL_TOKEN_INVALID = "PullTokenInvalid"


@dataclasses.dataclass
class PullToken:
    """The environment's pull-token Secret: created once with `create`, later only its
    labels are kept current (`labels`); `token` is the one the children are rendered for."""

    labels: dict[str, Any]
    create: dict[str, Any] | None
    token: str
    live: dict[str, Any] | None = None

    def __repr__(self) -> str:  # keeps the token out of any log or traceback
        return f"PullToken({self.labels['metadata']['name']})"


@dataclasses.dataclass
class Plan:
    problem: Problem | None = None
    pull_token: PullToken | None = None
    # The action server's Deployment and Service: applied, and Ready, before a change of
    # the Rasa children rolls Rasa (its actions must match the model it serves).
    first: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    children: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # Children botenv made earlier that the spec no longer asks for: (kind, namespace, name).
    remove: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    # (kind, namespace, name) of a child -> what another field manager applies just before
    # it (a running Deployment's replicas, handed over to its new HPA).
    handovers: dict[tuple[str, str, str], dict[str, Any]] = dataclasses.field(default_factory=dict)
    applied: dict[str, Any] | None = None  # status fields describing what the children serve
    # How botenv may ask the pods' Rasa which model they serve: None when it cannot (a
    # JWT-only API), "" without auth, else the auth token. Never logged or stored.
    status_token: str | None = ""
    dependencies: list[reachability.Dependency] = dataclasses.field(default_factory=list)
    warning: tuple[str, str] | None = None  # (reason, message) of the Warning condition
    # status.refusedModel: the tag's model that did not get ready in time (render.rollback)
    rolled_back: dict[str, Any] | None = None
    exposed: dict[str, Any] | None = None  # the Exposed condition (spec.ingress, httpRoute)
    # The tag's model, refused by the environment's Rasa (gate.py): applied with the model
    # it serves instead, and reported.
    refused: Problem | None = None

    def __repr__(self) -> str:  # keeps the token out of any log or traceback
        return f"Plan({len(self.children)} children, problem={self.problem})"


def model_of(spec: EnvironmentSpec, tag: dict[str, Any] | None) -> ModelRef | Problem:
    """The model the environment's tag points to, or why there is none to serve."""
    if tag is None:
        return Problem(
            "TagNotFound",
            f"ModelTag {spec.model_tag!r} not found in namespace "
            f"{spec.namespace}: create it, or set spec.modelTag to an existing tag",
        )
    status = tag.get("status") or {}
    if not status.get("model"):
        ready = cond.get(status.get("conditions"), cond.READY)
        why = f": {ready['message']}" if ready.get("message") else ""
        return Problem(
            "WaitingForTag", f"ModelTag {spec.model_tag!r} has no model yet{why}", degraded=False
        )
    storage = StorageSpec(provider="http")
    if spec.delivery == "remoteStorage":
        try:
            storage = parse_tag(tag).storage
        except SpecError as exc:
            return Problem("TagInvalid", f"ModelTag {spec.model_tag!r}: {exc}")
    return ModelRef(
        tag=spec.model_tag,
        model=status["model"],
        digest=status.get("digest", ""),
        storage=storage,
        action_server_image=status.get("actionServerImage", ""),
    )


def queue_of(
    spec: EnvironmentSpec, body: dict[str, Any], environments: list[dict[str, Any]]
) -> str | Problem:
    """The event queue the environment publishes to ("" without a broker), or the conflict
    with the environment that holds it."""
    if spec.event_broker is None:
        return ""
    _, queue = mine = broker_queues.claim_of(spec.namespace, spec.name, spec.event_broker)
    other = broker_queues.holder(body, environments, mine)
    if other is not None:
        o = other["metadata"]
        return Problem(
            broker_queues.QUEUE_CONFLICT,
            f"event queue {queue!r} on broker {spec.event_broker.host}:"
            f"{spec.event_broker.port} is already used by BotEnvironment "
            f"{o['namespace']}/{o['name']}: set spec.eventBroker.queue to another "
            "name, or leave it empty for a unique derived name",
        )
    return queue


def uses_of(spec: EnvironmentSpec, model: ModelRef) -> list[se.SecretUse] | Problem:
    """Every Secret key the environment's pods use."""
    try:
        return se.secret_uses(spec, model.storage if spec.delivery == "remoteStorage" else None)
    except SpecError as exc:
        return Problem("InvalidSpec", str(exc))


def secrets_to_read(seen: Seen) -> list[str] | None:
    """The Secrets gather reads for `seen` (it has read the spec, tag and environments):
    None when the plan stops before it needs them."""
    if seen.spec is None or seen.body is None:
        return None
    model = model_of(seen.spec, seen.tag)
    if isinstance(model, Problem):
        return None
    if isinstance(queue_of(seen.spec, seen.body, seen.environments), Problem):
        return None
    uses = uses_of(seen.spec, model)
    if isinstance(uses, Problem):
        return None
    own = names.pull_token_secret_name(seen.spec.name)
    refs = se.user_secret_refs(seen.spec) + se.action_server_secret_refs(seen.spec)
    return sorted(({u.secret for u in uses} | {r.secret for r in refs}) - {own})


def _pull_token(seen: Seen, spec: EnvironmentSpec, uid: str) -> PullToken | Problem:
    name = names.pull_token_secret_name(spec.name)
    labels = pulltoken.labels_only(
        environment=spec.name, namespace=spec.namespace, tag=spec.model_tag, uid=uid
    )
    if seen.pull_token is None:
        create = pulltoken.secret(
            environment=spec.name,
            namespace=spec.namespace,
            tag=spec.model_tag,
            uid=uid,
            token=seen.new_token,
        )
        return PullToken(labels=labels, create=create, token=seen.new_token)
    token = pulltoken.token_of(seen.pull_token)
    if token is None:
        return Problem(
            PULL_TOKEN_INVALID,
            f"Secret {name} holds no usable pull token (key "
            f"{se.PULL_TOKEN_KEY!r}: UTF-8 text of at least "
            f"{pulltoken.MIN_TOKEN_BYTES} bytes); the model server refuses it until "
            "it is fixed: delete the Secret and botenv makes a new one",
        )
    return PullToken(labels=labels, create=None, token=token, live=seen.pull_token)


def _redefined(spec: EnvironmentSpec, model: ModelRef, uses: list[se.SecretUse]) -> str:
    """Why spec.env may not set a variable botenv injects for this spec ('' when it does
    not): a user's value would silently replace a credential or a storage setting."""
    why = {u.var: se.ref_field(u.field) for u in uses if u.var}
    for item in injected_env(spec, model, uses):
        why.setdefault(item["name"], f"ModelTag {spec.model_tag!r} spec.storage")
    problems = [
        f"spec.env[{i}].name: {item['name']} is set by botenv from {why[item['name']]}; "
        "remove it from spec.env"
        for i, item in enumerate(spec.env)
        if item.get("name") in why
    ]
    return "; ".join(problems)


def _action_server(
    seen: Seen,
    spec: EnvironmentSpec,
    model: ModelRef,
    uid: str,
    hashed: list[tuple[str, str, bytes]],
) -> tuple[list[dict[str, Any]], list[tuple[str, str, str]], dict[str, Any] | None]:
    """(children to apply first, children to remove, status field). `hashed`: the values
    of the Secrets the action server's own env and envFrom read."""
    name = names.action_server_name(spec.name)
    if spec.action_server is None:
        gone = [
            (kind, spec.namespace, name)
            for kind, live in seen.action_server.items()
            if live is not None
        ]
        return [], gone, None
    image = actionserver.image(spec, model.action_server_image)
    children = [
        actionserver.deployment(
            spec,
            image=image,
            tag=spec.model_tag,
            uid=uid,
            secrets_hash=secrets_hash(uid, hashed) if hashed else "",
        ),
        actionserver.service(spec, tag=spec.model_tag, uid=uid),
    ]
    endpoint = names.action_server_url(spec.name, spec.namespace, spec.action_server.port)
    source = "tag" if model.action_server_image else "environment"
    return children, [], {"image": image, "endpoint": endpoint, "imageFrom": source}


def plan(seen: Seen, settings: Settings) -> Plan:
    """What the environment should look like; checks run in the order a user fixes them."""
    assert seen.body is not None
    if seen.spec is None:
        return Plan(problem=Problem("InvalidSpec", seen.invalid))
    spec, uid = seen.spec, seen.body["metadata"]["uid"]
    out = Plan(warning=risks.conversation_loss(spec))
    model = model_of(spec, seen.tag)
    queue = queue_of(spec, seen.body, seen.environments)
    uses = uses_of(spec, model) if isinstance(model, ModelRef) else model
    for step in (model, queue, uses):
        if isinstance(step, Problem):
            out.problem = step
            return out
    assert isinstance(model, ModelRef) and isinstance(queue, str) and isinstance(uses, list)
    served = (seen.body.get("status") or {}).get("model") or {}
    gated = gate.gate(spec, seen.tag or {}, model, served)
    if isinstance(gated, Problem):
        out.problem = gated
        return out
    model, out.refused = gated

    data = dict(seen.secrets)
    if spec.delivery == "pull":
        pull = _pull_token(seen, spec, uid)
        if isinstance(pull, Problem):
            out.problem = pull
            return out
        out.pull_token = pull
        secret = pull.create or seen.pull_token or {}
        data[secret["metadata"]["name"]] = dict(secret.get("data") or {})
    if seen.unreadable is not None:
        out.problem = seen.unreadable
        return out
    present = {name: None if values is None else frozenset(values) for name, values in data.items()}
    missing = se.missing_keys(uses, present)
    if missing:
        out.problem = Problem("SecretMissing", "; ".join(missing))
        return out
    try:
        check_tag_fits(spec, storage=model.storage, action_server_image=model.action_server_image)
    except SpecError as exc:
        out.problem = Problem("InvalidSpec", str(exc))
        return out

    usable = se.usable(uses, present)
    clash = _redefined(spec, model, uses)
    if clash:
        out.problem = Problem("InvalidSpec", clash)
        return out
    status = seen.body.get("status") or {}
    decision = rollback.decide(
        tag_model=model,
        rollout=spec.rollout,
        served=status.get("model"),
        refused=status.get("refusedModel"),
        deployment=seen.deployment,
        pods=seen.pods,
        tag_resolved_at=((seen.tag or {}).get("status") or {}).get("resolvedAt"),
        timeout_seconds=spec.promotion.ready_timeout_seconds,
        verifying=settings.verify_models,
        now=seen.now,
    )
    out.rolled_back = decision.refused
    model = decision.model
    out.first, out.remove, action_status = _action_server(
        seen, spec, model, uid, se.hashed_values(se.action_server_secret_refs(spec), data)
    )
    model_url = names.model_url(settings.model_server_url, spec.namespace, spec.model_tag)
    # Restart pins the pods to the model they start with, so running pods never swap models
    # before the roll (and before a new action server is ready); HotSwap follows the tag.
    pull_url = names.model_url(
        settings.model_server_url, spec.namespace, spec.model_tag, pinned=spec.rollout == "Restart"
    )
    doc = endpoints(
        spec, model_url=pull_url, queue=queue, used_vars={u.var for u in usable if u.var}
    )
    config = configmap(
        environment=spec.name,
        namespace=spec.namespace,
        tag=spec.model_tag,
        uid=uid,
        endpoints=doc,
        needs_probe_script=needs_probe_script(spec),
    )
    hashed = [(u.secret, u.key, base64.b64decode((data[u.secret] or {})[u.key])) for u in usable]
    hashed += se.hashed_values(se.user_secret_refs(spec), data)
    deploy = deployment(
        spec,
        model=model,
        uid=uid,
        uses=usable,
        config_hash=stable_hash(config["data"]),
        secrets_hash=secrets_hash(uid, hashed),
    )
    out.children = [config, service(spec, tag=spec.model_tag, uid=uid), deploy]
    scaled = scaling.scale(seen, spec, rasa=out.children, actions=out.first)
    if isinstance(scaled, Problem):
        out.first, out.children, out.remove = [], [], []
        out.problem = scaled
        return out
    out.children, out.first = scaled.rasa, scaled.actions
    out.remove += scaled.remove
    out.handovers = scaled.handovers
    routes = exposure.plan(seen, spec, uid, seen.body["metadata"].get("generation", 0))
    out.children += routes.children
    out.remove += routes.remove
    out.exposed = routes.condition
    served = {"tag": model.tag, "name": model.model, "digest": model.digest or None}
    out.applied = {
        "model": {k: v for k, v in served.items() if v},
        "modelServerUrl": model_url if spec.delivery == "pull" else None,
        "queue": queue or None,
        "endpoint": names.service_endpoint(spec.name, spec.namespace, spec.service.port),
        "url": routes.url,
        "actionServer": action_status,
        "pullToken": (
            pulltoken.status(
                environment=spec.name,
                tag=spec.model_tag,
                token=out.pull_token.token,
                # HotSwap pods follow the tag: the model server holds them on this model.
                pin=model.digest
                if spec.rollout == "HotSwap" and (out.refused or decision.pinned)
                else "",
            )
            if out.pull_token is not None
            else None
        ),
    }
    if spec.auth_token is not None:
        token = (data[spec.auth_token.name] or {})[spec.auth_token.key]
        out.status_token = base64.b64decode(token).decode()
    elif spec.jwt_secret is not None:
        out.status_token = None
    out.dependencies = reachability.dependencies(spec)
    return out
