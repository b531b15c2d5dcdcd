"""Prometheus for tests: Debian's `prometheus` and `promtool`, botenv's alert rules and
dashboard queries as the chart ships them, and the metric names botenv exports.

- ``ensure_prometheus()``: the paths of both binaries, installing the Debian package through
  scripts/install-peers.sh when one is missing.
- ``chart_rules(values)``: the PrometheusRule's groups from a real ``helm template``, as a
  promtool rules file (the template is their only source).
- ``dashboard_queries(substitutions)``: every panel query of helm/botenv/dashboards/botenv.json
  with Grafana's variables replaced.
- ``exported_metric_names()``: every sample name the operator's and the model server's
  collectors can export, read from the collectors themselves.
- ``promql_metric_names(expr)``: the metric names a PromQL expression selects.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.support.helm import CHART, run_helm
from tests.support.peers import PeerError, ensure_installed

PACKAGE = "prometheus"  # Debian's package: prometheus and promtool
RULE_TEMPLATE = "templates/prometheusrule.yaml"
DASHBOARD = CHART / "dashboards" / "botenv.json"


@functools.cache
def ensure_prometheus() -> tuple[Path, Path]:
    """(prometheus, promtool): found on PATH, or installed first."""

    def found() -> tuple[str | None, str | None]:
        return shutil.which("prometheus"), shutil.which("promtool")

    prometheus, promtool = found()
    if not (prometheus and promtool):
        ensure_installed(PACKAGE)
        prometheus, promtool = found()
    if not (prometheus and promtool):
        raise PeerError(
            f"the {PACKAGE} package is installed but prometheus/promtool are not on PATH"
        )
    return Path(prometheus), Path(promtool)


# -- the chart's rules and dashboard ---------------------------------------------------


def chart_rules(
    values: Mapping[str, Any] | None = None, release: str = "botenv", namespace: str = "botenv"
) -> dict[str, Any]:
    """The alert rules `helm template` renders with these values (the PrometheusRule turned
    on), as a promtool rules file: {"groups": [...]}."""
    with tempfile.TemporaryDirectory(prefix="botenv-rules-") as tmp:
        home = Path(tmp)
        args = ["template", release, str(CHART), "--namespace", namespace]
        if values:
            path = home / "values.yaml"
            path.write_text(yaml.safe_dump(dict(values)))
            args += ["-f", str(path)]
        args += ["--set", "metrics.prometheusRule.enabled=true", "--show-only", RULE_TEMPLATE]
        out = run_helm(*args, home=home).stdout
    (rule,) = [d for d in yaml.safe_load_all(out) if d]
    assert rule["kind"] == "PrometheusRule", rule
    return {"groups": rule["spec"]["groups"]}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(board: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(substitutions: Mapping[str, str]) -> list[tuple[str, str]]:
    """(panel title, query) of every panel query, with each variable of `substitutions`
    ("$namespace": ".+", ...) replaced; longer names first, so $name never eats $names."""
    order = sorted(substitutions, key=len, reverse=True)
    queries = []
    for panel in panels(dashboard()):
        for target in panel.get("targets", []):
            expr = target.get("expr", "")
            for name in order:
                expr = expr.replace(name, substitutions[name])
            queries.append((panel.get("title", ""), expr))
    return queries


# -- the metric names botenv exports ---------------------------------------------------

# The sample names of a metric family of each type (prometheus_client's conventions).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "unknown": ("",),
}


def _sample_names(families: Iterable[Any]) -> set[str]:
    names: set[str] = set()
    for family in families:
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return names


def exported_metric_names() -> frozenset[str]:
    """Every sample name of the operator's registry (its metrics, prometheus_client's process
    metrics), of its fleet collector fed one environment and one tag (it exports nothing
    without an operator's state), and of a model server's registry."""
    from prometheus_client import REGISTRY

    from botenv.controller import metrics
    from botenv.controller.state import State
    from botenv.kube.client import Kube
    from botenv.modelserver.app import Metrics
    from botenv.modelserver.cache import DiskCache
    from botenv.settings import Settings

    names = _sample_names(REGISTRY.collect())  # botenv.controller.metrics registered there
    env = {"metadata": {"namespace": "ns", "name": "env"}, "spec": {}, "status": {}}
    tag = {"metadata": {"namespace": "ns", "name": "env"}, "status": {"model": "m.tar.gz"}}
    fleet = metrics.FleetCollector()  # not the operator's own: its state is left alone
    fleet.state = State(
        kube=Kube(),
        settings=Settings(),
        environments={("ns", "env"): [env]},
        tags={("ns", "env"): [tag]},
        children={},
    )
    names |= _sample_names(fleet.collect())
    with tempfile.TemporaryDirectory(prefix="botenv-metrics-") as tmp:
        cache = DiskCache(tmp, 1 << 20, fill_workers=1)
        try:
            names |= _sample_names(Metrics(cache).registry.collect())
        finally:
            asyncio.run(cache.close())
    return frozenset(names)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*(?:\([^()]*\))?")
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-z]+|@\s*[\w.()]+")
_IDENT = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names the vector selectors of `expr` name: what is left once strings,
    label matchers, ranges, grouping clauses and offsets are taken out, minus function
    calls, keywords and numbers."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    return {
        m.group(1)
        for m in _IDENT.finditer(text)
        if not m.group(2) and m.group(1).lower() not in _KEYWORDS
    }
