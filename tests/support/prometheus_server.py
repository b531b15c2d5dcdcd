"""A real Prometheus (Debian's `prometheus` package) on loopback, for the tests that prove the
metrics, the alert rules and the dashboard's queries against the server that runs them in
production: it scrapes the targets it is given every second and evaluates rule files."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from botenv.local.processes import free_port


class PrometheusError(Exception):
    pass


class PrometheusServer:
    """`targets`: job name -> HOST:PORT (scraped on /metrics). The job names are the ones the
    chart's ServiceMonitors give (the Service names), so the chart's rules apply unchanged."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        targets: dict[str, str],
        rule_files: list[Path] | None = None,
        interval: str = "1s",
    ) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(p) for p in rule_files or []],
            "scrape_configs": [
                # honor_labels as the chart's ServiceMonitors set it: the fleet metrics'
                # own `namespace` label is kept, not renamed exported_namespace.
                {
                    "job_name": job,
                    "honor_labels": True,
                    "static_configs": [{"targets": [target]}],
                }
                for job, target in targets.items()
            ],
        }
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrometheusServer:
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config))
        self.log = self.workdir / "prometheus.log"
        with self.log.open("wb") as out:
            self._proc = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while not self._answers("/-/ready"):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise PrometheusError(f"prometheus did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)
        return self

    def __exit__(self, *_: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def _answers(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        """The `data` of a Prometheus HTTP API answer; PrometheusError with its error (a query
        that does not parse answers 400 bad_data)."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector (or [] when it is empty)."""
        data = self.api("query", query=expr)
        result = data["result"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        return list(result)

    def value(self, expr: str) -> float | None:
        """The single value of `expr`, None when the result is empty."""
        result = self.query(expr)
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(f"{expr}: {len(result)} series, expected one: {result}")
        return float(result[0]["value"][1])

    def targets_up(self) -> dict[str, str]:
        """job -> health of its target (up, down, unknown)."""
        data = self.api("targets")
        return {t["labels"]["job"]: t["health"] for t in data["activeTargets"]}

    def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts, each with labels, state and annotations."""
        return list(self.api("alerts")["alerts"])

    def firing(self) -> set[tuple[str, str, str]]:
        """(alertname, namespace, name) of the firing alerts."""
        return {
            (
                a["labels"]["alertname"],
                a["labels"].get("namespace", ""),
                a["labels"].get("name", ""),
            )
            for a in self.alerts()
            if a["state"] == "firing"
        }
