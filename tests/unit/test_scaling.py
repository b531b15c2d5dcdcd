"""Autoscaling, disruption budgets and topology spread: what the spec accepts (errors name
the field), what botenv renders, and the writes one reconcile asks for when a fleet switches
between fixed replicas and an HPA."""

from __future__ import annotations

import asyncio

import pytest

from botenv.api import SpecError, parse_environment
from botenv.controller import environment
from botenv.render import autoscaling
from tests.unit.builders import DEFAULT_IMAGE
from tests.unit.builders import environment as body
from tests.unit.reconcile_fakes import FakeKube, state
from tests.unit.test_reconcile_environment import resolved

SHARED = {
    "trackerStore": {"type": "redis", "host": "redis.db"},
    "lockStore": {"type": "redis", "host": "redis.db"},
}
AUTO = {"minReplicas": 2, "maxReplicas": 5, "targetCPUUtilizationPercentage": 70}
RASA = "rasa-production"
ACTIONS = "rasa-production-actions"


def problems(**spec: object) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_environment(body(**spec), DEFAULT_IMAGE)
    return info.value.problems


def parsed(**spec: object):
    return parse_environment(body(**spec), DEFAULT_IMAGE)


# -- the spec ---------------------------------------------------------------------------


def test_autoscaling_is_parsed_with_its_targets_and_behavior():
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 600}}
    auto = parsed(
        **SHARED,
        autoscaling={**AUTO, "targetMemoryUtilizationPercentage": 80, "behavior": behavior},
    ).scaling.autoscaling
    assert auto is not None
    assert (auto.min_replicas, auto.max_replicas) == (2, 5)
    assert auto.targets == (("cpu", 70), ("memory", 80))
    assert auto.behavior == behavior
    # minReplicas defaults to 1, as an HPA's does
    one = parsed(autoscaling={"maxReplicas": 1, "targetCPUUtilizationPercentage": 50})
    assert one.scaling.autoscaling is not None and one.scaling.autoscaling.min_replicas == 1


@pytest.mark.parametrize(
    ("autoscaling", "field", "says"),
    [
        ({**AUTO, "minReplicas": 6}, "spec.autoscaling.maxReplicas", "at least"),
        ({**AUTO, "minReplicas": 0}, "spec.autoscaling.minReplicas", "at least 1"),
        ({**AUTO, "targetGPUUtilizationPercentage": 50}, "spec.autoscaling.targetGPU", "metric"),
        ({"minReplicas": 1, "maxReplicas": 3}, "spec.autoscaling", "needs a target"),
        ({"targetCPUUtilizationPercentage": 50}, "spec.autoscaling.maxReplicas", "required"),
        ({**AUTO, "targetCPUUtilizationPercentage": 0}, "spec.autoscaling.targetCPU", "at least"),
    ],
)
def test_bad_autoscaling_names_the_field(autoscaling, field, says):
    [problem] = problems(**SHARED, autoscaling=autoscaling)
    assert problem.startswith(field), problem
    assert says in problem


def test_the_action_servers_autoscaling_is_checked_under_its_own_path():
    [problem] = problems(actionServer={"image": "a:1", "autoscaling": {**AUTO, "maxReplicas": 1}})
    assert problem.startswith("spec.actionServer.autoscaling.maxReplicas: must be at least")


def test_autoscaling_above_one_replica_needs_shared_stores():
    found = problems(autoscaling=AUTO)
    assert [p.split(":")[0] for p in found] == ["spec.lockStore", "spec.trackerStore"]
    assert "when spec.autoscaling.maxReplicas > 1 (got 5 replicas)" in found[0]
    # at most one replica: nothing to share
    parsed(autoscaling={**AUTO, "minReplicas": 1, "maxReplicas": 1})


@pytest.mark.parametrize(
    ("budget", "field"),
    [
        ({"maxUnavailable": 1, "minAvailable": 1}, "spec.disruptionBudget.minAvailable"),
        ({"maxUnavailable": "half"}, "spec.disruptionBudget.maxUnavailable"),
        ({"minAvailable": -1}, "spec.disruptionBudget.minAvailable"),
        ({"enabled": "yes"}, "spec.disruptionBudget.enabled"),
    ],
)
def test_bad_disruption_budget_names_the_field(budget, field):
    [problem] = problems(disruptionBudget=budget)
    assert problem.startswith(f"{field}: "), problem


