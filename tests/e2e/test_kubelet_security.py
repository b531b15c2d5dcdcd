"""The test kubelet holds the security settings it can (botenv.local.node.security): it
refuses runAsNonRoot that cannot hold as a kubelet does, and gives a container with a
read-only root filesystem only its mounts as writable places (its working directory, $HOME
and $TMPDIR are its volumes, or read-only directories of its own), reporting what is
written where a real node would refuse it. The tiny image starts in milliseconds."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest

from tests.e2e.kubelet_fixtures import (
    TINY_PORT,
    http,
    pods,
    python,
    tiny_deployment,
    tiny_job,
    wait_available,
    wait_job,
)
from tests.support.kubectl import eventually

pytestmark = pytest.mark.e2e

NAMED_USER_IMAGE = "registry.example.test/named-user:1"


def _waiting(kubectl, ns: str, app: str) -> dict | None:
    for pod in pods(kubectl, ns, app):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs["state"].get("waiting", {}).get("reason") == "CreateContainerConfigError":
                return {"pod": pod, "state": cs["state"]["waiting"]}
    return None


def test_run_as_non_root_is_checked_as_the_kubelet_does(
    kubectl, kubelet, kubelet_ns, tiny_image
) -> None:
    ns = kubelet_ns
    kubelet.images[NAMED_USER_IMAGE] = dataclasses.replace(tiny_image, user="rasa")
    try:
        kubectl.apply(
            # runAsUser 0 on the pod, runAsNonRoot on the container
            tiny_deployment(
                ns,
                "uid-zero",
                pod={"securityContext": {"runAsUser": 0}},
                container={"securityContext": {"runAsNonRoot": True}},
            ),
            # the image's own user is root (the tiny image has no USER)
            tiny_deployment(ns, "image-root", pod={"securityContext": {"runAsNonRoot": True}}),
            tiny_deployment(
                ns,
                "image-named",
                image=NAMED_USER_IMAGE,
                pod={"securityContext": {"runAsNonRoot": True}},
            ),
            tiny_deployment(
                ns,
                "non-root",
                pod={"securityContext": {"runAsNonRoot": True, "runAsUser": 1001}},
            ),
        )
        expected = {
            "uid-zero": "container's runAsUser breaks non-root policy",
            "image-root": "container has runAsNonRoot and image will run as root",
            "image-named": (
                "container has runAsNonRoot and image has non-numeric user (rasa), cannot "
                "verify user is non-root"
            ),
        }
        for app, message in expected.items():
            found = eventually(lambda a=app: _waiting(kubectl, ns, a), message=f"{app} refused")
            pod = found["pod"]["metadata"]
            assert found["state"]["message"] == (
                f'{message} (pod: "{pod["name"]}_{ns}({pod["uid"]})", container: web)'
            )
        wait_available(kubectl, ns, "non-root")
        (process,) = kubelet.processes(ns)
        assert (process.pod.startswith("non-root-"), process.user) == (True, 1001)
        events = [e for e in kubectl.list("events", ns) if e["reason"] == "Failed"]
        assert any("breaks non-root policy" in e["message"] for e in events)
    finally:
        kubelet.images.pop(NAMED_USER_IMAGE, None)


def test_a_read_only_root_filesystem_writes_only_to_its_mounts(
    kubectl, kubelet, kubelet_ns
) -> None:
    ns = kubelet_ns
    kubectl.apply(
        tiny_deployment(
            ns,
            "sealed",
            container={
                "workingDir": "/work",
                "env": [{"name": "HOME", "value": "/work"}],
                "securityContext": {"readOnlyRootFilesystem": True},
                "volumeMounts": [
                    {"name": "work", "mountPath": "/work"},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
            },
            pod={"volumes": [{"name": "work", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]},
        )
    )
    wait_available(kubectl, ns, "sealed")
    (pod,) = pods(kubectl, ns, "sealed")
    volumes = kubelet.pod_dir(ns, pod["metadata"]["name"]) / "volumes"
    code, seen = http("GET", f"http://{pod['status']['podIP']}:{TINY_PORT}/env")
    assert code == 200
    assert Path(seen["cwd"]) == volumes / "work"
    assert Path(seen["env"]["HOME"]) == volumes / "work"
    assert Path(seen["env"]["TMPDIR"]) == volumes / "tmp"
    (process,) = kubelet.processes(ns)
    assert process.read_only_root and process.root_writes == ()


def test_writes_outside_the_mounts_are_refused_or_reported(kubectl, kubelet, kubelet_ns) -> None:
    """Without volumes, the working directory, $HOME and $TMPDIR are read-only directories
    of the container's own. A process that is not root is refused there (as a real node
    refuses it: EROFS); root passes the mode, and the node reports each write."""
    ns = kubelet_ns
    kubectl.apply(
        tiny_job(
            ns,
            "scribble",
            containers=[
                {
                    "name": "writer",
                    "command": python(
                        "import os, tempfile\n"
                        "print('cwd', os.getcwd(), oct(os.stat('.').st_mode & 0o777))\n"
                        "open('note.txt', 'w').write('x')\n"
                        "tempfile.mkstemp(prefix='scratch-')\n"
                    ),
                    "securityContext": {"readOnlyRootFilesystem": True},
                }
            ],
        )
    )
    if os.geteuid() != 0:
        job = wait_job(kubectl, ns, "scribble", "Failed")
        assert job is not None
        (pod,) = kubectl.list("pods", ns, "app=scribble")
        log = kubelet.logs(ns, pod["metadata"]["name"], "writer")
        assert "Permission denied" in log and "note.txt" in log, log
        return
    wait_job(kubectl, ns, "scribble")
    (pod,) = kubectl.list("pods", ns, "app=scribble")
    log = kubelet.logs(ns, pod["metadata"]["name"], "writer")
    cwd = Path(log.split()[1])
    assert cwd == kubelet.pod_dir(ns, pod["metadata"]["name"]) / "rootfs" / "writer"
    assert "0o555" in log
    events = eventually(
        lambda: [e for e in kubectl.list("events", ns) if e["reason"] == "ReadOnlyRootFilesystem"],
        message="the writes reported",
    )
    message = " ".join(e["message"] for e in events)
    assert events[0]["type"] == "Warning"
    assert "/note.txt" in message and "/tmp/scratch-" in message, message


def test_a_writable_root_filesystem_is_left_alone(kubectl, kubelet, kubelet_ns) -> None:
    ns = kubelet_ns
    kubectl.apply(tiny_deployment(ns, "plain"))
    wait_available(kubectl, ns, "plain")
    (process,) = kubelet.processes(ns)
    assert not process.read_only_root
    assert process.user == 0  # the tiny image's (it has no USER): the node runs it as itself
    assert stat.S_IMODE(os.stat(process.cwd).st_mode) & 0o200
