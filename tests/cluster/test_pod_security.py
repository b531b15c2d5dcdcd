"""Pod Security admission, for real, on the current control plane: a namespace labelled
`pod-security.kubernetes.io/enforce=restricted` admits a pod that meets the `restricted`
standard and refuses one that does not.

Today's Rasa pods do not meet it: a BotEnvironment's Deployment in such a namespace gets a
ReplicaSet whose pods are refused (FailedCreate), and the admission names each missing
setting. test_todays_rasa_pods_are_refused_in_a_restricted_namespace records that state;
when the Rasa pods meet `restricted`, it is the test to turn around. Under the `baseline`
standard they are admitted.

Kubernetes 1.20 has no Pod Security admission (it came in 1.22, GA in 1.25)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.cluster.test_environments import _names, deployment, env, tag
from tests.support.kubectl import Kubectl, eventually

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


def test_todays_rasa_pods_are_refused_in_a_restricted_namespace(
    kubectl: Kubectl, operator, restricted_ns: str
) -> None:
    ns = restricted_ns
    kubectl.apply(tag(ns, "t", "m.tar.gz"), env(ns, "guarded", modelTag="t"))
    # The operator's own objects are admitted: Pod Security applies to pods only.
    eventually(lambda: deployment(kubectl, ns, "guarded"), message="Deployment")
    events = eventually(
        lambda: _failed_creates(kubectl, ns),
        timeout=60,
        message="FailedCreate events of the ReplicaSet",
    )
    message = events[0]["message"]
    assert 'violates PodSecurity "restricted:latest"' in message, message
    # Today's Rasa container sets none of the restricted settings.
    for violation in (
        'allowPrivilegeEscalation != false (container "rasa"',
        'unrestricted capabilities (container "rasa"',
        "runAsNonRoot != true",
        "seccompProfile",
    ):
        assert violation in message, message
    (rs,) = kubectl.list("replicasets", ns, "botenv.dev/environment=guarded")
    failure = next(c for c in rs["status"].get("conditions", []) if c["type"] == "ReplicaFailure")
    assert failure["reason"] == "FailedCreate"
    assert "violates PodSecurity" in failure["message"]
    assert kubectl.list("pods", ns) == []


def test_todays_rasa_pods_are_admitted_in_a_baseline_namespace(
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
