"""The chart's monitoring: the operator's metrics Service and both ServiceMonitors, the
PrometheusRule's alerts and the Grafana dashboard, checked with Debian's real promtool.

The rules come from `helm template` (tests/support/prometheus.py `chart_rules`): they pass
`promtool check rules` with the default values and with every setting changed, and
`promtool test rules` with tests/install/alerts_test.yaml, where each alert fires for the
series that should fire and stays silent for the others. Every dashboard query, with
Grafana's variables filled in, is a recording rule promtool parses; every metric name the
rules and queries select is one the operator or the model server exports, read from their
collectors."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from botenv.controller.metrics import PROMOTION_BUCKETS
from tests.install.conftest import find, template_args
from tests.support.prometheus import (
    chart_rules,
    dashboard,
    dashboard_queries,
    ensure_prometheus,
    exported_metric_names,
    panels,
    promql_metric_names,
)

pytestmark = pytest.mark.install

ALERTS_TEST = Path(__file__).parent / "alerts_test.yaml"
ALERTS = {
    "BotenvEnvironmentDegraded",
    "BotenvEnvironmentRolledBack",
    "BotenvRolloutStalled",
    "BotenvModelTagUnresolved",
    "BotenvPromotionSlow",
    "BotenvReconcileErrors",
    "BotenvOperatorDown",
    "BotenvNoLeader",
    "BotenvModelServerDown",
    "BotenvModelServerStorageErrors",
}
# Every setting of metrics.prometheusRule changed from its default.
CHANGED = {
    "metrics": {
        "prometheusRule": {
            "labels": {"release": "prometheus"},
            "alertLabels": {"team": "platform", "severity": "ignored"},
            "jobs": {"operator": "botenv-ops", "modelServer": "botenv-models"},
            "alerts": {
                "environmentDegraded": {"for": "30m", "severity": "critical"},
                "environmentRolledBack": {"severity": "critical"},
                "rolloutStalled": {"for": "1h"},
                "tagUnresolved": {"for": "2m"},
                "promotionSlow": {"thresholdSeconds": 1200, "window": "2h"},
                "reconcileErrors": {"ratio": 0.5, "for": "30m"},
                "operatorDown": {"for": "10m", "severity": "warning"},
                "noLeader": {"for": "1m"},
                "modelServerDown": {"for": "15m"},
                "modelServerStorageErrors": {"for": "30m", "severity": "critical"},
            },
        }
    }
}
# Grafana's variables, as a query sees them with "All" namespaces selected.
SUBSTITUTIONS = {
    "$namespace": ".+",
    "$__rate_interval": "1m",
    "$__range": "6h",
    "${datasource}": "prometheus",
}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
FLEET_METRICS = ("botenv_environment_", "botenv_modeltag_", "botenv_promotion_")


@pytest.fixture(scope="module")
def promtool() -> Path:
    return ensure_prometheus()[1]


@pytest.fixture(scope="module")
def exported() -> frozenset[str]:
    return exported_metric_names()


def check_rules(promtool: Path, rules: dict, path: Path) -> str:
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    proc = subprocess.run(
        [str(promtool), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def promtool_test(promtool: Path, test: dict, rules: dict, tmp_path: Path) -> None:
    """`promtool test rules` on `test` with rule_files pointing at `rules`."""
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(yaml.safe_dump(rules, sort_keys=False))
    test = {**test, "rule_files": [str(rules_path)]}
    test_path = tmp_path / "test.yaml"
    test_path.write_text(yaml.safe_dump(test, sort_keys=False))
    proc = subprocess.run(
        [str(promtool), "test", "rules", str(test_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def alerts(rules: dict) -> dict[str, dict]:
    return {r["alert"]: r for group in rules["groups"] for r in group["rules"]}


# -- the alert rules ------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, CHANGED], ids=["defaults", "every-setting-changed"])
def test_rules_pass_promtool_check(promtool, tmp_path, values):
    rules = chart_rules(values)
    out = check_rules(promtool, rules, tmp_path / "rules.yaml")
    assert f"SUCCESS: {len(ALERTS)} rules found" in out, out
    assert set(alerts(rules)) == ALERTS


def test_changed_settings_reach_the_rules():
    rules = alerts(chart_rules(CHANGED))
    assert rules["BotenvEnvironmentDegraded"]["for"] == "30m"
    assert rules["BotenvEnvironmentDegraded"]["labels"] == {
        "severity": "critical",
        "team": "platform",
    }  # an alert's own severity wins over alertLabels
    assert "for" not in rules["BotenvEnvironmentRolledBack"]  # at once, always
    assert rules["BotenvOperatorDown"]["labels"]["severity"] == "warning"
    assert 'job="botenv-ops"' in rules["BotenvNoLeader"]["expr"]
    assert 'job="botenv-models"' in rules["BotenvModelServerDown"]["expr"]
    assert "> 0.5" in rules["BotenvReconcileErrors"]["expr"]
    assert "[2h]" in rules["BotenvPromotionSlow"]["expr"]
    for name, rule in rules.items():  # no rule or text names the default jobs
        assert 'botenv-operator"' not in rule["expr"], name
        assert 'botenv-model-server"' not in rule["expr"], name
        for text in rule["annotations"].values():
            assert not re.search(r"job botenv-(operator|model-server)\b", text), (name, text)


def test_alerts_fire_and_stay_silent(promtool, tmp_path):
    """tests/install/alerts_test.yaml on the rules of the default values."""
    promtool_test(promtool, yaml.safe_load(ALERTS_TEST.read_text()), chart_rules(), tmp_path)


def test_alerts_file_covers_every_alert_firing_and_silent():
    test = yaml.safe_load(ALERTS_TEST.read_text())
    firing, silent = set(), set()
    for case in test["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    assert firing == ALERTS
    assert silent == ALERTS


def test_changed_thresholds_change_what_fires(promtool, tmp_path):
    """With thresholdSeconds 1200 a 700 s promotion is silent and a 1500 s one fires; with
    `for` 30m an environment Degraded for 11m is silent; the jobs are the ones set. The
    annotations are left out here (alerts_test.yaml compares them)."""
    rules = chart_rules(CHANGED)
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations")
    job = {"job": "botenv-ops", "instance": "10.0.0.1:8081"}

    def series(metric: str, values: str, **labels: str) -> dict:
        text = ", ".join(f'{k}="{v}"' for k, v in {**job, **labels}.items())
        return {"series": f"{metric}{{{text}}}", "values": values}

    count, bucket = (
        "botenv_promotion_duration_seconds_count",
        "botenv_promotion_duration_seconds_bucket",
    )
    test = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # a 700 s promotion in "shop", a 1500 s one in "slow", at 10m
                    series(count, "0+0x9 1x30", namespace="shop"),
                    series(bucket, "0+0x40", namespace="shop", le="600.0"),
                    series(bucket, "0+0x9 1x30", namespace="shop", le="1200.0"),
                    series(count, "0+0x9 1x30", namespace="slow"),
                    series(bucket, "0+0x40", namespace="slow", le="1200.0"),
                    series("up", "1x40"),
                    series(
                        "botenv_environment_degraded",
                        "1x40",
                        namespace="shop",
                        name="prod",
                        reason="SecretMissing",
                    ),
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "15m",
                        "alertname": "BotenvPromotionSlow",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "team": "platform",
                                    "namespace": "slow",
                                }
                            }
                        ],
                    },
                    {"eval_time": "11m", "alertname": "BotenvEnvironmentDegraded"},
                    {
                        "eval_time": "31m",
                        "alertname": "BotenvEnvironmentDegraded",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "team": "platform",
                                    "namespace": "shop",
                                    "name": "prod",
                                    "reason": "SecretMissing",
                                }
                            }
                        ],
                    },
                    # up in the job set: the operator is not down
                    {"eval_time": "20m", "alertname": "BotenvOperatorDown"},
                ],
            }
        ],
    }
    promtool_test(promtool, test, rules, tmp_path)


def promotion_slow(**settings: object) -> dict:
    return {"metrics": {"prometheusRule": {"alerts": {"promotionSlow": settings}}}}


def test_promotion_threshold_must_be_a_bucket_bound(helm):
    proc = helm(
        *template_args("botenv", "botenv-system", None),
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set",
        "metrics.prometheusRule.alerts.promotionSlow.thresholdSeconds=700",
        check=False,
    )
    assert proc.returncode != 0, proc.stdout
    message = re.search(
        r"metrics\.prometheusRule\.alerts\.promotionSlow\.thresholdSeconds: 700 is not a "
        r"bucket bound of botenv_promotion_duration_seconds; use one of ([0-9, ]+)",
        proc.stderr,
    )
    assert message, proc.stderr
    # The chart's list is the operator's buckets.
    assert [float(b) for b in message.group(1).split(", ")] == [float(b) for b in PROMOTION_BUCKETS]
    # Every bound is accepted; turned off, no bound is asked for.
    for bound in PROMOTION_BUCKETS:
        rules = alerts(chart_rules(promotion_slow(thresholdSeconds=bound)))
        assert f'le=~"{bound}(\\\\.0)?"' in rules["BotenvPromotionSlow"]["expr"]
    off = alerts(chart_rules(promotion_slow(enabled=False, thresholdSeconds=700)))
    assert "BotenvPromotionSlow" not in off


def test_every_alert_says_what_and_where():
    """A severity, a summary and a description; an alert about one object names it."""
    names = {
        "BotenvEnvironmentDegraded": ("namespace", "name"),
        "BotenvEnvironmentRolledBack": ("namespace", "name"),
        "BotenvRolloutStalled": ("namespace", "name"),
        "BotenvModelTagUnresolved": ("namespace", "name"),
        "BotenvPromotionSlow": ("namespace",),
        "BotenvReconcileErrors": ("kind",),
    }
    for name, rule in alerts(chart_rules()).items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description"}, name
        for label in names.get(name, ()):
            for key in ("summary", "description"):
                assert f"{{{{ $labels.{label} }}}}" in annotations[key], (name, key, label)
        # what to do: a command to look with
        assert "kubectl" in annotations["description"] or name == "BotenvPromotionSlow", name


def test_a_group_whose_alerts_are_all_off_is_left_out(promtool, tmp_path):
    off = {"enabled": False}
    rules = chart_rules(
        {
            "metrics": {
                "prometheusRule": {
                    "alerts": {"modelServerDown": off, "modelServerStorageErrors": off}
                }
            }
        }
    )
    assert [g["name"] for g in rules["groups"]] == ["botenv.fleet", "botenv.operator"]
    check_rules(promtool, rules, tmp_path / "rules.yaml")


def test_rules_select_only_exported_metrics(exported):
    for name, rule in alerts(chart_rules()).items():
        used = promql_metric_names(rule["expr"])
        assert used, name
        # up: Prometheus' own per-target series
        assert used <= exported | {"up"}, (name, used - exported)


# -- the dashboard --------------------------------------------------------------------


def test_dashboard_variables_and_panels():
    board = dashboard()  # valid JSON
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    namespace = variables["namespace"]
    assert namespace["datasource"] == DATASOURCE
    assert namespace["query"]["query"] == "label_values(botenv_environment_ready, namespace)"
    assert namespace["includeAll"] and namespace["multi"]
    every = list(panels(board))
    ids = [p["id"] for p in every]
    assert len(ids) == len(set(ids)), ids
    queried = [p for p in every if p["type"] != "row"]
    assert len(queried) >= 20
    for panel in queried:
        assert panel["title"] and panel.get("description"), panel["id"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_dashboard_queries_parse(promtool, tmp_path):
    """Each query, variables filled in, as a recording rule: promtool parses its PromQL."""
    queries = dashboard_queries(SUBSTITUTIONS)
    assert queries
    for title, expr in queries:
        assert "$" not in expr, (title, expr)  # a variable the test does not know
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": expr}
                    for i, (_, expr) in enumerate(queries)
                ],
            }
        ]
    }
    out = check_rules(promtool, rules, tmp_path / "dashboard.yaml")
    assert f"SUCCESS: {len(queries)} rules found" in out, out


def test_dashboard_queries_use_the_variables():
    """The fleet's metrics are filtered by the namespace variable, rates by
    $__rate_interval (the range of a stat over the whole time range: $__range)."""
    for title, expr in dashboard_queries({}):
        selects_fleet = any(m.startswith(FLEET_METRICS) for m in promql_metric_names(expr))
        if selects_fleet:
            assert 'namespace=~"$namespace"' in expr, (title, expr)
        for function, window in re.findall(r"\b(rate|increase)\((?:[^\[]*)\[([^\]]+)\]", expr):
            expected = "$__rate_interval" if function == "rate" else None
            if expected:
                assert window == expected, (title, expr)
            else:
                assert window in ("$__rate_interval", "$__range", "1h"), (title, expr)


def test_dashboard_queries_select_exported_metrics(exported):
    used: set[str] = set()
    for title, expr in dashboard_queries(SUBSTITUTIONS):
        names = promql_metric_names(expr)
        assert names, (title, expr)
        assert names <= exported, (title, names - exported)
        used |= names
    # And every botenv metric has a panel (a new metric needs one).
    families = {re.sub(r"_(total|created|bucket|count|sum|info)$", "", n) for n in exported}
    shown = {re.sub(r"_(total|created|bucket|count|sum|info)$", "", n) for n in used}
    missing = {f for f in families if f.startswith("botenv_")} - shown
    assert not missing, f"no dashboard panel shows {sorted(missing)}"


def test_metric_names_of_promql():
    """The extraction the two checks above rely on."""
    assert promql_metric_names(
        'histogram_quantile(0.9, sum by (kind, le) (rate(a_bucket{job="x", le=~"1(\\\\.0)?"}[5m])))'
    ) == {"a_bucket"}
    assert promql_metric_names(
        'max(b offset 1h) == 0 and on (namespace) c{x="rate(d)"} or vector(1) unless e[5m:1m]'
    ) == {"b", "c", "e"}
    assert promql_metric_names('absent(up{job="o"} == 1) * 1e3 > bool 0x1f') == {"up"}
    assert promql_metric_names("x / ignoring(le) group_left y") == {"x", "y"}


# -- the objects the chart renders ----------------------------------------------------

ON = (
    "--set",
    "metrics.serviceMonitor.enabled=true",
    "--set",
    "metrics.prometheusRule.enabled=true",
)


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_operator_metrics_service_is_always_there(render):
    objects = render()
    service = find(objects, "Service", "botenv-operator", "botenv-system")
    assert service["spec"]["ports"] == [
        {"name": "http-metrics", "port": 8081, "targetPort": "health", "protocol": "TCP"}
    ]
    deployment = find(objects, "Deployment", "botenv-operator")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    pod = deployment["spec"]["template"]
    assert matches(service["spec"]["selector"], pod["metadata"]["labels"])
    (container,) = pod["spec"]["containers"]
    assert {"name": "health", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    # The model server's Service does not select the operator, nor the other way round.
    model_server = find(objects, "Service", "botenv-model-server")
    other = find(objects, "Deployment", "botenv-model-server")["spec"]["template"]
    assert not matches(service["spec"]["selector"], other["metadata"]["labels"])
    assert not matches(model_server["spec"]["selector"], pod["metadata"]["labels"])


def test_monitoring_is_off_by_default(render):
    objects = render()
    assert not [o for o in objects if o["kind"] in ("ServiceMonitor", "PrometheusRule")]
    assert not [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and "grafana_dashboard" in o["metadata"]["labels"]
    ]


def test_service_monitors_select_the_services_and_their_ports(render):
    objects = render(
        "botenv", "botenv-system", None, *ON, "--set", "metrics.serviceMonitor.labels.release=prom"
    )
    monitors = [o for o in objects if o["kind"] == "ServiceMonitor"]
    assert sorted(m["metadata"]["name"] for m in monitors) == [
        "botenv-model-server",
        "botenv-operator",
    ]
    services = [o for o in objects if o["kind"] == "Service"]
    for monitor in monitors:
        assert monitor["metadata"]["namespace"] == "botenv-system"
        assert monitor["metadata"]["labels"]["release"] == "prom"
        spec = monitor["spec"]
        assert spec["namespaceSelector"] == {"matchNames": ["botenv-system"]}
        # A ServiceMonitor selects Services by their labels: exactly its own.
        selected = [
            s for s in services if matches(spec["selector"]["matchLabels"], s["metadata"]["labels"])
        ]
        assert [s["metadata"]["name"] for s in selected] == [monitor["metadata"]["name"]]
        (endpoint,) = spec["endpoints"]
        assert endpoint["path"] == "/metrics"
        assert endpoint["port"] in [p["name"] for p in selected[0]["spec"]["ports"]]
        assert endpoint["interval"] == "30s" and endpoint["scrapeTimeout"] == "10s"
    operator = find(monitors, "ServiceMonitor", "botenv-operator")
    # the fleet metrics' own namespace label is kept (not renamed exported_namespace)
    assert operator["spec"]["endpoints"][0]["honorLabels"] is True


def test_rules_select_the_jobs_the_service_monitors_give(render):
    """With the Prometheus Operator the job label is the Service's name."""
    objects = render(
        "shop", "ops", None, *ON, "--set", "metrics.prometheusRule.labels.release=prom"
    )
    rule = find(objects, "PrometheusRule", "shop-botenv", "ops")
    assert rule["metadata"]["labels"]["release"] == "prom"
    jobs = {
        job
        for group in rule["spec"]["groups"]
        for r in group["rules"]
        for job in re.findall(r'job="([^"]+)"', r["expr"])
    }
    services = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
    assert jobs == {"shop-botenv-operator", "shop-botenv-model-server"}
    assert jobs <= services


