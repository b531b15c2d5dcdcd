"""The operator's Prometheus metrics, served on /metrics of the health port.

Names follow Prometheus' conventions (botenv_ prefix, _total, _seconds) and, where one
exists, controller-runtime's: botenv_workqueue_* are workqueue_* with the prefix, and
botenv_reconcile_total / botenv_reconcile_duration_seconds are controller_runtime_reconcile_
total / _time_seconds with `kind` for `controller`. Labels stay bounded: kind, result,
namespace and name of an environment or tag; model names and digests appear only in
botenv_modeltag_info (one series per tag), never in every series.

The fleet gauges are read from the operator's watch caches at scrape time (a collector), so
they cost nothing between scrapes and are never stale."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from botenv.controller.serving import desired_replicas, serves, serving_replicas, tag_model
from botenv.controller.state import State, tag_of
from botenv.render import conditions as cond

# Seconds: a reconcile is mostly API calls (a few ms each) and a storage stat or reachability
# check (up to a few seconds); a promotion is a rollout (seconds to tens of minutes).
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
PROMOTION_BUCKETS = (5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)

RECONCILES = Counter(
    "botenv_reconcile",
    "Reconciles by kind and result (success, requeue: looks again later, error: retried "
    "with backoff).",
    ["kind", "result"],
)
RECONCILE_SECONDS = Histogram(
    "botenv_reconcile_duration_seconds",
    "Time one reconcile took, by kind.",
    ["kind"],
    buckets=RECONCILE_BUCKETS,
)
QUEUE_DEPTH = Gauge("botenv_workqueue_depth", "Keys waiting in the work queue.")
QUEUE_ADDS = Counter("botenv_workqueue_adds", "Keys added to the work queue.")
QUEUE_RETRIES = Counter(
    "botenv_workqueue_retries", "Keys added again after a failed reconcile (with backoff)."
)
QUEUE_WAIT = Histogram(
    "botenv_workqueue_queue_duration_seconds",
    "Time a key waited in the work queue before a worker took it.",
    buckets=RECONCILE_BUCKETS,
)
LEADER = Gauge(
    "botenv_leader",
    "1 on the replica that holds the leader Lease and reconciles, 0 on a standby.",
)
PROMOTION_SECONDS = Histogram(
    "botenv_promotion_duration_seconds",
    "From a tag's resolution of a new model (status.resolvedAt) until every environment "
    "on the tag reports it served by all its replicas, by namespace of the tag.",
    ["namespace"],
    buckets=PROMOTION_BUCKETS,
)

KINDS = {"env": "BotEnvironment", "tag": "ModelTag", "train": "ModelTraining"}


def kind_of(key: object) -> str:
    """The kind label of a work-queue key (kind, namespace, name)."""
    short = key[0] if isinstance(key, tuple) and key else ""
    return KINDS.get(str(short), str(short) or "unknown")


def _parse_time(value: object) -> datetime.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class Promotions:
    """Observes botenv_promotion_duration_seconds once per resolution of a tag.

    A resolution is measured only when this process saw it unfinished (some environment not
    yet serving it): an operator that restarts after a promotion finished does not measure
    it again with a latency that includes its own downtime."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str], str] = {}  # tag -> resolvedAt not yet served
        self._done: dict[tuple[str, str], str] = {}  # tag -> resolvedAt last measured
        # tag -> the last environment found not serving it: looked at first, so an event
        # costs one look, not one per user, until that environment serves
        self._lagging: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()  # tag reconciles and event handlers

    def check(
        self,
        state: State,
        namespace: str,
        tag_name: str,
        environments: Callable[[], Iterable[str]],
        now: datetime.datetime,
        *,
        changed: dict[str, Any] | None = None,
    ) -> float | None:
        """Look at one tag and the `environments` naming it (the fan-out knows them: no
        scan; asked for only when needed); the latency when a promotion just ended.
        `changed`: the environment whose event asks; when it does not serve the tag's
        model, the promotion did not end with it, and no other environment is looked at."""
        with self._lock:
            return self._check(state, namespace, tag_name, environments, now, changed)

    def _check(
        self,
        state: State,
        namespace: str,
        tag_name: str,
        environments: Callable[[], Iterable[str]],
        now: datetime.datetime,
        changed: dict[str, Any] | None,
    ) -> float | None:
        key = (namespace, tag_name)
        tag = state.tag(namespace, tag_name)
        status = (tag or {}).get("status") or {}
        resolved_at = str(status.get("resolvedAt") or "")
        if tag is None or not resolved_at or not status.get("model"):
            self._pending.pop(key, None)
            self._lagging.pop(key, None)
            return None
        lagging = self._lagging.get(key)
        lagger = state.environment(namespace, lagging) if lagging else None
        for env in (changed, lagger):
            if env is not None and tag_of(env) == tag_name and not serves(env, tag):
                self._unfinished(key, resolved_at, env)
                return None
        users = [
            env
            for name in environments()
            if (env := state.environment(namespace, name)) is not None and tag_of(env) == tag_name
        ]
        if not users:
            return None
        behind = next((env for env in users if not serves(env, tag)), None)
        if behind is not None:
            self._unfinished(key, resolved_at, behind)
            return None
        self._lagging.pop(key, None)
        if self._pending.pop(key, None) != resolved_at:
            return None
        self._done[key] = resolved_at
        started = _parse_time(resolved_at)
        if started is None:
            return None
        seconds = max(0.0, (now - started).total_seconds())
        PROMOTION_SECONDS.labels(namespace=namespace).observe(seconds)
        return seconds

    def _unfinished(self, key: tuple[str, str], resolved_at: str, env: dict[str, Any]) -> None:
        """`env` does not serve the tag's resolution yet: the promotion is unfinished."""
        self._lagging[key] = env["metadata"]["name"]
        if self._done.get(key) != resolved_at:
            self._pending[key] = resolved_at

    def forget(self, namespace: str, tag_name: str) -> None:
        with self._lock:
            self._pending.pop((namespace, tag_name), None)
            self._done.pop((namespace, tag_name), None)
            self._lagging.pop((namespace, tag_name), None)


