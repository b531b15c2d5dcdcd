"""Smoke test of the project's own control plane, through kubectl only."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from botenv.local.controlplane import ControlPlane
from tests.cluster.conftest import VIEWER_TOKEN, VIEWER_USER
from tests.support.kubectl import Kubectl, eventually

pytestmark = pytest.mark.cluster


@pytest.fixture
def admin(control_plane: ControlPlane) -> Kubectl:
    return Kubectl(control_plane.kubeconfig)


@pytest.fixture
def namespace(admin: Kubectl) -> Iterator[str]:
    name = f"smoke-{secrets.token_hex(3)}"
    admin.run("create", "namespace", name)
    yield name
    admin.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.mark.compat
def test_deployment_replicaset_pod_and_garbage_collection(admin: Kubectl, namespace: str) -> None:
    # The image is never pulled: there is no kubelet.
    admin.run("create", "deployment", "web", "--image=registry.invalid/web:1", "-n", namespace)

    eventually(lambda: len(admin.list("replicasets", namespace)) == 1, message="a ReplicaSet")
    eventually(lambda: len(admin.list("pods", namespace)) == 1, message="a Pod")
    (pod,) = admin.list("pods", namespace)
    assert pod["status"]["phase"] == "Pending"
    owner = pod["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "ReplicaSet"

    admin.run("delete", "deployment", "web", "-n", namespace, "--cascade=background")
    eventually(lambda: not admin.list("replicasets", namespace), message="GC of the ReplicaSet")
    eventually(lambda: not admin.list("pods", namespace), message="GC of the Pod")


@pytest.mark.compat
def test_rbac_is_enforced_for_non_admin_tokens(
    control_plane: ControlPlane, admin: Kubectl, namespace: str
) -> None:
    viewer = Kubectl(control_plane.kubeconfig_for(VIEWER_TOKEN))

    def can_i(client: Kubectl, *extra: str) -> str:
        args = ("auth", "can-i", "create", "deployments", "-n", namespace, *extra)
        return client.run(*args, check=False).stdout.strip()

    assert can_i(admin) == "yes"
    assert can_i(viewer) == "no"
    denied = viewer.run("get", "pods", "-n", namespace, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    # Impersonation reaches the same identity without a token of its own.
    assert can_i(admin, f"--as={VIEWER_USER}") == "no"

    sa = VIEWER_USER.removeprefix("system:serviceaccount:")
    admin.run(
        "create",
        "rolebinding",
        "viewer-edit",
        "--clusterrole=edit",
        f"--serviceaccount={sa}",
        "-n",
        namespace,
    )
    eventually(lambda: can_i(viewer) == "yes", message="the RoleBinding to take effect", timeout=10)
