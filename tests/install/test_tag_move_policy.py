"""The chart's ValidatingAdmissionPolicy for tag moves (rbac.tagMovePolicy): rendered where
the server serves admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy (Kubernetes
1.30+), never into manifests/install.yaml (which must apply on 1.20), valid against the
upstream schema, and shipped for kubectl users as manifests/tag-move-policy.yaml.
tests/cluster/test_tag_move_rbac.py shows what it refuses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.install.conftest import template_args
from tests.support.helm import REPO_ROOT

pytestmark = pytest.mark.install

TEMPLATE = "templates/admission-policy-tag-moves.yaml"
SERVED = ("--api-versions", "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy")


def kinds(helm, *extra: str) -> list[str]:
    proc = helm(*template_args("botenv", "botenv-system", None, *extra), check=False)
    return [d["kind"] for d in yaml.safe_load_all(proc.stdout) if d]


def test_auto_renders_the_policy_only_where_the_server_serves_it(helm):
    policy = ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    assert not set(policy) & set(kinds(helm))  # helm template, no server: like 1.20
    assert [k for k in kinds(helm, *SERVED) if k in policy] == policy
    assert not set(policy) & set(kinds(helm, *SERVED, "--set", "rbac.tagMovePolicy=false"))
    assert [k for k in kinds(helm, "--set", "rbac.tagMovePolicy=true") if k in policy] == policy
    install = (REPO_ROOT / "manifests" / "install.yaml").read_text()
    assert "ValidatingAdmissionPolicy" not in install


def test_a_namespace_list_binds_the_policy_to_those_namespaces(helm):
    out = helm(
        *template_args("botenv", "botenv-system", "namespaces.yaml", *SERVED),
        "--show-only",
        TEMPLATE,
    ).stdout
    binding = [d for d in yaml.safe_load_all(out) if d][1]
    (expression,) = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
    watched = yaml.safe_load((Path(__file__).parent / "values" / "namespaces.yaml").read_text())
    assert expression["key"] == "kubernetes.io/metadata.name"
    assert expression["values"] == watched["watch"]["namespaces"]


def test_the_policy_passes_the_upstream_schema(helm, tmp_path):
    out = helm(*template_args("botenv", "botenv-system", None, *SERVED), "--show-only", TEMPLATE)
    path = tmp_path / "policy.yaml"
    path.write_text(out.stdout)
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("kubernetes-validate")), "--strict", "-k", "1.37.0"]
        + [str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_kubectl_users_get_the_same_policy(helm):
    shipped = yaml.safe_load_all((REPO_ROOT / "manifests" / "tag-move-policy.yaml").read_text())
    rendered = helm(
        *template_args("botenv", "botenv-system", None, "--set", "rbac.tagMovePolicy=true"),
        "--show-only",
        TEMPLATE,
    ).stdout
    assert [d for d in shipped if d] == [d for d in yaml.safe_load_all(rendered) if d]


def test_the_values_schema_knows_the_setting(helm):
    proc = helm(
        *template_args("botenv", "x", None, "--set", "rbac.tagMovePolicy=maybe"), check=False
    )
    assert proc.returncode != 0
    assert "rbac.tagMovePolicy" in proc.stderr and "must be one of" in proc.stderr


@pytest.mark.cluster
def test_helm_asks_the_server(helm, control_plane, kubectl):
    """helm install (here --dry-run=server) renders it where the API server serves it."""
    served = control_plane.version >= (1, 30)
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "install-vap"}})
    proc = helm(
        "install",
        "vap",
        str(REPO_ROOT / "helm" / "botenv"),
        "--namespace",
        "install-vap",
        "--dry-run=server",
        "--kubeconfig",
        str(control_plane.kubeconfig),
    )
    assert ("kind: ValidatingAdmissionPolicyBinding" in proc.stdout) == served
