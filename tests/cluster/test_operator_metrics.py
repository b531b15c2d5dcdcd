"""The operator's /metrics, /healthz and /readyz on its health port, scraped while a tag
moves: reconcile and work-queue counters, API writes, the fleet gauges, the tag's info and
one promotion-latency observation when every environment on the tag serves the new model.

Pods are marked Ready through the API and the operator's model check is off in this tier,
so "served" is: status.model is the tag's model, Ready is True and the ready replicas are
the desired ones (tests/e2e asks real Rasa pods)."""

from __future__ import annotations

import itertools
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.test_environments import env, replicasets, tag
from tests.support.kubectl import condition, eventually
from tests.support.pods import make_ready

pytestmark = pytest.mark.cluster

_names = itertools.count()
# Two replicas need shared stores (not reached: the dependency check is off in this tier).
SHARED = {
    "trackerStore": {"type": "redis", "host": "redis.db"},
    "lockStore": {"type": "redis", "host": "redis.db"},
}


@pytest.fixture
def ns(kubectl):
    name = f"metrics-{next(_names)}"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(base: str) -> dict[tuple[str, frozenset], float]:
    """Every sample: (name, labels) -> value."""
    status, text = get(base + "/metrics")
    assert status == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict, metric: str, **labels: str) -> float:
    return samples.get((metric, frozenset(labels.items())), 0.0)


def total(samples: dict, metric: str, **labels: str) -> float:
    """Sum over the series of `metric` that carry `labels` (and any others)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == metric and wanted <= ls)


def ready(kubectl, ns: str, name: str) -> bool:
    make_ready(kubectl, ns, f"botenv.dev/environment={name}")
    body = kubectl.get("benv", name, ns)
    return condition(body, "Ready").get("status") == "True"


def test_metrics_follow_a_tag_move_and_measure_the_promotion(kubectl, operator, health, ns):
    assert get(health + "/healthz") == (200, "leader")
    assert get(health + "/readyz") == (200, "leader")
    before = scrape(health)

    kubectl.apply(
        tag(ns, "production", "metrics-v1.tar.gz"),
        env(ns, "production"),
        env(ns, "canary", modelTag="production", replicas=2, **SHARED),
    )
    for name in ("production", "canary"):
        eventually(lambda n=name: ready(kubectl, ns, n), message=f"{name} Ready")
    operator.settle()
    samples = scrape(health)
    for name, replicas in (("production", 1), ("canary", 2)):
        assert value(samples, "botenv_environment_ready", namespace=ns, name=name) == 1
        assert (
            value(
                samples, "botenv_environment_degraded", namespace=ns, name=name, reason="AsExpected"
            )
            == 0
        )
        assert (
            value(samples, "botenv_environment_replicas_desired", namespace=ns, name=name)
            == replicas
        )
        assert (
            value(samples, "botenv_environment_replicas_serving", namespace=ns, name=name)
            == replicas
        )
    assert value(samples, "botenv_leader") == 1
    assert value(samples, "botenv_modeltag_ready", namespace=ns, name="production") == 1
    digest_v1 = kubectl.get("mtag", "production", ns)["status"]["digest"]
    assert (
        value(
            samples,
            "botenv_modeltag_info",
            namespace=ns,
            name="production",
            model="metrics-v1.tar.gz",
            digest=digest_v1,
        )
        == 1
    )
    # Model names only in the info metric.
    assert not any(
        "metrics-v1.tar.gz" in dict(labels).values()
        for (n, labels) in samples
        if n != "botenv_modeltag_info"
    )
    assert total(samples, "botenv_reconcile_total", kind="BotEnvironment", result="success") > (
        total(before, "botenv_reconcile_total", kind="BotEnvironment", result="success")
    )
    assert total(samples, "botenv_reconcile_duration_seconds_count", kind="ModelTag") > total(
        before, "botenv_reconcile_duration_seconds_count", kind="ModelTag"
    )
    assert value(samples, "botenv_workqueue_adds_total") > value(
        before, "botenv_workqueue_adds_total"
    )
    assert value(samples, "botenv_workqueue_queue_duration_seconds_count") > value(
        before, "botenv_workqueue_queue_duration_seconds_count"
    )
    assert value(samples, "botenv_workqueue_depth") == 0  # settled
    assert total(samples, "botenv_api_writes_total", verb="apply", kind="Deployment") >= 2
    assert total(samples, "botenv_api_writes_total", verb="status", kind="BotEnvironment") >= 2
    promotions = total(samples, "botenv_promotion_duration_seconds_count", namespace=ns)

    # The tag moves: both environments roll; while they do, serving < desired and no
    # promotion is measured; once both serve it, exactly one observation.
    tag(ns, "production", "metrics-v2.tar.gz")  # uploads the model first, as a release does
    kubectl.patch("mtag", "production", ns, {"spec": {"model": "metrics-v2.tar.gz"}})
    eventually(
        lambda: kubectl.get("mtag", "production", ns)["status"].get("model") == "metrics-v2.tar.gz",
        message="the tag resolves v2",
    )
    for name in ("production", "canary"):
        eventually(lambda n=name: len(replicasets(kubectl, ns, n)) == 2, message=f"{name} rolls")
    rolling = scrape(health)
    assert value(rolling, "botenv_environment_replicas_serving", namespace=ns, name="canary") == 0
    assert total(rolling, "botenv_promotion_duration_seconds_count", namespace=ns) == promotions

    for name in ("production", "canary"):
        eventually(
            lambda n=name: (
                ready(kubectl, ns, n)
                and kubectl.get("benv", n, ns)["status"]["model"]["name"] == "metrics-v2.tar.gz"
            ),
            message=f"{name} serves v2",
        )
    eventually(
        lambda: (
            total(scrape(health), "botenv_promotion_duration_seconds_count", namespace=ns)
            == promotions + 1
        ),
        message="one promotion observed",
    )
    operator.settle()
    samples = scrape(health)
    assert total(samples, "botenv_promotion_duration_seconds_count", namespace=ns) == promotions + 1
    assert total(samples, "botenv_promotion_duration_seconds_sum", namespace=ns) > 0
    for name, replicas in (("production", 1), ("canary", 2)):
        assert (
            value(samples, "botenv_environment_replicas_serving", namespace=ns, name=name)
            == replicas
        )
    digest_v2 = kubectl.get("mtag", "production", ns)["status"]["digest"]
    assert (
        value(
            samples,
            "botenv_modeltag_info",
            namespace=ns,
            name="production",
            model="metrics-v2.tar.gz",
            digest=digest_v2,
        )
        == 1
    )

    # A resync that changes nothing measures nothing again.
    operator.resync_now()
    operator.settle()
    assert total(scrape(health), "botenv_promotion_duration_seconds_count", namespace=ns) == (
        promotions + 1
    )
