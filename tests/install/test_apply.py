"""The chart against the real API server (tests/cluster's control plane): Helm checks neither
Kubernetes fields nor RBAC, so every rendered object is applied for real, the controller
manager turns both Deployments into pods (pod validation and admission included), and a real
`helm install` / `upgrade` / `uninstall` runs."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.install.conftest import template_args
from tests.support.helm import CHART, REPO_ROOT
from tests.support.kubectl import CEL_SINCE, eventually

pytestmark = [pytest.mark.install, pytest.mark.cluster]

CRD_TYPED_KINDS = {"ServiceMonitor", "PrometheusRule"}  # no CRDs for them in this cluster


def namespace(kubectl, name: str) -> None:
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def exists(kubectl, obj: dict) -> dict:
    meta = obj["metadata"]
    kind = (
        f"{obj['kind'].lower()}.{obj['apiVersion'].split('/')[0]}"
        if "/" in obj["apiVersion"]
        else obj["kind"].lower()
    )
    args = ["get", kind, meta["name"], "-o", "json"]
    if meta.get("namespace"):
        args += ["-n", meta["namespace"]]
    return json.loads(kubectl.run(*args).stdout)


def pods_of(kubectl, namespace: str, instance: str) -> list[dict]:
    return kubectl.list("pods", namespace, f"app.kubernetes.io/instance={instance}")


def check_applied(kubectl, objects: list[dict], namespace: str, instance: str) -> None:
    """Every object is on the server as rendered, and both Deployments have their pods."""
    for obj in objects:
        live = exists(kubectl, obj)
        if obj["kind"] in ("ClusterRole", "Role"):
            assert [{k: v for k, v in r.items() if v} for r in live["rules"]] == obj["rules"]
    replicas = sum(o["spec"]["replicas"] for o in objects if o["kind"] == "Deployment")
    assert replicas >= 2
    # The ReplicaSets' pods: created means they passed pod validation and admission
    # (service account present, security context accepted). No kubelet runs them here.
    pods = eventually(
        lambda: (p := pods_of(kubectl, namespace, instance)) and len(p) == replicas and p,
        timeout=60,
        message=f"{replicas} pods of {instance} in {namespace}",
    )
    for pod in pods:
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert pod["spec"]["serviceAccountName"].endswith(("-operator", "-model-server", "-custom"))


@pytest.mark.parametrize(
    ("release", "values", "watched"),
    [
        ("rendered", None, []),
        ("scoped", "namespaces.yaml", ["install-team-a", "install-team-b"]),
        ("full", "full.yaml", ["install-full-a"]),
    ],
)
def test_every_rendered_object_applies(kubectl, helm, release, values, watched):
    ns = f"install-{release}"
    for name in [ns, *watched]:
        namespace(kubectl, name)
    if values == "full.yaml":  # the priorityClassName it sets must exist for its pods
        kubectl.apply(
            {
                "apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass",
                "metadata": {"name": "install-test-priority"},
                "value": 1000,
            }
        )
    rendered = helm(*template_args(release, ns, values)).stdout
    objects = [d for d in yaml.safe_load_all(rendered) if d]
    skipped = [o for o in objects if o["kind"] in CRD_TYPED_KINDS]
    applied = [o for o in objects if o["kind"] not in CRD_TYPED_KINDS]
    # full.yaml: both ServiceMonitors and the PrometheusRule
    assert len(skipped) == (3 if values == "full.yaml" else 0)
    proc = kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump_all(applied))
    assert proc.stdout.count("\n") == len(applied), proc.stdout
    check_applied(kubectl, applied, ns, release)


@pytest.mark.compat
def test_install_yaml_applies(kubectl, control_plane):
    """`kubectl apply -f manifests/install.yaml` on a cluster: the README's first way (with
    --validate=false before 1.25, where the CRDs' CEL rules are an unknown field)."""
    path = REPO_ROOT / "manifests" / "install.yaml"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    validate = ["--validate=false"] if control_plane.version < CEL_SINCE else []
    kubectl.run("apply", *validate, "-f", str(path))
    kubectl.run(
        "wait",
        "--for=condition=Established",
        "crd/botenvironments.botenv.dev",
        "crd/modeltags.botenv.dev",
        "crd/modeltrainings.botenv.dev",
        "--timeout=60s",
    )
    check_applied(kubectl, docs, "botenv-system", "botenv")
    # Applying again changes nothing.
    crds = [f"crd/{d['metadata']['name']}" for d in docs if d["kind"] == "CustomResourceDefinition"]

    def versions() -> list[str]:
        out = kubectl.run("get", *crds, "-o", "jsonpath={.items[*].metadata.resourceVersion}")
        return out.stdout.split()

    before = versions()
    again = kubectl.run("apply", *validate, "-f", str(path)).stdout
    lines = again.splitlines()
    if control_plane.version < CEL_SINCE:
        # kubectl sends the rules again (the server dropped them), so it says "configured"
        # for the CRDs, but the server writes nothing.
        lines = [line for line in lines if not line.startswith("customresourcedefinition")]
        assert versions() == before
    assert all(line.endswith("unchanged") for line in lines), again


