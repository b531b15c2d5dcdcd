"""Pod settings of an environment on the real API server: volumes, mounts, init containers,
sidecars, extra `rasa run` flags, probe timings, a priority class, the grace period and the
preStop pause reach the Deployment, and the API server and the controller manager accept it
(its ReplicaSet creates the pod). A spec that reaches over what botenv owns is refused: by the
CRD's CEL rules at `kubectl apply` on servers that enforce them, else by the operator, which
reports the field and keeps the running environment as it was."""

from __future__ import annotations

import pytest

from tests.cluster.test_cel_rules import _env, _operator_problems
from tests.cluster.test_environments import _names, deployment, env, tag, wait_degraded
from tests.support.kubectl import CEL_SINCE, Kubectl, condition, eventually

pytestmark = pytest.mark.cluster

SETTINGS = {
    "volumes": [
        {"name": "addons", "configMap": {"name": "tracker-store-module"}},
        {"name": "shared", "emptyDir": {}},
    ],
    "volumeMounts": [{"name": "addons", "mountPath": "/opt/addons", "readOnly": True}],
    "initContainers": [
        {
            "name": "prepare",
            "image": "busybox:1.36",
            "command": ["sh", "-c", "echo ready > /shared/flag"],
            "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
        }
    ],
    "sidecars": [
        {
            "name": "log-shipper",
            "image": "fluent/fluent-bit:3.0",
            "volumeMounts": [{"name": "botenv-work", "mountPath": "/rasa", "readOnly": True}],
        }
    ],
    "extraArgs": ["--debug", "--log-file", "/var/lib/rasa/rasa.log"],
    "probes": {"startup": {"periodSeconds": 10, "failureThreshold": 180}},
    "priorityClassName": "bots-critical",
    "terminationGracePeriodSeconds": 60,
    "preStopSleepSeconds": 15,
}


@pytest.fixture
def ns(kubectl: Kubectl) -> str:
    name = f"tuned-{next(_names)}"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


PRIORITY_CLASS = {
    "apiVersion": "scheduling.k8s.io/v1",
    "kind": "PriorityClass",
    "metadata": {"name": "bots-critical"},
    "value": 1000000,
}


