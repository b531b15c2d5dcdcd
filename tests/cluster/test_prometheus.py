"""The operator's and the model server's metrics, the chart's alert rules and the dashboard's
queries, proven with a real Prometheus (Debian's package) that scrapes both on loopback
while a tag moves: what a platform team's Prometheus and Grafana would see.

The jobs are named as the chart's ServiceMonitors name them (the Services' names for the
release "botenv"), so the chart's rules run unchanged, with their `for:` durations shortened
through the chart's values. Pods are marked Ready through the API (tests/e2e runs real Rasa)."""

from __future__ import annotations

import itertools
import math
import urllib.parse
from collections.abc import Iterator

import pytest
import yaml

from tests.cluster.test_environments import env, tag
from tests.cluster.test_model_server import get, pull_token
from tests.support.kubectl import condition, eventually
from tests.support.pods import make_ready
from tests.support.prometheus import chart_rules, dashboard_queries, ensure_prometheus
from tests.support.prometheus_server import PrometheusServer

pytestmark = pytest.mark.cluster

OPERATOR_JOB, MODEL_SERVER_JOB = "botenv-operator", "botenv-model-server"
SHARED = {
    "trackerStore": {"type": "redis", "host": "redis.db"},
    "lockStore": {"type": "redis", "host": "redis.db"},
}
_names = itertools.count()


@pytest.fixture
def ns(kubectl):
    name = f"prom-{next(_names)}"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


@pytest.fixture
def prometheus(tmp_path, health, model_server) -> Iterator[PrometheusServer]:
    binary, _ = ensure_prometheus()
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(chart_rules(SHORT_ALERTS)))
    targets = {
        OPERATOR_JOB: urllib.parse.urlsplit(health).netloc,
        MODEL_SERVER_JOB: urllib.parse.urlsplit(model_server).netloc,
    }
    with PrometheusServer(binary, tmp_path, targets, rule_files=[rules]) as server:
        eventually(
            lambda: server.targets_up() == {OPERATOR_JOB: "up", MODEL_SERVER_JOB: "up"},
            message="both targets scraped",
        )
        yield server


def ready(kubectl, ns: str, name: str) -> bool:
    make_ready(kubectl, ns, f"botenv.dev/environment={name}")
    return condition(kubectl.get("benv", name, ns), "Ready").get("status") == "True"


def serves(kubectl, ns: str, name: str, model: str) -> bool:
    return ready(kubectl, ns, name) and (
        kubectl.get("benv", name, ns)["status"].get("model", {}).get("name") == model
    )


