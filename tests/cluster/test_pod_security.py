"""Pod Security admission, for real, on the current control plane: a namespace labelled
`pod-security.kubernetes.io/enforce=restricted` admits a pod that meets the `restricted`
standard and refuses one that does not.

Every pod botenv creates meets it: the Rasa pods of an environment, its action server's and
a training Job's pods are admitted in such a namespace. What a user adds is still held to
it: a privileged sidecar gets the environment's pods refused (FailedCreate), naming it.

Kubernetes 1.20 has no Pod Security admission (it came in 1.22, GA in 1.25): there
tests/unit/test_pod_security.py checks every control of the standard on the rendered pods.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.cluster.test_environments import _names, deployment, env, tag
from tests.cluster.test_training import project, training
from tests.support.kubectl import Kubectl, eventually
from tests.support.pods import make_ready

pytestmark = pytest.mark.cluster

POD_SECURITY_SINCE = (1, 25)
# What the restricted standard asks of every container (and the pod), as the admission says it.
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _enforcing(control_plane, kubectl: Kubectl, level: str) -> Iterator[str]:
    if control_plane.version < POD_SECURITY_SINCE:
        pytest.skip(
            "Pod Security admission is GA from Kubernetes 1.25; this server is "
            f"{'.'.join(map(str, control_plane.version))}"
        )
    name = f"{level}-{next(_names)}"
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {
                    "pod-security.kubernetes.io/enforce": level,
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            },
        }
    )
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def restricted_ns(control_plane, kubectl: Kubectl) -> Iterator[str]:
    """A namespace that enforces the `restricted` Pod Security Standard."""
    yield from _enforcing(control_plane, kubectl, "restricted")


@pytest.fixture
def baseline_ns(control_plane, kubectl: Kubectl) -> Iterator[str]:
    """A namespace that enforces the `baseline` Pod Security Standard."""
    yield from _enforcing(control_plane, kubectl, "baseline")


def _pod(ns: str, name: str, security: dict | None) -> dict:
    container: dict = {"name": "app", "image": "registry.invalid/app:1"}
    if security is not None:
        container["securityContext"] = security
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"containers": [container]},
    }


def test_a_pod_meeting_restricted_is_admitted(kubectl: Kubectl, restricted_ns: str) -> None:
    proc = kubectl.apply(_pod(restricted_ns, "compliant", RESTRICTED_CONTAINER), check=False)
    assert proc.returncode == 0, proc.stderr
    assert kubectl.get("pod", "compliant", restricted_ns) is not None


def test_a_pod_violating_restricted_is_refused(kubectl: Kubectl, restricted_ns: str) -> None:
    proc = kubectl.apply(_pod(restricted_ns, "plain", None), check=False)
    assert proc.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in proc.stderr, proc.stderr
    for violation in (
        "allowPrivilegeEscalation != false",
        "unrestricted capabilities",
        "runAsNonRoot != true",
        "seccompProfile",
    ):
        assert violation in proc.stderr, proc.stderr
    assert kubectl.get("pod", "plain", restricted_ns) is None
    # One setting short is enough to be refused.
    almost = {k: v for k, v in RESTRICTED_CONTAINER.items() if k != "seccompProfile"}
    proc = kubectl.apply(_pod(restricted_ns, "almost", almost), check=False)
    assert proc.returncode != 0
    assert "seccompProfile" in proc.stderr and "runAsNonRoot" not in proc.stderr, proc.stderr


def _failed_creates(kubectl: Kubectl, ns: str) -> list[dict]:
    events = json.loads(kubectl.run("get", "events", "-n", ns, "-o", "json").stdout)["items"]
    return [
        e
        for e in events
        if e.get("reason") == "FailedCreate" and e["involvedObject"]["kind"] == "ReplicaSet"
    ]


def _pods(kubectl: Kubectl, ns: str, selector: str) -> list[dict]:
    return kubectl.list("pods", ns, selector)


def test_rasa_action_server_and_training_pods_are_admitted_in_a_restricted_namespace(
    kubectl: Kubectl, operator, restricted_ns: str
) -> None:
    ns = restricted_ns
    kubectl.apply(
        tag(ns, "t", "m.tar.gz"),
        env(
            ns,
            "guarded",
            modelTag="t",
            actionServer={"image": "registry.example.com/acme-actions:1.4"},
            initContainers=[{"name": "prepare", "image": "busybox:1.36"}],
            sidecars=[{"name": "log-shipper", "image": "fluent/fluent-bit:3.0"}],
        ),
        project(ns),
        training(ns, tag=""),
    )
    actions = eventually(
        lambda: _pods(kubectl, ns, "app.kubernetes.io/component=action-server"),
        timeout=60,
        message="the action server's pod admitted",
    )
    # The Rasa Deployment rolls once its action server is ready (no kubelet here).
    make_ready(kubectl, ns, "app.kubernetes.io/component=action-server")
    rasa = eventually(
        lambda: _pods(kubectl, ns, "app.kubernetes.io/component=rasa-server"),
        timeout=60,
        message="the Rasa pod admitted",
    )
    jobs = eventually(
        lambda: _pods(kubectl, ns, "job-name=train-nightly"),
        timeout=60,
        message="the training pod admitted",
    )
    assert _failed_creates(kubectl, ns) == []
    for pod in (*actions, *rasa, *jobs):
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True, pod["metadata"]["name"]
    assert [c["name"] for c in rasa[0]["spec"]["containers"]] == ["rasa", "log-shipper"]
    # The operator's own objects were admitted too: Pod Security applies to pods only.
    assert deployment(kubectl, ns, "guarded") is not None


def test_a_privileged_sidecar_is_still_refused_naming_it(
    kubectl: Kubectl, operator, restricted_ns: str
) -> None:
    ns = restricted_ns
    kubectl.apply(
        tag(ns, "t", "m.tar.gz"),
        env(
            ns,
            "loose",
            modelTag="t",
            sidecars=[
                {
                    "name": "debugger",
                    "image": "busybox:1.36",
                    "securityContext": {"privileged": True},
                }
            ],
        ),
    )
    events = eventually(
        lambda: _failed_creates(kubectl, ns),
        timeout=60,
        message="FailedCreate events of the ReplicaSet",
    )
    message = events[0]["message"]
    assert 'violates PodSecurity "restricted:latest"' in message, message
    assert 'privileged (container "debugger"' in message, message
    assert '"rasa"' not in message, message
    (rs,) = kubectl.list("replicasets", ns, "botenv.dev/environment=loose")
    failure = next(c for c in rs["status"].get("conditions", []) if c["type"] == "ReplicaFailure")
    assert failure["reason"] == "FailedCreate"
    assert kubectl.list("pods", ns) == []


def test_rasa_pods_are_admitted_in_a_baseline_namespace(
    kubectl: Kubectl, operator, baseline_ns: str
) -> None:
    ns = baseline_ns
    kubectl.apply(tag(ns, "t", "m.tar.gz"), env(ns, "plain", modelTag="t"))
    eventually(
        lambda: kubectl.list("pods", ns, "botenv.dev/environment=plain"),
        timeout=60,
        message="the Rasa pod admitted",
    )
    assert _failed_creates(kubectl, ns) == []
