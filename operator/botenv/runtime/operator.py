"""kopf wiring. Handlers only index objects and enqueue keys (controller.fanout says
which): one reconcile path serves create, update, operator restart, drift of a child and
periodic resync. No handler here writes to the watched objects (no kopf annotations or
finalizers): status is the only field botenv writes on its custom resources."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import logging
import time
from collections.abc import Hashable

import kopf
import kubernetes

from botenv import GROUP, VERSION
from botenv.controller import environment as environment_reconciler
from botenv.controller import metrics, verify
from botenv.controller import tag as tag_reconciler
from botenv.controller import training as training_reconciler
from botenv.controller.fanout import Fanout
from botenv.controller.resolve import Resolver
from botenv.controller.state import ENV, TAG, TRAIN, State, tag_of
from botenv.controller.workqueue import Requeue, WorkQueue
from botenv.kube.client import Kube
from botenv.kube.config import load_kubernetes_config
from botenv.labels import (
    COMPONENT,
    COMPONENT_LABEL,
    ENVIRONMENT_LABEL,
    MANAGED,
    MANAGED_SELECTOR,
    TRAINING_LABEL,
)
from botenv.render import autoscaling, disruption
from botenv.runtime import index_gate
from botenv.runtime.optional_apis import EitherIndex, quiet_optional_versions
from botenv.runtime.snapshot import snapshot
from botenv.settings import Settings

log = logging.getLogger(__name__)
quiet_optional_versions()
index_gate.install()  # a restart's cost linear in the fleet, not quadratic

CHILD_SELECTORS = (
    ("v1", "configmaps"),
    ("v1", "services"),
    ("v1", "secrets"),
    ("apps", "v1", "deployments"),
    ("batch", "v1", "jobs"),
    ("networking.k8s.io", "v1", "ingresses"),
    # Served only where the Gateway API's CRDs are installed: kopf watches it once they are
    # (it follows CRDs), and warns meanwhile that it cannot.
    ("gateway.networking.k8s.io", "v1", "httproutes"),
    # Both versions of each: a server serves one or both (optional_apis.py).
    ("autoscaling", "v2", "horizontalpodautoscalers"),
    ("autoscaling", "v2beta2", "horizontalpodautoscalers"),
    ("policy", "v1", "poddisruptionbudgets"),
    ("policy", "v1beta1", "poddisruptionbudgets"),
)
# Only the Rasa server pods: their /status says which model they serve.
RASA_PODS = {**MANAGED, COMPONENT_LABEL: COMPONENT}
# The running state, set at start-up (one operator per process).
STATE: State | None = None
QUEUE: WorkQueue | None = None
# Which keys an event touches (kept from the events themselves, so no handler scans).
FANOUT = Fanout()
PROMOTIONS = metrics.Promotions()
# Environments whose children were written and whose status report is due (_process).
REPORTS_DUE: set[Hashable] = set()
# time.monotonic() of the last watch event and of the last periodic resync (health.py).
LAST_EVENT = LAST_RESYNC = 0.0


class NoDiffBase(kopf.DiffBaseStorage):
    """botenv has no change-detecting handlers (only indexes and event handlers): kopf need
    not copy every object of every event to diff it with nothing."""

    def build(self, *, body: kopf.Body, extra_fields: object = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


@kopf.on.login()
def login(**kwargs: object) -> kopf.ConnectionInfo | None:
    """kopf's own watches use the same identity as botenv's API calls: the pod's service
    account in a cluster, otherwise $KUBECONFIG (read now, not at import)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def startup(
    settings: kopf.OperatorSettings,
    botenvironments_idx: kopf.Index,
    modeltags_idx: kopf.Index,
    configmaps_idx: kopf.Index,
    services_idx: kopf.Index,
    secrets_idx: kopf.Index,
    deployments_idx: kopf.Index,
    pods_idx: kopf.Index,
    jobs_idx: kopf.Index,
    modeltrainings_idx: kopf.Index,
    ingresses_idx: kopf.Index,
    httproutes_idx: kopf.Index,
    hpa_v2_idx: kopf.Index,
    hpa_v2beta2_idx: kopf.Index,
    pdb_v1_idx: kopf.Index,
    pdb_v1beta1_idx: kopf.Index,
    **_: object,
) -> None:
    global STATE, QUEUE, FANOUT, PROMOTIONS, LAST_EVENT, LAST_RESYNC
    config = Settings.from_env()
    # Children are watched through a server-side label selector: only botenv's own objects
    # are listed, never every ConfigMap of the cluster.
    for selector in CHILD_SELECTORS:
        settings.watching.label_selectors[selector] = MANAGED_SELECTOR
    settings.watching.label_selectors[("v1", "pods")] = ",".join(
        f"{k}={v}" for k, v in RASA_PODS.items()
    )
    settings.posting.enabled = False  # botenv posts its own, deduplicated Events
    settings.persistence.diffbase_storage = NoDiffBase()
    # kopf's per-object worker keeps the object's last event (managedFields and all) until
    # it exits, 5 s after that event by default: across a fleet's start, every object's.
    settings.queueing.idle_timeout = 0.5
    settings.watching.server_timeout = 300
    load_kubernetes_config()
    # Every worker may wait on the API server at once: asyncio's default executor has
    # cpu_count + 4 threads, and the client keeps cpu_count * 5 connections (a TLS
    # handshake for each call above that).
    threads = config.workers + 2
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="botenv")
    )
    client = kubernetes.client.Configuration.get_default_copy()
    client.connection_pool_maxsize = max(client.connection_pool_maxsize, threads)
    STATE = State(
        kube=Kube(kubernetes.client.ApiClient(client)),
        settings=config,
        environments=botenvironments_idx,
        tags=modeltags_idx,
        children={
            "ConfigMap": configmaps_idx,
            "Service": services_idx,
            "Secret": secrets_idx,
            "Deployment": deployments_idx,
            "Job": jobs_idx,
            "Ingress": ingresses_idx,
            "HTTPRoute": httproutes_idx,
            # The version botenv writes in comes first (kube.Kube.served_version).
            autoscaling.KIND: EitherIndex(hpa_v2_idx, hpa_v2beta2_idx),
            disruption.KIND: EitherIndex(pdb_v1_idx, pdb_v1beta1_idx),
        },
        pods=pods_idx,
        trainings=modeltrainings_idx,
    )
    FANOUT = Fanout()  # a restarted operator learns again from the watches' first events
    STATE.tag_users = FANOUT
    PROMOTIONS = metrics.Promotions()
    REPORTS_DUE.clear()
    metrics.FLEET.state = STATE
    LAST_EVENT = LAST_RESYNC = time.monotonic()
    QUEUE = WorkQueue(_process, workers=config.workers, priority=_priority)
    STATE.resolver = Resolver(STATE.kube, ttl_seconds=config.resolve_seconds, policy=config.storage)
    QUEUE.start()
    asyncio.get_running_loop().create_task(_resync(config.resync_seconds))
    log.info(
        "botenv operator started: model server %s, resync every %.0fs",
        config.model_server_url,
        config.resync_seconds,
    )