def test_prometheus_sees_a_promotion_the_fleet_and_the_model_server(
    kubectl, operator, model_server, prometheus, ns
):
    kubectl.apply(
        tag(ns, "production", "prom-v1.tar.gz"),
        env(ns, "production"),
        env(ns, "canary", modelTag="production", replicas=2, **SHARED),
    )
    for name in ("production", "canary"):
        eventually(lambda n=name: ready(kubectl, ns, n), message=f"{name} Ready")
    token = pull_token(kubectl, ns, "production")
    url = f"{model_server}/models/{ns}/tags/production"
    eventually(lambda: get(url, token)[0] == 200, message="a pull through the model server")

    promotions = f'sum(botenv_promotion_duration_seconds_count{{namespace="{ns}"}})'
    # The first resolution is a promotion too: both environments came to serve v1.
    eventually(lambda: prometheus.value(promotions) == 1, message="v1's promotion seen")
    tag(ns, "production", "prom-v2.tar.gz")  # uploads the model first, as a release does
    kubectl.patch("mtag", "production", ns, {"spec": {"model": "prom-v2.tar.gz"}})
    for name in ("production", "canary"):
        eventually(
            lambda n=name: serves(kubectl, ns, n, "prom-v2.tar.gz"), message=f"{name} serves v2"
        )

    # The promotion, through Prometheus: one observation, and a latency from its histogram.
    eventually(lambda: prometheus.value(promotions) == 2, message="v2's promotion seen")
    p90 = prometheus.value(
        "histogram_quantile(0.9, sum by (le) "
        f'(botenv_promotion_duration_seconds_bucket{{namespace="{ns}"}}))'
    )
    assert p90 is not None and 0 < p90 < math.inf
    # The fleet gauges.
    eventually(
        lambda: prometheus.value(f'sum(botenv_environment_ready{{namespace="{ns}"}})') == 2,
        message="both environments Ready in Prometheus",
    )
    serving = {
        r["metric"]["name"]: float(r["value"][1])
        for r in prometheus.query(f'botenv_environment_replicas_serving{{namespace="{ns}"}}')
    }
    assert serving == {"production": 1.0, "canary": 2.0}
    info = prometheus.query(f'botenv_modeltag_info{{namespace="{ns}"}}')
    assert [r["metric"]["model"] for r in info] == ["prom-v2.tar.gz"]
    # The model server's traffic, scraped from its own process.
    assert (
        prometheus.value(
            f'sum(botenv_modelserver_requests_total{{job="{MODEL_SERVER_JOB}",code="200"}})'
        )
        or 0
    ) >= 1

    # The chart's alerts, evaluated by this Prometheus (their `for:` shortened): a tag that
    # cannot resolve and an environment whose roll never finishes fire, for those objects
    # only; the healthy environments and the operator's and model server's own alerts do not.
    kubectl.apply(
        tag(ns, "broken", "prom-missing.tar.gz", create_model=False),
        tag(ns, "stalled", "prom-v1.tar.gz"),
        env(ns, "stuck", modelTag="stalled"),  # its pods are never made Ready
    )
    eventually(
        lambda: (
            {
                ("BotenvModelTagUnresolved", ns, "broken"),
                ("BotenvRolloutStalled", ns, "stuck"),
            }
            <= prometheus.firing()
        ),
        message="the unresolved tag's and the stalled roll's alerts fire",
    )
    firing = prometheus.firing()
    assert {(alert, name) for alert, where, name in firing if where == ns} == {
        ("BotenvModelTagUnresolved", "broken"),
        ("BotenvRolloutStalled", "stuck"),
    }
    assert not {alert for alert, _, _ in firing} & {
        "BotenvOperatorDown",
        "BotenvNoLeader",
        "BotenvModelServerDown",
        "BotenvModelServerStorageErrors",
    }
    summary = next(
        a["annotations"]["summary"]
        for a in prometheus.alerts()
        if a["labels"]["alertname"] == "BotenvModelTagUnresolved"
        and a["labels"].get("namespace") == ns
    )
    assert f"{ns}/broken" in summary

    # The dashboard: every panel's query runs on this Prometheus, and the panels a release
    # manager reads show this namespace's fleet and its promotion.
    answers = {}
    for title, expr in dashboard_queries(
        {"$namespace": ns, "$__rate_interval": "1m", "$__range": "5m"}
    ):
        answers.setdefault(title, []).append(prometheus.query(expr))

    def first(title: str) -> float:
        return float(answers[title][0][0]["value"][1])

    assert first("Environments Ready") == 2  # production and canary; stuck is not
    assert first("Tags unresolved") == 1
    assert first("Promotions") >= 1
    assert 0 < first("Promotion time p50 / p90") < math.inf
    models = {
        r["metric"]["name"]: r["metric"].get("model", "") for r in answers["Models of the tags"][0]
    }
    assert models == {
        "production": "prom-v2.tar.gz",
        "stalled": "prom-v1.tar.gz",
        # The unresolved tag has no model yet (Prometheus drops the empty label).
        "broken": "",
    }
    assert first("Leader") == 1
    assert answers["Requests by code"][0]


SHORT_ALERTS = {
    "metrics": {
        "prometheusRule": {
            "alerts": {
                "rolloutStalled": {"for": "2s"},
                "tagUnresolved": {"for": "2s"},
                "operatorDown": {"for": "2s"},
                "noLeader": {"for": "2s"},
                "modelServerDown": {"for": "2s"},
            }
        }
    }
}
