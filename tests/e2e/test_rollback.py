"""A promotion to a model that cannot serve never takes an environment down, and rolls
itself back. With real Rasa 3.6.21 pods (test kubelet): a tag moved to a model whose archive
is complete but does not load (its policies' files are not JSON) starts a roll whose new pod
never gets ready. Within spec.promotion.readyTimeoutSeconds botenv puts the environment back
on the model it served, says why (Degraded RolledBack, status.refusedModel, an event), keeps
answering with the old model, and does not try that model again until the tag moves. A good
model then rolls as usual."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.emulators import MotoServer
from tests.support.kubectl import Kubectl, condition, eventually
from tests.support.kubelet import TestKubelet
from tests.support.rasa import train, write_project

pytestmark = [pytest.mark.e2e, pytest.mark.rasa]

NS = "e2e-rollback"
BUCKET = "models"
GOOD = "The model that serves."
NEXT = "The next model that serves."
TIMEOUT = 20  # spec.promotion.readyTimeoutSeconds


def broken_copy(model: Path, out: Path) -> Path:
    """`model` with its policies' files replaced by what is not JSON: a whole archive, its
    metadata intact, that Rasa cannot load (it starts with no model, and never gets ready)."""
    with tarfile.open(model) as src, tarfile.open(out, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None
            name = member.name
            if data is not None and "Policy" in name and name.endswith(".json"):
                data = b"{ not json"
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    return out


@pytest.fixture(scope="module")
def setup(
    kubectl: Kubectl, kubelet: TestKubelet, botenv: dict, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("rollback")
    good = train(
        write_project(root / "good", intents={"greet": ["hello"]}, responses={"greet": GOOD}),
        root / "out",
        "good",
    )
    following = train(
        write_project(root / "next", intents={"greet": ["hello"]}, responses={"greet": NEXT}),
        root / "out",
        "next",
    )
    broken = broken_copy(good, root / "out" / "broken.tar.gz")
    with MotoServer(root / "moto") as s3:
        s3.bucket(BUCKET, [good, following, broken])
        kubectl.apply(
            *s3.tag_objects(NS, "production", good.name, BUCKET),
            {
                "apiVersion": "botenv.dev/v1alpha1",
                "kind": "BotEnvironment",
                "metadata": {"name": "production", "namespace": NS},
                "spec": {"pullIntervalSeconds": 2, "promotion": {"readyTimeoutSeconds": TIMEOUT}},
            },
        )
        eventually(
            lambda: condition(benv(kubectl), "Ready").get("status") == "True",
            timeout=240,
            interval=1,
            message="production Ready on the good model",
        )
        yield {"good": good, "next": following, "broken": broken}


def benv(kubectl: Kubectl) -> dict:
    return kubectl.get("benv", "production", NS) or {}


def say(kubectl: Kubectl) -> list[str]:
    pods = [
        p
        for p in kubectl.list(
            "pods", NS, "botenv.dev/environment=production,app.kubernetes.io/component=rasa-server"
        )
        if condition(p, "Ready").get("status") == "True"
        and not p["metadata"].get("deletionTimestamp")
    ]
    assert pods
    request = urllib.request.Request(
        f"http://{pods[0]['status']['podIP']}:5005/webhooks/rest/webhook",
        data=json.dumps({"sender": "rollback", "message": "hello"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return [m.get("text", "") for m in json.load(response)]


def template_model(kubectl: Kubectl) -> str:
    deploy = kubectl.get("deployment", "rasa-production", NS)
    return deploy["spec"]["template"]["metadata"]["annotations"]["botenv.dev/model"]


def test_a_model_that_does_not_load_is_rolled_back_and_not_retried(kubectl, setup) -> None:
    assert say(kubectl) == [GOOD]
    began = time.monotonic()
    kubectl.patch("mtag", "production", NS, {"spec": {"model": setup["broken"].name}})
    eventually(
        lambda: template_model(kubectl) == setup["broken"].name,
        message="the roll to the broken model starts",
    )
    degraded = eventually(
        lambda: (
            condition(benv(kubectl), "Degraded")
            if condition(benv(kubectl), "Degraded").get("reason") == "RolledBack"
            else None
        ),
        timeout=TIMEOUT + 120,
        interval=1,
        message="production rolled back",
    )
    rolled_back_after = time.monotonic() - began
    status = benv(kubectl)["status"]
    refused = status["refusedModel"]
    assert refused["name"] == setup["broken"].name
    assert refused["digest"] == kubectl.get("mtag", "production", NS)["status"]["digest"]
    assert f"did not become ready on every replica within {TIMEOUT} s" in degraded["message"]
    assert f"back on model {setup['good'].name}" in degraded["message"]
    assert status["model"]["name"] == setup["good"].name
    # The tag is its owner's: it still names the broken model.
    assert kubectl.get("mtag", "production", NS)["spec"]["model"] == setup["broken"].name
    events = [e for e in kubectl.list("events", NS) if e["reason"] == "RolledBack"]
    assert events and events[0]["type"] == "Warning"

    # Back on the good model, serving all along, and the broken one is not tried again.
    eventually(
        lambda: (
            template_model(kubectl) == setup["good"].name
            and condition(benv(kubectl), "Ready").get("status") == "True"
        ),
        timeout=120,
        interval=1,
        message="production Ready on the good model again",
    )
    assert say(kubectl) == [GOOD]
    time.sleep(TIMEOUT)
    assert template_model(kubectl) == setup["good"].name
    assert benv(kubectl)["status"]["refusedModel"]["name"] == setup["broken"].name

    # `botenv status` shows it.
    out = subprocess.run(
        [sys.executable, "-m", "botenv", "status", "-n", NS],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": str(kubectl.kubeconfig)},
        timeout=60,
    ).stdout
    assert re.search(r"production +production +\S+ +Degraded \(RolledBack\)", out), out

    # The tag moves on to a good model: it rolls, and the refusal is gone.
    kubectl.patch("mtag", "production", NS, {"spec": {"model": setup["next"].name}})
    eventually(
        lambda: (
            (benv(kubectl).get("status") or {}).get("model", {}).get("name") == setup["next"].name
            and condition(benv(kubectl), "Ready").get("status") == "True"
        ),
        timeout=240,
        interval=1,
        message="production on the next model",
    )
    assert "refusedModel" not in benv(kubectl)["status"]
    assert condition(benv(kubectl), "Degraded")["status"] == "False"
    assert say(kubectl) == [NEXT]
    print(f"rolled back {rolled_back_after:.0f} s after the tag moved (timeout {TIMEOUT} s)")