@kopf.on.cleanup()
async def cleanup(**_: object) -> None:
    metrics.FLEET.state = None
    if QUEUE is not None:
        await QUEUE.stop()


def _priority(key: Hashable) -> int:
    """Tags first: their environments wait for the model they resolve to."""
    return 0 if isinstance(key, tuple) and key[0] == TAG else 1


async def _process(key: Hashable) -> None:
    kind, namespace, name = key  # type: ignore[misc]
    if kind == ENV:
        # An environment whose children were just written reports once the others waiting
        # have been applied; then it reports, whatever it writes.
        due = key in REPORTS_DUE
        REPORTS_DUE.discard(key)
        try:
            await environment_reconciler.reconcile(STATE, namespace, name, report_later=not due)
        except Requeue as again:
            if again.after_others:
                REPORTS_DUE.add(key)
            raise
    elif kind == TRAIN:
        await training_reconciler.reconcile(STATE, namespace, name)
    else:
        await tag_reconciler.reconcile(STATE, namespace, name)


async def _resync(period: float) -> None:
    """Level-based safety net: every object is reconciled again periodically (this is
    also how a rotated Secret is noticed, since Secrets are not watched)."""
    global LAST_RESYNC
    while True:
        await asyncio.sleep(period)
        LAST_RESYNC = time.monotonic()
        STATE.discovery.forget()  # find APIs installed since (HTTPRoute's CRDs)
        for namespace, name in list(STATE.environments):
            QUEUE.add((ENV, namespace, name))
        for namespace, name in list(STATE.tags):
            QUEUE.add((TAG, namespace, name))
        for namespace, name in list(STATE.trainings or {}):
            QUEUE.add((TRAIN, namespace, name))


