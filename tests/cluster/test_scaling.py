"""Scaling on the real API server and controller manager: `kubectl scale` on an environment,
an HPA that botenv makes (and whose writes to the Deployment's replicas botenv leaves alone),
switching between fixed replicas and autoscaling without dropping pods, disruption budgets
and topology spread, and bad input that names its field while the environment keeps
running."""

from __future__ import annotations

import json

import pytest

from tests.cluster.test_environments import env, tag, wait_degraded
from tests.support.kubectl import CEL_SINCE, condition, eventually
from tests.support.pods import make_ready

pytestmark = pytest.mark.cluster

SHARED = {
    "trackerStore": {"type": "redis", "host": "redis.db"},
    "lockStore": {"type": "redis", "host": "redis.db"},
}
REQUESTS = {"requests": {"cpu": "250m", "memory": "512Mi"}}
AUTO = {"minReplicas": 2, "maxReplicas": 5, "targetCPUUtilizationPercentage": 70}
HANDOVER = "botenv-replicas-handover"
RASA_PODS = "app.kubernetes.io/component=rasa-server,app.kubernetes.io/name=rasa,"
SELECTOR = RASA_PODS + "botenv.dev/environment={}"


@pytest.fixture
def ns(kubectl):
    from tests.cluster.test_environments import _names

    name = f"scale-{next(_names)}"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def deployment(kubectl, ns, name):
    return kubectl.get("deployment", name, ns)


def replicas(kubectl, ns, name):
    return (deployment(kubectl, ns, name) or {}).get("spec", {}).get("replicas")


def hpa(kubectl, ns, name, version="v2"):
    return kubectl.get(f"horizontalpodautoscalers.{version}.autoscaling", name, ns)


def pdb(kubectl, ns, name, version="v1"):
    return kubectl.get(f"poddisruptionbudgets.{version}.policy", name, ns)


def owners_of_replicas(kubectl, ns, name) -> set[str]:
    """The field managers that own the Deployment's spec.replicas."""
    deploy = json.loads(
        kubectl.run(
            "get", "deployment", name, "-n", ns, "-o", "json", "--show-managed-fields"
        ).stdout
    )
    return {
        entry["manager"]
        for entry in deploy["metadata"]["managedFields"]
        if "f:replicas" in (entry.get("fieldsV1") or {}).get("f:spec", {})
    }


def test_kubectl_scale_scales_the_environment(kubectl, operator, ns):
    kubectl.apply(tag(ns, "t", "m.tar.gz"), env(ns, "fleet", modelTag="t", **SHARED))
    eventually(lambda: replicas(kubectl, ns, "rasa-fleet") == 1, message="Deployment")
    kubectl.run("scale", "benv/fleet", "--replicas=3", "-n", ns)
    assert kubectl.get("benv", "fleet", ns)["spec"]["replicas"] == 3
    eventually(lambda: replicas(kubectl, ns, "rasa-fleet") == 3, message="Deployment scaled")
    # The scale subresource names the Rasa pods (an HPA on the environment measures them).
    path = f"/apis/botenv.dev/v1alpha1/namespaces/{ns}/botenvironments/fleet/scale"

    def scale() -> dict:
        return json.loads(kubectl.run("get", "--raw", path).stdout)

    eventually(lambda: scale()["status"].get("selector"), message="status.selector")
    assert scale()["spec"]["replicas"] == 3
    assert scale()["status"]["selector"] == SELECTOR.format("fleet")
    pods = kubectl.list("pods", ns, scale()["status"]["selector"])
    assert {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods} == {"rasa-server"}


def test_an_hpa_can_target_the_environment(kubectl, operator, ns):
    kubectl.apply(
        tag(ns, "t", "m.tar.gz"), env(ns, "target", modelTag="t", resources=REQUESTS, **SHARED)
    )
    eventually(lambda: replicas(kubectl, ns, "rasa-target") == 1, message="Deployment")
    kubectl.apply(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "by-hand", "namespace": ns},
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "botenv.dev/v1alpha1",
                    "kind": "BotEnvironment",
                    "name": "target",
                },
                "minReplicas": 2,
                "maxReplicas": 4,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 80},
                        },
                    }
                ],
            },
        }
    )
    # The controller manager's HPA controller (it syncs every 15 s) raises the environment to
    # minReplicas through its scale subresource; botenv follows with the Deployment.
    eventually(
        lambda: kubectl.get("benv", "target", ns)["spec"]["replicas"] == 2,
        timeout=60,
        message="the HPA scaled the environment",
    )
    eventually(lambda: replicas(kubectl, ns, "rasa-target") == 2, message="Deployment follows")