@pytest.mark.parametrize(
    ("constraint", "field"),
    [
        ({"maxSkew": 1, "whenUnsatisfiable": "ScheduleAnyway"}, "[0].topologyKey"),
        ({"topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}, "[0].maxSkew"),
        ({"topologyKey": "zone", "maxSkew": 1, "whenUnsatisfiable": "Maybe"}, "[0].when"),
    ],
)
def test_bad_spread_constraint_names_the_field(constraint, field):
    [problem] = problems(topologySpreadConstraints=[constraint])
    assert problem.startswith(f"spec.topologySpreadConstraints{field}"), problem


# -- one reconcile ----------------------------------------------------------------------


def reconcile(kube: FakeKube, env: dict, *children: dict) -> None:
    asyncio.run(
        environment.reconcile(
            state(kube, environments=(env,), tags=(resolved(),), children=children),
            "bots",
            "production",
        )
    )


def applied(kube: FakeKube, kind: str, name: str = RASA) -> dict:
    [obj] = [o for o in kube.written("apply", kind) if o["metadata"]["name"] == name]
    return obj


def live(obj: dict, **spec: object) -> dict:
    """`obj` as the API server would hold it after botenv applied it."""
    out = {**obj, "metadata": {**obj["metadata"], "resourceVersion": "41"}}
    out["spec"] = {**obj["spec"], **spec}
    return out


def test_autoscaling_renders_an_hpa_and_leaves_replicas_to_it():
    kube = FakeKube()
    reconcile(kube, body(**SHARED, replicas=3, autoscaling=AUTO))
    deploy = applied(kube, "Deployment")
    assert "replicas" not in deploy["spec"]
    assert deploy["metadata"]["labels"][autoscaling.AUTOSCALED_LABEL] == "true"
    hpa = applied(kube, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["metadata"]["ownerReferences"] == deploy["metadata"]["ownerReferences"]
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": RASA},
        "minReplicas": 2,
        "maxReplicas": 5,
        "metrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 70},
                },
            }
        ],
    }
    # A new Deployment has no replicas to keep: nothing to hand over.
    assert [w for w in kube.writes if w[0].startswith("apply as")] == []


def test_a_server_without_autoscaling_v2_gets_v2beta2_and_policy_v1beta1():
    kube = FakeKube(served=("autoscaling/v1", "autoscaling/v2beta2", "policy/v1beta1"))
    reconcile(kube, body(**SHARED, autoscaling=AUTO))
    assert applied(kube, "HorizontalPodAutoscaler")["apiVersion"] == "autoscaling/v2beta2"
    assert applied(kube, "PodDisruptionBudget")["apiVersion"] == "policy/v1beta1"


