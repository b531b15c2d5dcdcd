"""Pod settings and restricted security with a real Rasa 3.6.21 (test kubelet), the operator
and the model server as installed, and S3 (moto).

One environment loads its model from S3 itself (delivery remoteStorage: Rasa downloads the
archive into its working directory) under botenv's restricted defaults: user 1001,
runAsNonRoot, a read-only root filesystem with emptyDirs for its working directory, HOME and
/tmp. Beside it, an init container writes a custom tracker store module into a volume that is
mounted into the Rasa container (the use Rasa's tracker store documentation describes), and a
sidecar serves Rasa's log file (`--log-file`, from extraArgs) out of Rasa's working
directory. Rasa loads its model, imports the store and answers through it.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.kubelet_fixtures import TINY_IMAGE, TINY_PORT, http, python
from tests.support.emulators import MotoServer
from tests.support.kubectl import Kubectl, condition, eventually
from tests.support.kubelet import TestKubelet
from tests.support.rasa import train, write_project

pytestmark = [pytest.mark.e2e, pytest.mark.rasa]

NS = "e2e-pod-settings"
BUCKET = "models"
ANSWER = "Hello from a pod with sidecars."
PRIORITY = "bots-critical"
# The custom tracker store an init container writes into the addons volume: an in-memory
# store that says it was loaded and notes each conversation it saves, next to itself.
STORE = """\
import logging, os
from rasa.core.tracker_store import InMemoryTrackerStore

class Store(InMemoryTrackerStore):
    def __init__(self, domain=None, host=None, event_broker=None, **kwargs):
        logging.getLogger(__name__).warning("acme store loaded from %s", __file__)
        super().__init__(domain, event_broker, **kwargs)

    async def save(self, tracker):
        with open(os.path.join(os.path.dirname(__file__), "senders.txt"), "a") as f:
            f.write(tracker.sender_id + "\\n")
        await super().save(tracker)
