"""Gates, for real: `botenv train --validate --min-intent-f1 ... --min-story-accuracy ...`
sends a tiny project with its tests/ folder; the Job runs `rasa data validate`, `rasa train`
and `rasa test` with Rasa 3.6.21 (test kubelet), `botenv check-gates` checks the figures, and
only a model that meets every threshold is stored in S3 (moto) and moves the tag. The figures
reach the training's status from the pod's termination message."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.test_training import botenv_cli
from tests.support.emulators import MotoServer
from tests.support.kubectl import Kubectl, condition
from tests.support.kubelet import TestKubelet
from tests.support.rasa import write_project

pytestmark = [pytest.mark.e2e, pytest.mark.rasa]

NS = "e2e-gates"
BUCKET = "gated-models"
INTENTS = {"greet": ["hello", "hi there"], "bye": ["goodbye", "see you"]}
RESPONSES = {"greet": "Hello!", "bye": "Bye!"}
TEST_STORIES = """version: "3.1"
stories:
- story: greet
  steps:
  - user: |
      hello
    intent: greet
  - action: utter_greet
- story: bye
  steps:
  - user: |
      see you
    intent: bye
  - action: utter_bye
"""
# One example the keyword classifier gets wrong ("hello and goodbye" is labelled bye, and
# "hello" matches greet): intent F1 over these five and the test stories' two user
# messages is 0.857.
TEST_NLU = """version: "3.1"
nlu:
- intent: greet
  examples: |
    - hello friend
    - hi there you
- intent: bye
  examples: |
    - goodbye now
    - see you soon
    - hello and goodbye
"""


@pytest.fixture(scope="module")
def setup(
    kubectl: Kubectl, kubelet: TestKubelet, botenv: dict, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("gates")
    project = write_project(root / "project", intents=INTENTS, responses=RESPONSES)
    (project / "tests").mkdir()
    (project / "tests" / "test_stories.yml").write_text(TEST_STORIES)
    (project / "tests" / "test_nlu.yml").write_text(TEST_NLU)
    with MotoServer(root / "moto") as s3:
        client = s3.bucket(BUCKET)
        client.put_object(Bucket=BUCKET, Key="first.tar.gz", Body=b"the model before")
        kubectl.apply(
            *s3.tag_objects(NS, "experimental", "first.tar.gz", BUCKET, trainings={"allowed": True})
        )
        yield {"project": project, "client": client}


def stored(client, model: str) -> bool:
    return any(o["Key"] == model for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def train(kubectl: Kubectl, project, name: str, *gates: str):
    return botenv_cli(
        kubectl, "train", str(project), "--tag", "experimental", "-n", NS, "--name", name, *gates
    )


def test_a_model_that_meets_every_threshold_moves_the_tag(kubectl, setup) -> None:
    proc = train(
        kubectl,
        setup["project"],
        "gated",
        "--validate",
        "--min-intent-f1",
        "0.8",
        "--min-story-accuracy",
        "1",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The phases are seen only when a poll (every 2 s) falls in them; the gates' results
    # in the status say that each step ran.
    assert "gates passed: validate passed" in proc.stdout, proc.stdout
    status = kubectl.get("mtrain", "gated", NS)["status"]
    assert (status["phase"], status["tag"]) == ("Succeeded", "experimental")
    gates = {g["name"]: g for g in status["gates"]}
    assert list(gates) == ["validate", "minIntentF1", "minStoryAccuracy"]
    assert all(g["passed"] for g in gates.values()), gates
    assert gates["minIntentF1"]["value"] == pytest.approx(0.857, abs=1e-3)
    assert gates["minStoryAccuracy"]["value"] == 1.0
    results = status["testResults"]
    assert (results["nluExamples"], results["stories"], results["storiesCorrect"]) == (7, 2, 2)
    assert "gates passed" in condition(kubectl.get("mtrain", "gated", NS), "Ready")["message"]
    assert stored(setup["client"], status["modelName"])
    assert kubectl.get("mtag", "experimental", NS)["spec"]["model"] == status["modelName"]


def test_a_missed_threshold_stores_nothing_and_moves_nothing(kubectl, setup) -> None:
    before = kubectl.get("mtag", "experimental", NS)["spec"]["model"]
    proc = train(kubectl, setup["project"], "too-strict", "--min-intent-f1", "0.95")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "TestThresholdNotMet" in proc.stderr
    status = kubectl.get("mtrain", "too-strict", NS)["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "TestThresholdNotMet")
    (gate,) = status["gates"]
    assert (gate["name"], gate["passed"], gate["threshold"]) == ("minIntentF1", False, 0.95)
    assert gate["value"] == pytest.approx(0.857, abs=1e-3)
    assert "is below minIntentF1 0.95" in gate["message"]
    assert not stored(setup["client"], status["modelName"])
    assert kubectl.get("mtag", "experimental", NS)["spec"]["model"] == before
    events = [
        e
        for e in kubectl.list("events", NS)
        if e["involvedObject"]["name"] == "too-strict" and e["reason"] == "TestThresholdNotMet"
    ]
    assert events and "minIntentF1" in events[0]["message"]