def _enqueue(key: tuple[str, str, str]) -> None:
    global LAST_EVENT
    LAST_EVENT = time.monotonic()  # every watch event handler passes here
    if QUEUE is not None:
        QUEUE.add(key)


@kopf.index(GROUP, VERSION, "botenvironments")
async def botenvironments_idx(namespace: str, name: str, body: kopf.Body, **_: object) -> dict:
    return {(namespace, name): snapshot(body)}


@kopf.index(GROUP, VERSION, "modeltags")
async def modeltags_idx(namespace: str, name: str, body: kopf.Body, **_: object) -> dict:
    return {(namespace, name): snapshot(body)}


@kopf.index("v1", "configmaps", labels=MANAGED)
async def configmaps_idx(namespace: str, name: str, body: kopf.Body, **_: object) -> dict:
    return {(namespace, name): snapshot(body)}


@kopf.index("v1", "services", labels=MANAGED)
async def services_idx(namespace: str, name: str, body: kopf.Body, **_: object) -> dict:
    return {(namespace, name): snapshot(body)}


@kopf.index("v1", "secrets", labels=MANAGED)
async def secrets_idx(namespace: str, name: str, body: kopf.Body, **_: object) -> dict:
    # Only botenv's own Secrets (pull tokens) match the selector; users' are never listed.
    return {(namespace, name): snapshot(body)}


@kopf.index("apps", "v1", "deployments", labels=MANAGED)
async def deployments_idx(namespace: str, name: str, body: kopf.Body, **_: object) -> dict:
    return {(namespace, name): snapshot(body)}


@kopf.index("batch", "v1", "jobs", labels=MANAGED)
async def jobs_idx(namespace: str, name: str, body: kopf.Body, **_: object) -> dict:
    return {(namespace, name): snapshot(body)}


@kopf.index("networking.k8s.io", "v1", "ingresses", labels=MANAGED)
async def ingresses_idx(namespace: str, name: str, body: kopf.Body, **_: object) -> dict:
    return {(namespace, name): snapshot(body)}


@kopf.index("gateway.networking.k8s.io", "v1", "httproutes", labels=MANAGED)
async def httproutes_idx(namespace: str, name: str, body: kopf.Body, **_: object) -> dict:
    return {(namespace, name): snapshot(body)}


@kopf.index(GROUP, VERSION, "modeltrainings")
async def modeltrainings_idx(namespace: str, name: str, body: kopf.Body, **_: object) -> dict:
    return {(namespace, name): snapshot(body)}


@kopf.index("autoscaling", "v2", "horizontalpodautoscalers", labels=MANAGED)
async def hpa_v2_idx(namespace: str, name: str, body: kopf.Body, **_: object) -> dict:
    return {(namespace, name): snapshot(body)}


@kopf.index("autoscaling", "v2beta2", "horizontalpodautoscalers", labels=MANAGED)
async def hpa_v2beta2_idx(namespace: str, name: str, body: kopf.Body, **_: object) -> dict:
    return {(namespace, name): snapshot(body)}


@kopf.index("policy", "v1", "poddisruptionbudgets", labels=MANAGED)
async def pdb_v1_idx(namespace: str, name: str, body: kopf.Body, **_: object) -> dict:
    return {(namespace, name): snapshot(body)}


@kopf.index("policy", "v1beta1", "poddisruptionbudgets", labels=MANAGED)
async def pdb_v1beta1_idx(namespace: str, name: str, body: kopf.Body, **_: object) -> dict:
    return {(namespace, name): snapshot(body)}


