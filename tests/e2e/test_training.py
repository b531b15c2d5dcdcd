"""Training in the cluster, for real: `botenv train` sends a tiny project, the operator's Job
trains it with Rasa 3.6.21 (test kubelet), uploads it to S3 (moto) with botenv's own image,
moves the experimental tag, and the experimental environment answers with the new model.
A project with a broken domain fails with Rasa's error in status and moves nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.support.emulators import MotoServer
from tests.support.kubectl import Kubectl, condition, eventually
from tests.support.kubelet import TestKubelet
from tests.support.rasa import train, write_project

pytestmark = [pytest.mark.e2e, pytest.mark.rasa]

NS = "e2e-training"
BUCKET = "trained-models"
FIRST = "Hello from the model we started with."
TRAINED = "Hello from the model trained in the cluster."


@pytest.fixture(scope="module")
def setup(
    kubectl: Kubectl, kubelet: TestKubelet, botenv: dict, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("training")
    first = train(
        write_project(root / "first", intents={"greet": ["hello"]}, responses={"greet": FIRST}),
        root / "out",
        "first",
    )
    with MotoServer(root / "moto") as s3:
        client = s3.bucket(BUCKET, [first], prefix="bots/")
        kubectl.apply(
            # `botenv train --tag experimental` moves it
            *s3.tag_objects(
                NS, "experimental", first.name, BUCKET, "bots/", trainings={"allowed": True}
            ),
            {
                "apiVersion": "botenv.dev/v1alpha1",
                "kind": "BotEnvironment",
                "metadata": {"name": "experimental", "namespace": NS},
                "spec": {"pullIntervalSeconds": 2},
            },
        )
        eventually(
            lambda: ready(kubectl),
            timeout=240,
            interval=1,
            message="experimental Ready on the first model",
        )
        yield {"root": root, "first": first, "client": client}


def ready(kubectl: Kubectl) -> bool:
    body = kubectl.get("benv", "experimental", NS) or {}
    return condition(body, "Ready").get("status") == "True"


def say(kubectl: Kubectl, text: str = "hello") -> list[str]:
    pods = [
        p
        for p in kubectl.list(
            "pods",
            NS,
            "botenv.dev/environment=experimental,app.kubernetes.io/component=rasa-server",
        )
        if condition(p, "Ready").get("status") == "True"
        and not p["metadata"].get("deletionTimestamp")
    ]
    assert pods
    request = urllib.request.Request(
        f"http://{pods[0]['status']['podIP']}:5005/webhooks/rest/webhook",
        data=json.dumps({"sender": "trainer", "message": text}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return [m.get("text", "") for m in json.load(response)]


def botenv_cli(
    kubectl: Kubectl, *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOTENV_")}
    env["KUBECONFIG"] = str(kubectl.kubeconfig)
    return subprocess.run(
        [sys.executable, "-m", "botenv", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_a_trained_model_reaches_the_experimental_environment(kubectl, setup) -> None:
    assert say(kubectl) == [FIRST]
    project = write_project(
        setup["root"] / "project", intents={"greet": ["hello"]}, responses={"greet": TRAINED}
    )
    began = time.monotonic()
    proc = botenv_cli(
        kubectl, "train", str(project), "--tag", "experimental", "-n", NS, "--name", "nightly"
    )
    trained_after = time.monotonic() - began
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Training" in proc.stdout and "Succeeded" in proc.stdout

    status = kubectl.get("mtrain", "nightly", NS)["status"]
    model = status["modelName"]
    assert (status["phase"], status["tag"]) == ("Succeeded", "experimental")
    stored = setup["client"].head_object(Bucket=BUCKET, Key=f"bots/{model}")
    assert stored["ETag"].strip('"') == status["digest"]
    assert kubectl.get("mtag", "experimental", NS)["spec"]["model"] == model

    eventually(
        lambda: ready(kubectl) and say(kubectl) == [TRAINED],
        timeout=240,
        interval=1,
        message="experimental answers with the trained model",
    )
    served = kubectl.get("benv", "experimental", NS)["status"]["servedModels"]
    # The model server names the file after the content: the pod reports the digest too.
    assert served == [{"name": model, "digest": status["digest"], "replicas": 1}]
    print(
        f"\ne2e timing: train + upload + tag move: {trained_after:.1f} s; until the "
        f"environment answers with it: {time.monotonic() - began:.1f} s"
    )


def test_a_broken_project_fails_with_rasas_error_and_moves_nothing(kubectl, setup) -> None:
    before = kubectl.get("mtag", "experimental", NS)["spec"]["model"]
    project = write_project(
        setup["root"] / "broken", intents={"greet": ["hello"]}, responses={"greet": "never"}
    )
    (project / "domain.yml").write_text("version: '3.1'\nintents: [greet\nresponses: {\n")
    proc = botenv_cli(
        kubectl, "train", str(project), "--tag", "experimental", "-n", NS, "--name", "broken"
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    status = kubectl.get("mtrain", "broken", NS)["status"]
    assert status["phase"] == "Failed"
    assert status["reason"] == "TrainingFailed", status
    assert "rasa train exited with code" in status["message"]
    assert status.get("logTail"), "the training log's tail is in status"
    assert "domain" in status["logTail"].lower() or "yaml" in status["logTail"].lower()
    assert status["logTail"].strip().splitlines()[-1] in proc.stderr
    assert kubectl.get("mtag", "experimental", NS)["spec"]["model"] == before
    assert "tag" not in status


def test_a_project_archive_in_storage_trains_too(kubectl, setup) -> None:
    import tarfile

    project = write_project(
        setup["root"] / "archived",
        intents={"greet": ["hello"]},
        responses={"greet": "Hello from an archived project."},
    )
    packed = setup["root"] / "archived.tar.gz"
    with tarfile.open(packed, "w:gz") as tar:
        tar.add(project, arcname="acme-bot")  # wrapped in one folder, as `tar czf` makes it
    setup["client"].upload_file(str(packed), BUCKET, "projects/acme-bot.tar.gz")
    storage = kubectl.get("mtag", "experimental", NS)["spec"]["storage"]
    kubectl.apply(
        {
            "apiVersion": "botenv.dev/v1alpha1",
            "kind": "ModelTraining",
            "metadata": {"name": "from-archive", "namespace": NS},
            "spec": {
                "source": {
                    "storage": {**storage, "prefix": "projects/"},
                    "object": "acme-bot.tar.gz",
                },
                "output": {"storage": storage, "modelName": "archived.tar.gz"},
            },
        }
    )
    status = eventually(
        lambda: (
            (s := (kubectl.get("mtrain", "from-archive", NS) or {}).get("status") or {}).get(
                "phase"
            )
            in ("Succeeded", "Failed")
            and s
        ),
        timeout=300,
        interval=1,
        message="the archive training ends",
    )
    assert status["phase"] == "Succeeded", status
    assert setup["client"].head_object(Bucket=BUCKET, Key="bots/archived.tar.gz")
    assert "tag" not in status