def test_dashboard_configmap(render):
    objects = render(
        "botenv",
        "botenv-system",
        None,
        "--set",
        "metrics.dashboard.enabled=true",
        "--set",
        "metrics.dashboard.namespace=grafana",
        "--set",
        "metrics.dashboard.label=grafana_dashboard",
        "--set",
        "metrics.dashboard.labelValue=botenv",
        "--set",
        "metrics.dashboard.annotations.grafana_folder=Bots",
    )
    config_map = find(objects, "ConfigMap", "botenv-dashboard", "grafana")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "botenv"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Bots"}
    assert json.loads(config_map["data"]["botenv.json"]) == dashboard()
    default = find(
        render("botenv", "botenv-system", None, "--set", "metrics.dashboard.enabled=true"),
        "ConfigMap",
        "botenv-dashboard",
        "botenv-system",
    )
    assert default["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_values_schema_checks_the_monitoring_values(helm):
    for setting, field in (
        (
            "metrics.prometheusRule.alerts.environmentDegraded.for=soon",
            "metrics.prometheusRule.alerts.environmentDegraded.for",
        ),
        (
            "metrics.prometheusRule.alerts.reconcileErrors.ratio=2",
            "metrics.prometheusRule.alerts.reconcileErrors.ratio",
        ),
        (
            "metrics.prometheusRule.alerts.noLeader.threshold=1",
            "metrics.prometheusRule.alerts.noLeader",
        ),
        ("metrics.dashboard.namespace=Not_A_Namespace", "metrics.dashboard.namespace"),
    ):
        proc = helm(*template_args("botenv", "botenv-system", None), "--set", setting, check=False)
        assert proc.returncode != 0, setting
        assert f"- {field}: " in proc.stderr, proc.stderr