@pytest.mark.compat
def test_helm_install_upgrade_uninstall(kubectl, helm, control_plane):
    """A real Helm release on the real API server, watching a list of namespaces."""
    kubeconfig = ["--kubeconfig", str(control_plane.kubeconfig)]
    ns, watched = "install-helm", "install-helm-a"
    namespace(kubectl, watched)
    # A bad value fails the install before anything is sent, naming the field.
    bad = helm(
        "install",
        "release",
        str(CHART),
        "--namespace",
        ns,
        "--create-namespace",
        "--set",
        "watch.namespaces=install-helm-a",
        *kubeconfig,
        check=False,
    )
    assert bad.returncode != 0
    assert "- watch.namespaces: Invalid type. Expected: array, given: string" in bad.stderr
    install = helm(
        "install",
        "release",
        str(CHART),
        "--namespace",
        ns,
        "--create-namespace",
        "--set",
        f"watch.namespaces={{{watched}}}",
        *kubeconfig,
    )
    assert "STATUS: deployed" in install.stdout
    # NOTES.txt tells the user what to apply next.
    notes = install.stdout.split("NOTES:", 1)[1]
    assert f"It serves BotEnvironments and ModelTags in: {watched}." in notes
    assert f"kubectl get benv,mtag -n {watched}" in notes
    assert "manifests/samples/" in notes and "create secret generic s3-credentials" in notes
    assert "http://release-botenv-model-server.install-helm.svc:8080" in notes

    manifest = helm("get", "manifest", "release", "--namespace", ns, *kubeconfig).stdout
    objects = [d for d in yaml.safe_load_all(manifest) if d]
    check_applied(kubectl, objects, ns, "release")
    assert exists(
        kubectl,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "release-botenv-operator", "namespace": watched},
        },
    )

    helm(
        "upgrade",
        "release",
        str(CHART),
        "--namespace",
        ns,
        "--reuse-values",
        "--set",
        "operator.replicas=2",
        *kubeconfig,
    )
    deployment = exists(
        kubectl,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "release-botenv-operator", "namespace": ns},
        },
    )
    assert deployment["spec"]["replicas"] == 2

    # A bad value fails the upgrade before anything is sent, naming the field.
    bad = helm(
        "upgrade",
        "release",
        str(CHART),
        "--namespace",
        ns,
        "--reuse-values",
        "--set",
        "operator.replicas=two",
        *kubeconfig,
        check=False,
    )
    assert bad.returncode != 0 and "operator.replicas" in bad.stderr, bad.stderr

    helm("uninstall", "release", "--namespace", ns, *kubeconfig)
    gone = kubectl.run("get", "clusterrole", "release-botenv-operator", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    # The CRDs (and so every user's resources) stay: Helm never deletes crds/.
    kubectl.run("get", "crd", "modeltags.botenv.dev")
