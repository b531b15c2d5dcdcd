"""Least privilege, against the real authorizer: what the chart's RBAC does NOT let botenv's
components (and people) do. That it grants what they need is shown by every other cluster
test, which runs the operator and the model server under exactly this RBAC."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from botenv.local.controlplane import ControlPlane
from tests.cluster.conftest import (
    INSTALL_NAMESPACE,
    MODEL_SERVER_TOKEN,
    OPERATOR_TOKEN,
    RBAC_KINDS,
    SCOPED_NAMESPACE,
    SCOPED_OPERATOR_TOKEN,
    STORAGE_POLICY,
)
from tests.cluster.test_environments import env, tag
from tests.support.helm import CHART, run_helm
from tests.support.kubectl import Kubectl, eventually

pytestmark = pytest.mark.cluster


def can(kubectl: Kubectl, verb: str, resource: str, namespace: str = "") -> bool:
    """`kubectl auth can-i`; RESOURCE/SUB asks for a subresource (e.g. .../status), and
    RESOURCE/NAME for a named object where the name is not a subresource."""
    resource, _, sub = resource.partition("/")
    args = ["auth", "can-i", verb, resource]
    if sub in ("status", "exec", "finalizers", "scale"):
        args.append(f"--subresource={sub}")
    elif sub:
        args[-1] = f"{resource}/{sub}"
    args += ["-n", namespace] if namespace else ["--all-namespaces"]
    out = kubectl.run(*args, check=False).stdout.strip()
    assert out in ("yes", "no"), out
    return out == "yes"


def may(kubectl: Kubectl, verb: str, resource: str, namespace: str = "") -> bool:
    """A SelfSubjectAccessReview for RESOURCE.GROUP[/SUB]: unlike `can`, it names the group
    itself, so it answers for kinds whose CRDs are not installed (kubectl looks those up)."""
    resource, _, sub = resource.partition("/")
    plural, _, group = resource.partition(".")
    attributes = {"verb": verb, "group": group, "resource": plural, "subresource": sub}
    if namespace:
        attributes["namespace"] = namespace
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes},
    }
    out = kubectl.run("create", "-o", "json", "-f", "-", stdin=json.dumps(review)).stdout
    return bool(json.loads(out)["status"].get("allowed"))


@pytest.fixture(scope="module")
def as_operator(control_plane: ControlPlane, chart_rbac: list[dict]) -> Kubectl:
    return Kubectl(control_plane.kubeconfig_for(OPERATOR_TOKEN))


@pytest.fixture(scope="module")
def as_model_server(control_plane: ControlPlane, chart_rbac: list[dict]) -> Kubectl:
    return Kubectl(control_plane.kubeconfig_for(MODEL_SERVER_TOKEN))


def test_operator_is_refused_what_it_does_not_need(as_operator: Kubectl) -> None:
    refused = [
        ("delete", "customresourcedefinitions.apiextensions.k8s.io", ""),
        ("create", "customresourcedefinitions.apiextensions.k8s.io", ""),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io", ""),
        ("escalate", "clusterroles.rbac.authorization.k8s.io", ""),
        ("update", "botenvironments.botenv.dev", "bots"),  # spec belongs to its users
        ("delete", "modeltags.botenv.dev", "bots"),
        ("update", "secrets", "bots"),
        ("create", "pods", "bots"),
        ("create", "pods/exec", "bots"),
        ("delete", "configmaps", "bots"),
        ("update", "leases.coordination.k8s.io", "bots"),
        ("delete", "namespaces", ""),
        # HPAs and budgets: applied (patch) and deleted, never updated or deleted in bulk
        ("update", "horizontalpodautoscalers.autoscaling", "bots"),
        ("deletecollection", "horizontalpodautoscalers.autoscaling", "bots"),
        ("update", "poddisruptionbudgets.policy", "bots"),
        ("deletecollection", "poddisruptionbudgets.policy", "bots"),
        # the scale subresources: the HPA scales, not botenv
        ("update", "deployments.apps/scale", "bots"),
        ("update", "botenvironments.botenv.dev/scale", "bots"),
    ]
    allowed = [(v, r, n) for v, r, n in refused if can(as_operator, v, r, n)]
    assert allowed == []
    # ...and it may do what it does (a sample; the other cluster tests do the rest).
    assert can(as_operator, "patch", "botenvironments.botenv.dev/status", "bots")
    assert can(as_operator, "get", "leases.coordination.k8s.io/botenv-operator", INSTALL_NAMESPACE)
    # Its own orphaned pull-token Secrets (tests/cluster/test_pull_tokens.py): deleted with
    # the Secret's uid as precondition, never a Secret it did not make.
    assert can(as_operator, "delete", "secrets", "bots")
    # spec.autoscaling's HPA and the disruption budget: applied, and deleted when the spec no
    # longer asks for them (tests/cluster/test_scaling.py).
    for resource in ("horizontalpodautoscalers.autoscaling", "poddisruptionbudgets.policy"):
        for verb in ("watch", "patch", "delete"):
            assert can(as_operator, verb, resource, "bots"), (verb, resource)


def test_operator_writes_routes_to_environments_only(as_operator: Kubectl) -> None:
    """spec.ingress and spec.httpRoute: the operator writes Ingresses and HTTPRoutes (server-
    side apply; delete when the field goes), never the Gateways or IngressClasses they use."""
    for resource in ("ingresses.networking.k8s.io", "httproutes.gateway.networking.k8s.io"):
        for verb in ("get", "list", "watch", "create", "patch", "delete"):
            assert may(as_operator, verb, resource, "bots"), (verb, resource)
        assert not may(as_operator, "update", resource, "bots"), resource
        assert not may(as_operator, "patch", f"{resource}/status", "bots"), resource
    refused = [
        ("get", "gateways.gateway.networking.k8s.io", "bots"),
        ("create", "gateways.gateway.networking.k8s.io", "bots"),
        ("create", "gatewayclasses.gateway.networking.k8s.io", ""),
        ("create", "ingressclasses.networking.k8s.io", ""),
        ("create", "referencegrants.gateway.networking.k8s.io", "bots"),
    ]
    assert [(v, r, n) for v, r, n in refused if may(as_operator, v, r, n)] == []
    # Whether the cluster serves HTTPRoute is API discovery, open to every client: no rule.
    assert '"ingresses"' in as_operator.run("get", "--raw", "/apis/networking.k8s.io/v1").stdout


def test_model_server_can_write_nothing(as_model_server: Kubectl) -> None:
    resources = [
        "secrets",
        "configmaps",
        "pods",
        "services",
        "events",
        "deployments.apps",
        "ingresses.networking.k8s.io",
        "botenvironments.botenv.dev",
        "modeltags.botenv.dev",
        "modeltags.botenv.dev/status",
        "leases.coordination.k8s.io",
    ]
    writes = [
        (verb, r)
        for r in resources
        for verb in ("create", "update", "patch", "delete")
        if can(as_model_server, verb, r, "bots")
    ]
    assert writes == []
    assert can(as_model_server, "list", "modeltags.botenv.dev", "bots")
    # Pull tokens come from the environments' status (their SHA-256), not from Secrets: the
    # model server cannot list or watch a single Secret, only GET a tag's storage Secret.
    assert can(as_model_server, "list", "botenvironments.botenv.dev", "bots")
    assert can(as_model_server, "get", "secrets", "bots")
    for verb in ("list", "watch"):
        assert not can(as_model_server, verb, "secrets", "bots"), verb
        assert not can(as_model_server, verb, "secrets"), verb
    # A real request, not only the review API: refused with 403.
    proc = as_model_server.run("create", "configmap", "x", "-n", "default", check=False)
    assert proc.returncode != 0 and "forbidden" in proc.stderr.lower()


@pytest.fixture(scope="module")
def scoped(control_plane: ControlPlane, kubectl: Kubectl, tmp_path_factory) -> Kubectl:
    """The chart rendered by Helm with a namespace list, its RBAC applied."""
    home = tmp_path_factory.mktemp("helm")
    rendered = run_helm(
        "template",
        SCOPED_NAMESPACE,
        str(CHART),
        "--namespace",
        SCOPED_NAMESPACE,
        "--set",
        "watch.namespaces={team-a}",
        home=home,
    ).stdout
    for name in (SCOPED_NAMESPACE, "team-a", "team-b"):
        kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    kubectl.apply(*[d for d in yaml.safe_load_all(rendered) if d and d["kind"] in RBAC_KINDS])
    return Kubectl(control_plane.kubeconfig_for(SCOPED_OPERATOR_TOKEN))


def test_namespace_scoped_operator_reads_no_secret_outside_its_namespaces(scoped: Kubectl) -> None:
    assert can(scoped, "get", "secrets", "team-a")
    for namespace in ("team-b", "kube-system", "default", INSTALL_NAMESPACE):
        assert not can(scoped, "get", "secrets", namespace), namespace
    assert not can(scoped, "list", "secrets")  # not cluster-wide
    assert not can(scoped, "list", "botenvironments.botenv.dev")
    proc = scoped.run("get", "secrets", "-n", "kube-system", check=False)
    assert proc.returncode != 0 and "forbidden" in proc.stderr.lower()


def test_namespace_scoped_operator_runs_without_a_denial(
    control_plane: ControlPlane, scoped: Kubectl, kubectl: Kubectl, tmp_path: Path
) -> None:
    log = tmp_path / "operator.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "botenv.cli",
            "operator",
            "-n",
            "team-a",
            "--leader-elect",
            "--leader-election-namespace",
            SCOPED_NAMESPACE,
        ],
        env={
            **os.environ,
            **STORAGE_POLICY,  # the test's tag is stored under MODELS (storage provider local)
            "KUBECONFIG": str(control_plane.kubeconfig_for(SCOPED_OPERATOR_TOKEN)),
            "POD_NAME": "scoped-operator",
        },
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        eventually(
            lambda: b"botenv operator started" in log.read_bytes(),
            timeout=60,
            message="the scoped operator did not start",
        )
        kubectl.apply(tag("team-a", "t", "scoped.tar.gz"), env("team-a", "scoped", modelTag="t"))
        eventually(lambda: kubectl.get("deployment", "rasa-scoped", "team-a"), timeout=30)
        time.sleep(2)  # a few more reconciles (status, events)
        text = log.read_text()
        assert "403" not in text and "orbidden" not in text, text[-3000:]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# People: the README's Role that lets only release managers move the production tag, with
# real requests under their own tokens (tests/install/test_user_roles.py reviews the chart's
# viewer / editor / promoter roles rule by rule).
PEOPLE_NS = "people"


@pytest.fixture(scope="module")
def people(
    control_plane: ControlPlane, kubectl: Kubectl, chart_rbac: list[dict]
) -> dict[str, Kubectl]:
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PEOPLE_NS}})

    def binding(name: str, role: str, group: str, kind: str) -> dict:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": PEOPLE_NS},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
        }

    production_only = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "move-production-tag", "namespace": PEOPLE_NS},
        "rules": [
            {
                "apiGroups": ["botenv.dev"],
                "resources": ["modeltags"],
                "resourceNames": ["production"],
                "verbs": ["get", "patch", "update"],
            },
            {"apiGroups": ["botenv.dev"], "resources": ["modeltags"], "verbs": ["list", "watch"]},
        ],
    }
    kubectl.apply(
        production_only,
        binding("release-managers", "move-production-tag", "release-managers", kind="Role"),
        tag(PEOPLE_NS, "production", "p1.tar.gz"),
        tag(PEOPLE_NS, "experimental", "e1.tar.gz"),
        env(PEOPLE_NS, "production"),
    )
    return {name: Kubectl(control_plane.kubeconfig_for(f"{name}-token")) for name in ("alice",)}


def _patch_tag(who: Kubectl, name: str) -> subprocess.CompletedProcess:
    return who.run(
        "patch",
        "mtag",
        name,
        "-n",
        PEOPLE_NS,
        "--type=merge",
        "-p",
        '{"spec":{"model":"p2.tar.gz"}}',
        check=False,
    )


def test_only_release_managers_move_the_production_tag(people: dict[str, Kubectl]) -> None:
    alice = people["alice"]
    assert _patch_tag(alice, "production").returncode == 0
    denied = _patch_tag(alice, "experimental")
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    # alice cannot touch environments at all
    assert not can(alice, "patch", "botenvironments.botenv.dev", PEOPLE_NS)