class FleetCollector(Collector):
    """Per-environment and per-tag gauges from the watch caches, at scrape time."""

    def __init__(self) -> None:
        self.state: State | None = None

    def describe(self) -> Iterable[Metric]:
        return []  # collected only when an operator runs: no fixed description

    def collect(self) -> Iterator[Metric]:
        state = self.state
        if state is None:
            return
        ready = GaugeMetricFamily(
            "botenv_environment_ready",
            "1 when the environment's Ready condition is True.",
            labels=["namespace", "name"],
        )
        degraded = GaugeMetricFamily(
            "botenv_environment_degraded",
            "1 when the environment's Degraded condition is True; reason is the condition's.",
            labels=["namespace", "name", "reason"],
        )
        desired = GaugeMetricFamily(
            "botenv_environment_replicas_desired",
            "Replicas the environment asks for.",
            labels=["namespace", "name"],
        )
        serving = GaugeMetricFamily(
            "botenv_environment_replicas_serving",
            "Replicas serving the model of the environment's tag.",
            labels=["namespace", "name"],
        )
        tag_ready = GaugeMetricFamily(
            "botenv_modeltag_ready",
            "1 when the tag's Ready condition is True (its spec.model resolved); 0 while it "
            "cannot be resolved (the last resolution stays in force).",
            labels=["namespace", "name"],
        )
        info = InfoMetricFamily(
            "botenv_modeltag",
            "The model a tag resolves to now (value always 1).",
            labels=["namespace", "name", "model", "digest"],
        )
        for env in _retrying(lambda: list(state.all_environments())):
            namespace, name = env["metadata"].get("namespace", ""), env["metadata"]["name"]
            conditions = (env.get("status") or {}).get("conditions")
            ready.add_metric([namespace, name], _true(cond.get(conditions, cond.READY)))
            deg = cond.get(conditions, cond.DEGRADED)
            degraded.add_metric([namespace, name, str(deg.get("reason") or "")], _true(deg))
            desired.add_metric([namespace, name], desired_replicas(env))
            tag = state.tag(namespace, tag_of(env))
            serving.add_metric([namespace, name], serving_replicas(env, tag))
        for key in _retrying(lambda: list(state.tags)):
            tag = state.tag(*key)
            if tag is None:
                continue
            model, digest = tag_model(tag)
            info.add_metric([key[0], key[1], model, digest], {})
            conditions = (tag.get("status") or {}).get("conditions")
            tag_ready.add_metric([key[0], key[1]], _true(cond.get(conditions, cond.READY)))
        # Kube.writes is the one place writes are counted; it starts with the operator.
        writes = CounterMetricFamily(
            "botenv_api_writes",
            "Write calls to the Kubernetes API by verb (apply, create, replace, patch, "
            "delete, status) and kind of object.",
            labels=["verb", "kind"],
        )
        for (verb, kind), count in _retrying(lambda: _by_kind(state.kube.writes)):
            writes.add_metric([verb, kind], count)
        reads = CounterMetricFamily(
            "botenv_api_reads",
            "Calls to the Kubernetes API that change nothing, by verb (get, list, proxy, "
            "dry-run) and kind of object (discovery for API discovery); the watches are not "
            "counted.",
            labels=["verb", "kind"],
        )
        for (verb, kind), count in _retrying(lambda: _by_kind(state.kube.reads)):
            reads.add_metric([verb, kind], count)
        yield from (ready, degraded, desired, serving, tag_ready, info, writes, reads)


def _true(condition: dict[str, Any]) -> float:
    return 1.0 if condition.get("status") == "True" else 0.0


def _retrying(read: Any) -> list[Any]:
    """A watch may change a cache while a scrape reads it (another thread): read again."""
    for _ in range(5):
        try:
            return list(read())
        except RuntimeError:  # changed size during iteration
            continue
    return []


def _by_kind(counts: Mapping[tuple[str, str, str], int]) -> list[tuple[tuple[str, str], int]]:
    """Kube.writes and Kube.reads keys are "VERB Kind[ as MANAGER]" per object: summed by
    verb and kind."""
    totals: dict[tuple[str, str], int] = {}
    for (what, _, _), count in list(counts.items()):
        verb, _, rest = what.partition(" ")
        key = (verb, rest.split(" ", 1)[0])
        totals[key] = totals.get(key, 0) + count
    return sorted(totals.items())


FLEET = FleetCollector()
REGISTRY.register(FLEET)