@kopf.on.event(GROUP, VERSION, "modeltrainings")
async def training_event(namespace: str, name: str, type: str | None, **_: object) -> None:
    if type == "DELETED" and STATE is not None:
        STATE.forget("ModelTraining", namespace, name)
    _enqueue((TRAIN, namespace, name))


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
async def job_event(
    namespace: str, name: str, labels: kopf.Labels, body: kopf.Body, type: str | None, **_: object
) -> None:
    if type == "DELETED" and STATE is not None:
        STATE.forget("Job", namespace, name)
    training = labels.get(TRAINING_LABEL)
    if training:
        _enqueue((TRAIN, namespace, training))


# Indexed, not handled: pod events do not start reconciles (a rollout makes hundreds). The
# Deployment's status says when a rollout is done; the pods are asked then, and again every
# few seconds until they all serve the model.
@kopf.index("v1", "pods", labels=RASA_PODS)
async def pods_idx(namespace: str, labels: kopf.Labels, body: kopf.Body, **_: object) -> dict:
    return {(namespace, labels.get(ENVIRONMENT_LABEL, "")): verify.pod_view(dict(body))}


def _echo(kind: str, namespace: str, name: str, body: kopf.Body, type: str | None) -> bool:
    """The event shows botenv's own write (the reconcile that made it has seen it): it
    starts no reconcile of that object. A deletion forgets botenv's copy."""
    if STATE is None:
        return False
    if type == "DELETED":
        STATE.forget(kind, namespace, name)
        return False
    version = str(body.get("metadata", {}).get("resourceVersion") or "")
    return STATE.echo(kind, namespace, name, version)


@kopf.on.event(GROUP, VERSION, "botenvironments")
async def environment_event(
    namespace: str, name: str, body: kopf.Body, type: str | None, **_: object
) -> None:
    echo = _echo("BotEnvironment", namespace, name, body, type)
    data = dict(body)
    for key in FANOUT.environment(namespace, name, data, deleted=type == "DELETED"):
        if not (echo and key == (ENV, namespace, name)):
            _enqueue(key)
    # A status report may be the one that finishes a promotion of its tag.
    _promotion(namespace, tag_of(data), changed=None if type == "DELETED" else data)


def _promotion(namespace: str, tag: str, changed: dict | None = None) -> None:
    if STATE is None:
        return
    now = datetime.datetime.now(datetime.UTC)
    seconds = PROMOTIONS.check(
        STATE, namespace, tag, lambda: FANOUT.users(namespace, tag), now, changed=changed
    )
    if seconds is not None:
        log.info(
            "ModelTag %s/%s: every environment serves its model, %.1fs after it was resolved",
            namespace,
            tag,
            seconds,
            extra={"reason": "PromotionComplete", "object": f"ModelTag {namespace}/{tag}"},
        )


@kopf.on.event(GROUP, VERSION, "modeltags")
async def tag_event(
    namespace: str, name: str, body: kopf.Body, type: str | None, **_: object
) -> None:
    echo = _echo("ModelTag", namespace, name, body, type)
    if type == "DELETED":
        PROMOTIONS.forget(namespace, name)
    for key in FANOUT.tag(namespace, name, dict(body), deleted=type == "DELETED"):
        if not (echo and key == (TAG, namespace, name)):
            _enqueue(key)
    if type != "DELETED":
        _promotion(namespace, name)  # a new resolution starts a promotion


@kopf.on.event("v1", "configmaps", labels=MANAGED)
@kopf.on.event("v1", "services", labels=MANAGED)
@kopf.on.event("v1", "secrets", labels=MANAGED)
@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("networking.k8s.io", "v1", "ingresses", labels=MANAGED)
@kopf.on.event("gateway.networking.k8s.io", "v1", "httproutes", labels=MANAGED)
@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", labels=MANAGED)
@kopf.on.event("autoscaling", "v2beta2", "horizontalpodautoscalers", labels=MANAGED)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=MANAGED)
@kopf.on.event("policy", "v1beta1", "poddisruptionbudgets", labels=MANAGED)
async def child_event(
    namespace: str, name: str, labels: kopf.Labels, body: kopf.Body, type: str | None, **_: object
) -> None:
    if _echo(body.get("kind", ""), namespace, name, body, type):
        return
    environment = labels.get(ENVIRONMENT_LABEL)
    if environment:
        _enqueue((ENV, namespace, environment))