"""


@pytest.fixture(scope="module")
def setup(
    kubectl: Kubectl, kubelet: TestKubelet, botenv: dict, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("pod-settings")
    model = train(
        write_project(root / "project", intents={"greet": ["hello"]}, responses={"greet": ANSWER}),
        root / "out",
        "sidecars",
    )
    with MotoServer(root / "moto") as s3:
        s3.bucket(BUCKET, [model])
        kubectl.apply(
            *s3.tag_objects(NS, "production", model.name, BUCKET),
            {
                "apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass",
                "metadata": {"name": PRIORITY},
                "value": 1000,
            },
            environment(),
        )
        began = time.monotonic()
        eventually(lambda: ready(kubectl), timeout=300, interval=1, message="Ready")
        took = time.monotonic() - began
        print(f"\ne2e timing: Ready with an init container and a sidecar: {took:.1f} s")
        yield {"model": model}
        kubectl.run("delete", "priorityclass", PRIORITY, "--wait=false", check=False)


def environment() -> dict:
    return {
        "apiVersion": "botenv.dev/v1alpha1",
        "kind": "BotEnvironment",
        "metadata": {"name": "production", "namespace": NS},
        "spec": {
            "delivery": "remoteStorage",
            "trackerStore": {"type": "custom", "class": "acme_store.Store"},
            "env": [{"name": "PYTHONPATH", "value": "/opt/addons"}],
            "volumes": [{"name": "addons", "emptyDir": {}}],
            "volumeMounts": [{"name": "addons", "mountPath": "/opt/addons"}],
            "initContainers": [
                {
                    "name": "install-store",
                    "image": TINY_IMAGE,
                    "command": python(
                        f"open('/opt/addons/acme_store.py', 'w').write({STORE!r})\n"
                        "open('/rasa/greeting.txt', 'w').write('prepared by the init container')"
                    ),
                    "volumeMounts": [
                        {"name": "addons", "mountPath": "/opt/addons"},
                        {"name": "botenv-work", "mountPath": "/rasa"},
                    ],
                }
            ],
            "sidecars": [
                {
                    "name": "files",
                    "image": TINY_IMAGE,
                    "ports": [{"name": "files", "containerPort": TINY_PORT}],
                    "env": [{"name": "SERVE_DIR", "value": "/rasa"}],
                    "volumeMounts": [
                        {"name": "botenv-work", "mountPath": "/rasa", "readOnly": True}
                    ],
                }
            ],
            "extraArgs": ["--log-file", "/var/lib/rasa/rasa.log"],
            "probes": {"startup": {"periodSeconds": 2, "failureThreshold": 150}},
            "priorityClassName": PRIORITY,
            "terminationGracePeriodSeconds": 20,
            "preStopSleepSeconds": 3,
        },
    }


def ready(kubectl: Kubectl) -> bool:
    body = kubectl.get("benv", "production", NS) or {}
    return condition(body, "Ready").get("status") == "True"


def rasa_pod(kubectl: Kubectl) -> dict:
    (pod,) = [
        p
        for p in kubectl.list("pods", NS, "botenv.dev/environment=production")
        if not p["metadata"].get("deletionTimestamp")
    ]
    return pod


def say(ip: str, sender: str, text: str = "hello") -> list[str]:
    request = urllib.request.Request(
        f"http://{ip}:5005/webhooks/rest/webhook",
        data=json.dumps({"sender": sender, "message": text}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return [m.get("text", "") for m in json.load(response)]


def test_rasa_answers_beside_an_init_container_and_a_sidecar(kubectl, kubelet, setup) -> None:
    pod = rasa_pod(kubectl)
    ip = pod["status"]["podIP"]
    assert say(ip, "first-visitor") == [ANSWER]

    # The init container ran first, and exited 0.
    (init,) = pod["status"]["initContainerStatuses"]
    assert (init["name"], init["state"]["terminated"]["exitCode"]) == ("install-store", 0)
    statuses = {c["name"]: c for c in pod["status"]["containerStatuses"]}
    assert statuses["rasa"]["ready"] and statuses["files"]["ready"]
    assert pod["spec"]["priority"] == 1000

    # Rasa imported the store from the volume (PYTHONPATH) and saved the conversation in it.
    addons = kubelet.pod_dir(NS, pod["metadata"]["name"]) / "volumes" / "addons"
    assert "first-visitor" in (addons / "senders.txt").read_text().split()
    # The sidecar serves what the init container left and Rasa's --log-file, both in Rasa's
    # working directory.
    files = f"http://{ip}:{TINY_PORT}"
    assert http("GET", f"{files}/greeting.txt")[1] == "prepared by the init container"
    code, log = http("GET", f"{files}/rasa.log")
    assert code == 200 and "acme store loaded from" in log, log


def test_rasa_runs_under_the_restricted_settings(kubectl, kubelet, setup) -> None:
    pod = rasa_pod(kubectl)
    spec = pod["spec"]
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert spec["automountServiceAccountToken"] is False
    rasa = spec["containers"][0]
    assert rasa["securityContext"]["readOnlyRootFilesystem"] is True
    assert rasa["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "3"]

    # The node ran it as the settings say: as 1001, with only its mounts writable.
    (process,) = [p for p in kubelet.processes(NS) if p.container == "rasa"]
    volumes = kubelet.pod_dir(NS, pod["metadata"]["name"]) / "volumes"
    assert process.user == 1001 and process.read_only_root
    assert Path(process.cwd) == volumes / "botenv-work"
    assert Path(process.home) == volumes / "botenv-work"
    assert Path(process.tmpdir) == volumes / "botenv-tmp"
    # remoteStorage downloaded the archive into the working directory, an emptyDir.
    assert (volumes / "botenv-work" / setup["model"].name).is_file()
    assert process.root_writes == ()
    assert not [e for e in kubectl.list("events", NS) if e["reason"] == "ReadOnlyRootFilesystem"]
    assert say(pod["status"]["podIP"], "second-visitor") == [ANSWER]
