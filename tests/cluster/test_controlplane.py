"""Smoke test of the project's own control plane, through kubectl only."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import VIEWER_TOKEN, VIEWER_USER
from tests.support.controlplane import ControlPlane

pytestmark = pytest.mark.cluster

KUBECTL = shutil.which("kubectl") or "kubectl"


def kubectl(kubeconfig: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [KUBECTL, f"--kubeconfig={kubeconfig}", "--request-timeout=20s", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def items(kubeconfig: Path, kind: str, namespace: str) -> list[dict[str, Any]]:
    out = kubectl(kubeconfig, "get", kind, "-n", namespace, "-o", "json").stdout
    return list(json.loads(out)["items"])


def eventually(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    name = f"smoke-{secrets.token_hex(3)}"
    kubectl(control_plane.kubeconfig, "create", "namespace", name)
    yield name
    kubectl(control_plane.kubeconfig, "delete", "namespace", name, "--wait=false", check=False)


def test_deployment_replicaset_pod_and_garbage_collection(
    control_plane: ControlPlane, namespace: str
) -> None:
    kc = control_plane.kubeconfig
    # The image is never pulled: there is no kubelet.
    kubectl(kc, "create", "deployment", "web", "--image=registry.invalid/web:1", "-n", namespace)

    eventually(lambda: len(items(kc, "replicasets", namespace)) == 1, "a ReplicaSet")
    eventually(lambda: len(items(kc, "pods", namespace)) == 1, "a Pod")
    (pod,) = items(kc, "pods", namespace)
    assert pod["status"]["phase"] == "Pending"
    owner = pod["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "ReplicaSet"

    kubectl(kc, "delete", "deployment", "web", "-n", namespace, "--cascade=background")
    eventually(lambda: not items(kc, "replicasets", namespace), "GC of the ReplicaSet")
    eventually(lambda: not items(kc, "pods", namespace), "GC of the Pod")


def test_rbac_is_enforced_for_non_admin_tokens(control_plane: ControlPlane, namespace: str) -> None:
    admin = control_plane.kubeconfig
    viewer = control_plane.kubeconfig_for(VIEWER_TOKEN)

    def can_i(kubeconfig: Path, *extra: str) -> str:
        args = ("auth", "can-i", "create", "deployments", "-n", namespace, *extra)
        return kubectl(kubeconfig, *args, check=False).stdout.strip()

    assert can_i(admin) == "yes"
    assert can_i(viewer) == "no"
    denied = kubectl(viewer, "get", "pods", "-n", namespace, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    # Impersonation reaches the same identity without a token of its own.
    assert can_i(admin, f"--as={VIEWER_USER}") == "no"

    sa = VIEWER_USER.removeprefix("system:serviceaccount:")
    kubectl(admin, "create", "rolebinding", "viewer-edit", "--clusterrole=edit",
            f"--serviceaccount={sa}", "-n", namespace)  # fmt: skip
    eventually(lambda: can_i(viewer) == "yes", "the RoleBinding to take effect", timeout=10)