def test_autoscaling_creates_an_hpa_and_leaves_the_replicas_to_it(kubectl, operator, ns):
    kubectl.apply(
        tag(ns, "t", "m.tar.gz"),
        env(ns, "auto", modelTag="t", resources=REQUESTS, autoscaling=AUTO, **SHARED),
    )
    made = eventually(lambda: hpa(kubectl, ns, "rasa-auto"), message="HPA")
    owner = kubectl.get("benv", "auto", ns)["metadata"]["uid"]
    assert made["metadata"]["ownerReferences"][0]["uid"] == owner
    assert made["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "rasa-auto",
    }
    assert (made["spec"]["minReplicas"], made["spec"]["maxReplicas"]) == (2, 5)
    assert made["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    # The real HPA controller acts: below minReplicas, it scales the Deployment up.
    eventually(
        lambda: replicas(kubectl, ns, "rasa-auto") == 2, timeout=60, message="the HPA scaled up"
    )
    assert "botenv" not in owners_of_replicas(kubectl, ns, "rasa-auto")

    # A change of the Deployment's replicas, as the HPA makes it (the scale subresource),
    # stands across reconciles: botenv writes nothing back.
    operator.settle()
    kubectl.run("scale", "deployment/rasa-auto", "--replicas=4", "-n", ns)
    operator.settle()
    before = operator.writes_in(ns, "rasa-auto")
    operator.resyncs(3)
    assert replicas(kubectl, ns, "rasa-auto") == 4
    assert operator.writes_in(ns, "rasa-auto") == before

    # Children of the environment: garbage-collected with it.
    kubectl.delete("benv", "auto", ns)
    eventually(
        lambda: hpa(kubectl, ns, "rasa-auto") is None and pdb(kubectl, ns, "rasa-auto") is None,
        timeout=60,
        message="HPA and budget garbage-collected",
    )


def test_switching_between_fixed_replicas_and_autoscaling_keeps_the_pods(kubectl, operator, ns):
    kubectl.apply(
        tag(ns, "t", "m.tar.gz"),
        env(ns, "switch", modelTag="t", replicas=3, resources=REQUESTS, **SHARED),
    )
    eventually(lambda: replicas(kubectl, ns, "rasa-switch") == 3, message="3 replicas")
    eventually(lambda: make_ready(kubectl, ns, "botenv.dev/environment=switch") == 3)
    operator.settle()
    generation = deployment(kubectl, ns, "rasa-switch")["metadata"]["generation"]

    # To autoscaling (min 2, max 6): the 3 running pods stay until the HPA acts.
    kubectl.patch("benv", "switch", ns, {"spec": {"autoscaling": {**AUTO, "maxReplicas": 6}}})
    eventually(lambda: hpa(kubectl, ns, "rasa-switch"), message="HPA")
    operator.settle()
    deploy = deployment(kubectl, ns, "rasa-switch")
    assert deploy["spec"]["replicas"] == 3
    # Never changed on the way (a dropped field would have reset it to 1 and back).
    assert deploy["metadata"]["generation"] == generation
    assert owners_of_replicas(kubectl, ns, "rasa-switch") == {HANDOVER}
    assert operator.writes_in(ns, "rasa-switch").get(f"apply Deployment as {HANDOVER}") == 1
    assert condition(kubectl.get("benv", "switch", ns), "Ready")["status"] == "True"

    # The HPA (here: by hand, through the scale subresource, as the HPA does) scales to 5.
    kubectl.run("scale", "deployment/rasa-switch", "--replicas=5", "-n", ns)
    operator.resync_now()
    operator.settle()
    assert replicas(kubectl, ns, "rasa-switch") == 5

    # Back to fixed replicas: spec.replicas is set again, and the HPA goes.
    kubectl.patch("benv", "switch", ns, {"spec": {"autoscaling": None, "replicas": 4}})
    eventually(lambda: hpa(kubectl, ns, "rasa-switch") is None, message="HPA deleted")
    eventually(lambda: replicas(kubectl, ns, "rasa-switch") == 4, message="replicas set again")
    assert "botenv" in owners_of_replicas(kubectl, ns, "rasa-switch")
    assert (
        "botenv.dev/autoscaled" not in deployment(kubectl, ns, "rasa-switch")["metadata"]["labels"]
    )


def test_disruption_budget_and_spread_are_applied_and_follow_the_spec(kubectl, operator, ns):
    kubectl.apply(
        tag(ns, "t", "m.tar.gz"),
        env(
            ns,
            "spread",
            modelTag="t",
            replicas=2,
            actionServer={"image": "acme/actions:1", "replicas": 2},
            **SHARED,
        ),
    )
    budget = eventually(lambda: pdb(kubectl, ns, "rasa-spread"), message="budget")
    deploy = deployment(kubectl, ns, "rasa-spread")
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"] == deploy["spec"]["selector"]
    owner = kubectl.get("benv", "spread", ns)["metadata"]["uid"]
    assert budget["metadata"]["ownerReferences"][0]["uid"] == owner
    actions_budget = eventually(lambda: pdb(kubectl, ns, "rasa-spread-actions"))
    assert actions_budget["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == (
        "action-server"
    )
    # The controller manager's disruption controller counts the pods the budget selects.
    eventually(lambda: make_ready(kubectl, ns, "botenv.dev/environment=spread") == 4)
    eventually(
        lambda: (pdb(kubectl, ns, "rasa-spread").get("status") or {}).get("expectedPods") == 2,
        message="the budget selects the two Rasa pods",
    )
    constraints = deploy["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert [(c["topologyKey"], c["whenUnsatisfiable"], c["maxSkew"]) for c in constraints] == [
        ("kubernetes.io/hostname", "ScheduleAnyway", 1),
        ("topology.kubernetes.io/zone", "ScheduleAnyway", 1),
    ]
    assert all(c["labelSelector"] == deploy["spec"]["selector"] for c in constraints)
    pod = kubectl.list("pods", ns, SELECTOR.format("spread"))[0]
    assert pod["spec"]["topologySpreadConstraints"] == constraints

    # Configured; spread replaced, then off.
    mine = {"maxSkew": 2, "topologyKey": "example.com/rack", "whenUnsatisfiable": "DoNotSchedule"}
    kubectl.patch(
        "benv",
        "spread",
        ns,
        {
            "spec": {
                "disruptionBudget": {"minAvailable": "50%"},
                "topologySpreadConstraints": [mine],
            }
        },
    )
    eventually(
        lambda: pdb(kubectl, ns, "rasa-spread")["spec"].get("minAvailable") == "50%",
        message="budget configured",
    )
    assert "maxUnavailable" not in pdb(kubectl, ns, "rasa-spread")["spec"]
    eventually(
        lambda: (
            deployment(kubectl, ns, "rasa-spread")["spec"]["template"]["spec"][
                "topologySpreadConstraints"
            ]
            == [{**mine, "labelSelector": deploy["spec"]["selector"]}]
        ),
        message="spread replaced",
    )
    kubectl.patch("benv", "spread", ns, {"spec": {"topologySpreadConstraints": []}})
    eventually(
        lambda: (
            "topologySpreadConstraints"
            not in deployment(kubectl, ns, "rasa-spread")["spec"]["template"]["spec"]
        ),
        message="spread off",
    )

    # One replica (and an action server with its budget turned off): no budgets.
    kubectl.patch(
        "benv",
        "spread",
        ns,
        {"spec": {"replicas": 1, "actionServer": {"disruptionBudget": {"enabled": False}}}},
    )
    eventually(
        lambda: (
            pdb(kubectl, ns, "rasa-spread") is None
            and pdb(kubectl, ns, "rasa-spread-actions") is None
        ),
        message="budgets removed",
    )
    operator.settle()
    before = operator.writes
    operator.resyncs(2)
    assert operator.writes == before


def test_bad_autoscaling_names_the_field_and_the_environment_keeps_running(
    control_plane, kubectl, operator, ns
):
    kubectl.apply(tag(ns, "t", "m.tar.gz"), env(ns, "steady", modelTag="t", replicas=2, **SHARED))
    eventually(lambda: replicas(kubectl, ns, "rasa-steady") == 2)
    operator.settle()
    before = deployment(kubectl, ns, "rasa-steady")

    # min above max: refused by the CRD's rule where CEL runs, else reported by botenv.
    change = kubectl.run(
        "patch",
        "benv",
        "steady",
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"autoscaling": {**AUTO, "minReplicas": 6}}}),
        check=False,
    )
    if control_plane.version >= CEL_SINCE:
        assert change.returncode != 0
        assert "spec.autoscaling.maxReplicas: " in change.stderr, change.stderr
        assert "must be at least minReplicas" in change.stderr
    else:
        assert change.returncode == 0, change.stderr
        degraded = wait_degraded(kubectl, ns, "steady", "InvalidSpec")
        assert "spec.autoscaling.maxReplicas: must be at least" in degraded["message"]
        kubectl.patch("benv", "steady", ns, {"spec": {"autoscaling": None}})

    # An unknown metric reaches botenv on every server: it names the field.
    kubectl.patch(
        "benv",
        "steady",
        ns,
        {"spec": {"autoscaling": {**AUTO, "targetGPUUtilizationPercentage": 50}}},
    )
    degraded = wait_degraded(kubectl, ns, "steady", "InvalidSpec")
    assert degraded["message"].startswith(
        "spec.autoscaling.targetGPUUtilizationPercentage: is not a metric botenv scales on"
    )
    operator.settle()
    # Nothing was applied: the same Deployment spec, its replicas still botenv's, no HPA.
    after = deployment(kubectl, ns, "rasa-steady")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"]["replicas"] == 2
    assert "botenv.dev/autoscaled" not in after["metadata"]["labels"]
    assert owners_of_replicas(kubectl, ns, "rasa-steady") == {"botenv"}
    assert hpa(kubectl, ns, "rasa-steady") is None