def test_switching_a_running_deployment_to_autoscaling_hands_its_replicas_over_first():
    kube = FakeKube()
    reconcile(kube, body(**SHARED, replicas=3))
    running = live(applied(kube, "Deployment"))
    assert running["spec"]["replicas"] == 3
    [token] = kube.written("create", "Secret")

    kube = FakeKube()
    reconcile(kube, body(**SHARED, replicas=3, autoscaling=AUTO), running, token)
    writes = [(verb, kind) for verb, kind, *_ in kube.writes if kind != "BotEnvironment"]
    handover = (f"apply as {autoscaling.HANDOVER_MANAGER}", "Deployment")
    assert writes.index(handover) == writes.index(("apply", "Deployment")) - 1
    [body_] = kube.written(handover[0], "Deployment")
    # the replicas it runs with, and only if it is still the Deployment botenv saw
    assert body_["spec"] == {"replicas": 3}
    assert body_["metadata"]["resourceVersion"] == "41"

    # Once autoscaled, the HPA's replicas stand: no handover, and no write at all.
    now = live(applied(kube, "Deployment"), replicas=4)
    hpa, pdb = (live(applied(kube, k)) for k in ("HorizontalPodAutoscaler", "PodDisruptionBudget"))
    kube = FakeKube()
    reconcile(kube, body(**SHARED, replicas=3, autoscaling=AUTO), now, hpa, pdb, token)
    scaled = {"Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    assert [w for w in kube.writes if w[0].startswith("apply") and w[1] in scaled] == []


def test_a_stopped_deployment_switched_to_autoscaling_starts_at_min_replicas():
    kube = FakeKube()
    reconcile(kube, body(**SHARED, replicas=0))
    stopped = live(applied(kube, "Deployment"))
    kube = FakeKube()
    reconcile(kube, body(**SHARED, replicas=0, autoscaling=AUTO), stopped)
    [handover] = kube.written(f"apply as {autoscaling.HANDOVER_MANAGER}", "Deployment")
    assert handover["spec"] == {"replicas": 2}


def test_switching_back_sets_replicas_again_and_deletes_the_hpa():
    kube = FakeKube()
    reconcile(kube, body(**SHARED, autoscaling=AUTO))
    running = live(applied(kube, "Deployment"), replicas=4)
    hpa = live(applied(kube, "HorizontalPodAutoscaler"))
    kube = FakeKube()
    reconcile(kube, body(**SHARED, replicas=3), running, hpa)
    deploy = applied(kube, "Deployment")
    assert deploy["spec"]["replicas"] == 3
    assert autoscaling.AUTOSCALED_LABEL not in deploy["metadata"]["labels"]
    assert ("delete", "HorizontalPodAutoscaler", "bots", RASA, {}) in kube.writes


def test_a_budget_exists_while_more_than_one_replica_can_run():
    kube = FakeKube()
    reconcile(kube, body(**SHARED, replicas=2))
    pdb = applied(kube, "PodDisruptionBudget")
    deploy = applied(kube, "Deployment")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"] == {"selector": deploy["spec"]["selector"], "maxUnavailable": 1}
    assert pdb["metadata"]["ownerReferences"] == deploy["metadata"]["ownerReferences"]

    # configurable
    kube = FakeKube()
    reconcile(kube, body(**SHARED, replicas=2, disruptionBudget={"minAvailable": "50%"}))
    assert applied(kube, "PodDisruptionBudget")["spec"]["minAvailable"] == "50%"
    assert "maxUnavailable" not in applied(kube, "PodDisruptionBudget")["spec"]

    # one replica, or turned off: none, and an existing one is deleted
    for spec in ({"replicas": 1}, {"replicas": 2, "disruptionBudget": {"enabled": False}}):
        kube = FakeKube()
        reconcile(kube, body(**SHARED, **spec), live(pdb))
        assert kube.written("apply", "PodDisruptionBudget") == []
        assert ("delete", "PodDisruptionBudget", "bots", RASA, {}) in kube.writes

    # autoscaling that may run more than one replica needs one too
    kube = FakeKube()
    reconcile(kube, body(**SHARED, autoscaling={**AUTO, "minReplicas": 1}))
    assert applied(kube, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_pods_spread_over_nodes_and_zones_unless_the_spec_says_otherwise():
    kube = FakeKube()
    reconcile(kube, body())
    deploy = applied(kube, "Deployment")
    selector = deploy["spec"]["selector"]
    assert deploy["spec"]["template"]["spec"]["topologySpreadConstraints"] == [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": selector,
        }
        for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
    ]
    mine = {"maxSkew": 2, "topologyKey": "rack", "whenUnsatisfiable": "DoNotSchedule"}
    kube = FakeKube()
    reconcile(kube, body(topologySpreadConstraints=[mine]))
    assert applied(kube, "Deployment")["spec"]["template"]["spec"]["topologySpreadConstraints"] == [
        {**mine, "labelSelector": selector}
    ]  # its own pods, unless the spec names others
    # off: applied as an empty list, which removes what botenv applied before
    kube = FakeKube()
    reconcile(kube, body(topologySpreadConstraints=[]))
    pod = applied(kube, "Deployment")["spec"]["template"]["spec"]
    assert pod["topologySpreadConstraints"] == []


def test_the_action_server_scales_on_its_own():
    server = {"image": "acme/actions:1", "autoscaling": {**AUTO, "maxReplicas": 3}}
    kube = FakeKube()
    reconcile(kube, body(actionServer=server))
    actions = applied(kube, "Deployment", ACTIONS)
    assert "replicas" not in actions["spec"]
    hpa = applied(kube, "HorizontalPodAutoscaler", ACTIONS)
    assert hpa["spec"]["scaleTargetRef"]["name"] == ACTIONS
    pdb = applied(kube, "PodDisruptionBudget", ACTIONS)
    assert pdb["spec"]["selector"] == actions["spec"]["selector"]
    spread = actions["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {c["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] for c in spread} == {
        "action-server"
    }
    # Rasa itself runs one fixed replica: no HPA, no budget.
    assert [o["metadata"]["name"] for o in kube.written("apply", "HorizontalPodAutoscaler")] == [
        ACTIONS
    ]

    # Removing the action server removes its HPA and budget too.
    kube_after = FakeKube()
    reconcile(
        kube_after,
        body(),
        live(actions, replicas=2),
        live(hpa),
        live(pdb),
    )
    deleted = {(kind, name) for verb, kind, _, name, _ in kube_after.writes if verb == "delete"}
    assert {("HorizontalPodAutoscaler", ACTIONS), ("PodDisruptionBudget", ACTIONS)} <= deleted


def test_an_invalid_autoscaling_spec_writes_nothing_but_the_status():
    kube = FakeKube()
    reconcile(kube, body(**SHARED, replicas=2))
    running = live(applied(kube, "Deployment"))
    kube = FakeKube()
    reconcile(kube, body(**SHARED, replicas=2, autoscaling={**AUTO, "minReplicas": 9}), running)
    assert [verb for verb, *_ in kube.writes if verb not in ("status", "event")] == []
    [status] = kube.written("status", "BotEnvironment")
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "InvalidSpec"
    assert "spec.autoscaling.maxReplicas: must be at least" in degraded["message"]


def test_the_status_names_the_rasa_pods_for_the_scale_subresource():
    kube = FakeKube()
    reconcile(kube, body())
    [status] = kube.written("status", "BotEnvironment")
    assert status["selector"] == (
        "app.kubernetes.io/component=rasa-server,app.kubernetes.io/name=rasa,"
        "botenv.dev/environment=production"
    )


def test_a_field_dropped_from_the_spec_is_applied_away():
    """What botenv applies holds no dropped field, so the HPA carries its spec's hash: a
    changed hash makes the apply that removes the field."""
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 600}}
    kube = FakeKube()
    reconcile(kube, body(**SHARED, autoscaling={**AUTO, "behavior": behavior}))
    [token] = kube.written("create", "Secret")
    running = live(applied(kube, "HorizontalPodAutoscaler"))
    assert running["spec"]["behavior"] == behavior
    kube = FakeKube()
    reconcile(kube, body(**SHARED, autoscaling=AUTO), running, token)
    assert "behavior" not in applied(kube, "HorizontalPodAutoscaler")["spec"]
