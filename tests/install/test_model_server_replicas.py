"""The model server as the chart runs it: two replicas by default behind its Service, each
with its own cache, spread over nodes where it can be, a disruption budget that lets a drain
take one at a time (where the server serves PodDisruptionBudgets: never in
manifests/install.yaml, which must apply on 1.20; shipped for kubectl users as
manifests/model-server-pdb.yaml), and a shutdown that leaves the Service before it stops
answering. tests/e2e/test_model_server_replicas.py kills a replica under real Rasa pulls."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.install.conftest import find, template_args
from tests.support.helm import REPO_ROOT

pytestmark = pytest.mark.install

NAME = "botenv-model-server"
TEMPLATE = "templates/model-server-pdb.yaml"
SERVED_V1 = ("--api-versions", "policy/v1/PodDisruptionBudget")
SERVED_V1BETA1 = ("--api-versions", "policy/v1beta1/PodDisruptionBudget")


def pod_of(objects: list[dict]) -> dict:
    return find(objects, "Deployment", NAME)["spec"]["template"]["spec"]


def budgets(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] == "PodDisruptionBudget"]


def test_two_replicas_by_default_each_with_its_own_cache(render):
    objects = render()
    deployment = find(objects, "Deployment", NAME)
    assert deployment["spec"]["replicas"] == 2
    pod = pod_of(objects)
    (container,) = pod["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    cache = {v["name"]: v for v in pod["volumes"]}[mounts["/var/cache/botenv/models"]]
    # An emptyDir is each pod's own: a digest is downloaded once per replica.
    assert cache == {"name": "cache", "emptyDir": {"sizeLimit": "12Gi"}}
    assert "strategy" not in deployment["spec"]  # rolling: one replica serves while another rolls
    # Out of the Service while it cannot serve: catalog not loaded yet, or stopping.
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


def test_replicas_prefer_different_nodes_without_requiring_them(render):
    objects = render()
    selector = find(objects, "Deployment", NAME)["spec"]["selector"]["matchLabels"]
    affinity = pod_of(objects)["affinity"]
    assert list(affinity) == ["podAntiAffinity"]
    assert list(affinity["podAntiAffinity"]) == ["preferredDuringSchedulingIgnoredDuringExecution"]
    (term,) = affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term == {
        "weight": 100,
        "podAffinityTerm": {
            "topologyKey": "kubernetes.io/hostname",
            "labelSelector": {"matchLabels": selector},
        },
    }

    zones = render(
        "botenv",
        "botenv-system",
        None,
        "--set",
        "modelServer.antiAffinityTopologyKey=topology.kubernetes.io/zone",
    )
    (term,) = pod_of(zones)["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["podAffinityTerm"]["topologyKey"] == "topology.kubernetes.io/zone"

    off = render("botenv", "botenv-system", None, "--set", "modelServer.antiAffinityTopologyKey=")
    assert "affinity" not in pod_of(off)
    single = render("botenv", "botenv-system", None, "--set", "modelServer.replicas=1")
    assert "affinity" not in pod_of(single)
    # An affinity of the user's own replaces the preference entirely.
    own = render(
        "botenv",
        "botenv-system",
        None,
        "--set-json",
        'modelServer.affinity={"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":'
        '{"nodeSelectorTerms":[{"matchExpressions":[{"key":"pool","operator":"In",'
        '"values":["models"]}]}]}}}',
    )
    assert list(pod_of(own)["affinity"]) == ["nodeAffinity"]


def test_a_budget_lets_one_replica_go_at_a_time_where_the_server_serves_it(render):
    assert not budgets(render())  # helm template without a server: like 1.20, no guess
    for served, version in ((SERVED_V1, "policy/v1"), (SERVED_V1BETA1, "policy/v1beta1")):
        objects = render("botenv", "botenv-system", None, *served)
        (budget,) = budgets(objects)
        assert budget["apiVersion"] == version
        assert budget["metadata"]["name"] == NAME
        assert budget["metadata"]["namespace"] == "botenv-system"
        assert budget["spec"] == {
            "maxUnavailable": 1,
            "selector": find(objects, "Deployment", NAME)["spec"]["selector"],
        }
    one = render("botenv", "botenv-system", None, *SERVED_V1, "--set", "modelServer.replicas=1")
    assert not budgets(one)  # a budget of one replica would block every drain
    off = render(
        "botenv",
        "botenv-system",
        None,
        *SERVED_V1,
        "--set",
        "modelServer.podDisruptionBudget=false",
    )
    assert not budgets(off)
    (forced,) = budgets(
        render("botenv", "botenv-system", None, "--set", "modelServer.podDisruptionBudget=true")
    )
    assert forced["apiVersion"] == "policy/v1"
    install = yaml.safe_load_all((REPO_ROOT / "manifests" / "install.yaml").read_text())
    assert not budgets([d for d in install if d])


def test_kubectl_users_get_the_same_budget(helm):
    shipped = yaml.safe_load_all((REPO_ROOT / "manifests" / "model-server-pdb.yaml").read_text())
    rendered = helm(
        *template_args(
            "botenv", "botenv-system", None, "--set", "modelServer.podDisruptionBudget=true"
        ),
        "--show-only",
        TEMPLATE,
    ).stdout
    assert [d for d in shipped if d] == [d for d in yaml.safe_load_all(rendered) if d]


def test_the_budget_passes_the_upstream_schema(tmp_path):
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("kubernetes-validate")), "--strict", "-k", "1.37.0"]
        + [str(REPO_ROOT / "manifests" / "model-server-pdb.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_stopping_replica_leaves_the_service_before_it_stops_answering(render):
    objects = render()
    pod = pod_of(objects)
    args = pod["containers"][0]["args"]
    delay = int(args[args.index("--shutdown-delay") + 1])
    assert delay == 5
    # Room for the delay and for the downloads in progress to finish.
    assert pod["terminationGracePeriodSeconds"] == delay + 30
    longer = render("botenv", "botenv-system", None, "--set", "modelServer.shutdownDelaySeconds=20")
    args = pod_of(longer)["containers"][0]["args"]
    assert args[args.index("--shutdown-delay") + 1] == "20"
    assert pod_of(longer)["terminationGracePeriodSeconds"] == 50


def test_one_claim_cannot_be_the_cache_of_several_replicas(helm):
    proc = helm(
        *template_args("botenv", "x", None, "--set", "modelServer.cache.existingClaim=model-cache"),
        check=False,
    )
    assert proc.returncode != 0
    assert "modelServer.cache.existingClaim" in proc.stderr, proc.stderr
    assert "modelServer.replicas" in proc.stderr, proc.stderr
    one = helm(
        *template_args(
            "botenv",
            "x",
            None,
            "--set",
            "modelServer.cache.existingClaim=model-cache",
            "--set",
            "modelServer.replicas=1",
        ),
    )
    assert "claimName: model-cache" in one.stdout


@pytest.mark.parametrize(
    ("setting", "field", "why"),
    [
        ("modelServer.podDisruptionBudget=maybe", "modelServer.podDisruptionBudget", "one of"),
        ("modelServer.shutdownDelaySeconds=-1", "modelServer.shutdownDelaySeconds", "greater"),
        ("modelServer.shutdownDelaySeconds=1.5", "modelServer.shutdownDelaySeconds", "integer"),
        (
            "modelServer.antiAffinityTopologyKey=a b",
            "modelServer.antiAffinityTopologyKey",
            "pattern",
        ),
    ],
)
def test_the_values_schema_knows_the_settings(helm, setting, field, why):
    proc = helm(*template_args("botenv", "x", None, "--set", setting), check=False)
    assert proc.returncode != 0
    assert f"- {field}: " in proc.stderr and why in proc.stderr, proc.stderr


@pytest.mark.cluster
@pytest.mark.compat
def test_helm_picks_the_budget_version_the_server_serves(helm, control_plane, kubectl):
    """helm install (here --dry-run=server) renders policy/v1 from 1.21 on, v1beta1 on 1.20."""
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "install-pdb"}})
    proc = helm(
        "install",
        "pdb",
        str(REPO_ROOT / "helm" / "botenv"),
        "--namespace",
        "install-pdb",
        "--dry-run=server",
        "--kubeconfig",
        str(control_plane.kubeconfig),
    )
    manifest = proc.stdout.split("MANIFEST:", 1)[1].split("NOTES:", 1)[0]
    (budget,) = budgets([d for d in yaml.safe_load_all(manifest) if d])
    assert budget["apiVersion"] == (
        "policy/v1" if control_plane.version >= (1, 21) else "policy/v1beta1"
    )