def test_pod_settings_reach_the_deployment_and_its_pods(kubectl: Kubectl, operator, ns) -> None:
    kubectl.apply(
        PRIORITY_CLASS, tag(ns, "t", "m.tar.gz"), env(ns, "tuned", modelTag="t", **SETTINGS)
    )
    dep = eventually(lambda: deployment(kubectl, ns, "tuned"), message="Deployment")
    pod = dep["spec"]["template"]["spec"]
    rasa, shipper = pod["containers"]
    assert (rasa["name"], shipper["name"]) == ("rasa", "log-shipper")
    assert pod["initContainers"][0]["name"] == "prepare"
    assert rasa["args"][-3:] == SETTINGS["extraArgs"]
    assert {"name": "addons", "mountPath": "/opt/addons", "readOnly": True} in rasa["volumeMounts"]
    assert {v["name"] for v in pod["volumes"]} >= {"addons", "shared", "botenv-work", "botenv-tmp"}
    assert rasa["startupProbe"]["periodSeconds"] == 10
    assert rasa["startupProbe"]["failureThreshold"] == 180
    assert rasa["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "15"]
    assert (pod["priorityClassName"], pod["terminationGracePeriodSeconds"]) == ("bots-critical", 60)
    # The controller manager made a pod of it, and the Priority admission resolved the class.
    (made,) = eventually(
        lambda: kubectl.list("pods", ns, "botenv.dev/environment=tuned"), message="pod"
    )
    assert made["spec"]["priority"] == 1000000
    assert [c["name"] for c in made["spec"]["initContainers"]] == ["prepare"]
    benv = kubectl.get("benv", "tuned", ns)
    assert condition(benv, "Degraded").get("status") != "True"


BROKEN = {
    "sidecar-named-rasa": (
        {"sidecars": [{"name": "rasa", "image": "x:1"}]},
        "spec.sidecars[0].name",
        "is the Rasa container's name",
    ),
    "init-container-named-rasa": (
        {"initContainers": [{"name": "rasa", "image": "x:1"}]},
        "spec.initContainers[0].name",
        "is the Rasa container's name",
    ),
    "volume-named-like-botenvs": (
        {"volumes": [{"name": "rasa-config", "emptyDir": {}}]},
        "spec.volumes[0].name",
        "is a volume botenv defines for this pod",
    ),
    "mount-over-the-endpoints-file": (
        {
            "volumes": [{"name": "v", "emptyDir": {}}],
            "volumeMounts": [{"name": "v", "mountPath": "/etc/botenv/rasa"}],
        },
        "spec.volumeMounts[0].mountPath",
        "is on a path botenv mounts",
    ),
    "mount-above-botenvs-paths": (
        {
            "volumes": [{"name": "v", "emptyDir": {}}],
            "volumeMounts": [{"name": "v", "mountPath": "/etc"}],
        },
        "spec.volumeMounts[0].mountPath",
        "is on a path botenv mounts",
    ),
    "extra-args-set-the-port": (
        {"extraArgs": ["--debug", "--port=8080"]},
        "spec.extraArgs[1]",
        "botenv sets",
    ),
    "extra-args-abbreviate-the-endpoints": (
        {"extraArgs": ["--endp", "/x.yml"]},
        "spec.extraArgs[0]",
        "botenv sets",
    ),
    "extra-args-short-model-flag": (
        {"extraArgs": ["-m", "model.tar.gz"]},
        "spec.extraArgs[0]",
        "botenv sets",
    ),
    "prestop-longer-than-the-grace-period": (
        {"terminationGracePeriodSeconds": 10, "preStopSleepSeconds": 10},
        "spec.preStopSleepSeconds",
        "must be less than terminationGracePeriodSeconds",
    ),
    "action-server-sidecar-named-like-its-container": (
        {"actionServer": {"image": "a:1", "sidecars": [{"name": "action-server", "image": "x"}]}},
        "spec.actionServer.sidecars[0].name",
        "is the action server container's name",
    ),
    "action-server-mount-over-tmp": (
        {
            "actionServer": {
                "image": "a:1",
                "volumes": [{"name": "v", "emptyDir": {}}],
                "volumeMounts": [{"name": "v", "mountPath": "/tmp"}],
            }
        },
        "spec.actionServer.volumeMounts[0].mountPath",
        "is on a path botenv mounts",
    ),
}


@pytest.mark.parametrize(("spec", "field", "expected"), BROKEN.values(), ids=BROKEN.keys())
def test_what_botenv_owns_is_refused_at_apply_naming_the_field(
    control_plane, kubectl: Kubectl, ns, spec: dict, field: str, expected: str
) -> None:
    """The CRD's CEL rules (1.25+) and the operator's own check name the same field."""
    obj = _env("owned", **spec)
    obj["metadata"]["namespace"] = ns
    assert f"{field}: " in _operator_problems(obj)
    if control_plane.version < CEL_SINCE:
        pytest.skip("this server does not enforce CEL rules: the operator's check is above")
    proc = kubectl.apply(obj, check=False, server_validation_only=True)
    assert proc.returncode != 0, f"the API server accepted {obj}"
    assert f"{field}: " in proc.stderr and expected in proc.stderr, proc.stderr


@pytest.mark.compat
def test_a_volume_mount_over_botenvs_config_degrades_and_keeps_the_running_pods(
    control_plane, kubectl: Kubectl, operator, ns
) -> None:
    """What the CRD cannot refuse (1.20; or a mount naming no volume, everywhere) the operator
    reports, naming the field, and the running environment keeps its Deployment as it was."""
    kubectl.apply(tag(ns, "t", "m.tar.gz"), env(ns, "steady", modelTag="t"))
    before = eventually(lambda: deployment(kubectl, ns, "steady"), message="Deployment")
    change = {"spec": {"volumeMounts": [{"name": "nowhere", "mountPath": "/opt/addons"}]}}
    if control_plane.version < CEL_SINCE:
        change["spec"]["volumes"] = [{"name": "v", "emptyDir": {}}]
        change["spec"]["volumeMounts"].append({"name": "v", "mountPath": "/etc/botenv/rasa"})
    kubectl.patch("benv", "steady", ns, change)
    degraded = wait_degraded(kubectl, ns, "steady", "InvalidSpec")
    assert (
        "spec.volumeMounts[0].name: 'nowhere' is not a volume in spec.volumes"
        in degraded["message"]
    )
    if control_plane.version < CEL_SINCE:
        assert "spec.volumeMounts[1].mountPath: '/etc/botenv/rasa'" in degraded["message"]
    after = deployment(kubectl, ns, "steady")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"]["template"] == before["spec"]["template"]
    # Fixing the spec applies it.
    kubectl.patch(
        "benv",
        "steady",
        ns,
        {
            "spec": {
                "volumes": [{"name": "v", "emptyDir": {}}],
                "volumeMounts": [{"name": "v", "mountPath": "/opt/addons"}],
            }
        },
    )
    eventually(
        lambda: (
            {"name": "v", "mountPath": "/opt/addons"}
            in deployment(kubectl, ns, "steady")["spec"]["template"]["spec"]["containers"][0][
                "volumeMounts"
            ]
        ),
        message="the fixed spec applied",
    )
    eventually(
        lambda: condition(kubectl.get("benv", "steady", ns), "Degraded")["status"] == "False"
    )
