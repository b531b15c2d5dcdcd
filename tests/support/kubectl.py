"""Test helpers that talk to the API server the way a user does: with kubectl."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import yaml

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
# The first Kubernetes version that enforces CEL rules in CRDs (x-kubernetes-validations).
CEL_SINCE = (1, 25)


class Kubectl:
    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", "--request-timeout=30s", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def apply(
        self, *docs: dict, check: bool = True, server_validation_only: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """kubectl apply. `server_validation_only` skips kubectl's own schema check, so
        what is tested is what the API server itself accepts or rejects."""
        extra = ["--validate=false"] if server_validation_only else []
        return self.run("apply", *extra, "-f", "-", stdin=yaml.safe_dump_all(docs), check=check)

    def apply_crds(self, server_version: tuple[int, int]) -> None:
        """`kubectl apply -f crds/` as the README says for a server of that version, and wait
        until the CRDs are Established. Before 1.25 the API server does not know the CRDs' CEL
        rules (x-kubernetes-validations): kubectl's own schema check refuses the field there,
        so the README applies them with --validate=false and the server drops the rules."""
        extra = ["--validate=false"] if server_version < CEL_SINCE else []
        self.run("apply", *extra, "-f", str(REPO / "crds"))
        self.run(
            "wait",
            "--for=condition=Established",
            "crd/botenvironments.botenv.dev",
            "crd/modeltags.botenv.dev",
            "crd/modeltrainings.botenv.dev",
            "--timeout=60s",
        )

    def get(self, kind: str, name: str, namespace: str) -> dict | None:
        proc = self.run("get", kind, name, "-n", namespace, "-o", "json", check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr:
                return None
            raise AssertionError(proc.stderr)
        return json.loads(proc.stdout)

    def list(self, kind: str, namespace: str, selector: str = "") -> list[dict]:
        args = ["get", kind, "-n", namespace, "-o", "json"]
        if selector:
            args += ["-l", selector]
        return json.loads(self.run(*args).stdout)["items"]

    def patch(
        self,
        kind: str,
        name: str,
        namespace: str,
        patch: dict,
        patch_type: str = "merge",
        subresource: str = "",
    ) -> None:
        args = ["patch", kind, name, "-n", namespace, "--type", patch_type, "-p", json.dumps(patch)]
        if subresource:
            args.append(f"--subresource={subresource}")
        self.run(*args)

    def delete(self, kind: str, name: str, namespace: str) -> None:
        self.run("delete", kind, name, "-n", namespace, "--wait=false", "--ignore-not-found")


def eventually(
    check: Callable[[], T], timeout: float = 30.0, interval: float = 0.3, message: str = ""
) -> T:
    """Poll until `check` returns a truthy value (returned) or raise with the last value."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = check()
            if last:
                return last  # type: ignore[return-value]
        except AssertionError as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {message} (last: {last!r})")
        time.sleep(interval)


def condition(obj: dict | None, type_: str) -> dict:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return {}