@pytest.mark.compat
def test_hpa_and_budget_use_the_api_versions_the_server_serves(
    control_plane, kubectl, operator, ns
):
    """autoscaling/v2 and policy/v1 where the server serves them, else (1.20)
    autoscaling/v2beta2 and policy/v1beta1; an idle reconcile still writes nothing."""
    old = control_plane.version < (1, 21)
    hpa_version, pdb_version = ("v2beta2", "v1beta1") if old else ("v2", "v1")
    kubectl.apply(
        tag(ns, "t", "m.tar.gz"),
        env(ns, "versions", modelTag="t", resources=REQUESTS, autoscaling=AUTO, **SHARED),
    )
    made = eventually(lambda: hpa(kubectl, ns, "rasa-versions", hpa_version), message="HPA")
    budget = eventually(lambda: pdb(kubectl, ns, "rasa-versions", pdb_version), message="budget")
    applied_as = {
        (entry["manager"], entry["apiVersion"])
        for obj in (made, budget)
        for entry in json.loads(
            kubectl.run(
                "get",
                f"{obj['kind'].lower()}s.{obj['apiVersion'].split('/')[1]}."
                f"{obj['apiVersion'].split('/')[0]}",
                obj["metadata"]["name"],
                "-n",
                ns,
                "-o",
                "json",
                "--show-managed-fields",
            ).stdout
        )["metadata"]["managedFields"]
        if entry["manager"] == "botenv"
    }
    assert applied_as == {
        ("botenv", f"autoscaling/{hpa_version}"),
        ("botenv", f"policy/{pdb_version}"),
    }
    eventually(
        lambda: replicas(kubectl, ns, "rasa-versions") == 2,
        timeout=60,
        message="the HPA scaled up",
    )
    assert kubectl.get("benv", "versions", ns)["status"]["selector"] == SELECTOR.format("versions")
    operator.settle()
    before = operator.writes
    operator.resyncs(3)
    assert operator.writes == before
