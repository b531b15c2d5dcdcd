"""A ModelTraining's gates on the real API server: the Job carries the gate steps, and the
figures travel from the Job's pod (the termination message of `botenv check-gates`, as a
kubelet reports it) to the training's status and events; a missed threshold moves nothing.
tests/e2e/test_training_gates.py runs the steps with a real Rasa."""

from __future__ import annotations

import pytest

from botenv.api import SpecError
from botenv.api.training import parse_training
from botenv.cli.jobsteps.gates import encode, evaluate
from tests.cluster.test_environments import model_file, tag
from tests.cluster.test_training import project, status, training
from tests.support.jobs import finish_pod
from tests.support.kubectl import CEL_SINCE, condition, eventually

pytestmark = pytest.mark.cluster

FIGURES = {"intentF1": 0.8286, "intentAccuracy": 0.8333, "nluExamples": 6}


@pytest.fixture
def ns(kubectl, request):
    name = f"gates-{request.node.name.split('_')[-1]}"[:60]
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def gated(ns: str, model: str, threshold: float) -> dict:
    body = training(
        ns, validate=True, test={"minIntentF1": threshold}, output=training(ns)["spec"]["output"]
    )
    body["spec"]["output"]["modelName"] = model
    return body


def experimental(ns: str) -> dict:
    body = tag(ns, "experimental", "before.tar.gz")
    body["spec"]["trainings"] = {"allowed": True}
    return body


def done(kubectl, ns: str) -> dict:
    return eventually(
        lambda: (s := status(kubectl, ns)).get("phase") in ("Succeeded", "Failed") and s,
        timeout=60,
        message="the training ends",
    )


def test_a_missed_threshold_fails_the_training_with_its_figures(kubectl, operator, ns):
    kubectl.apply(project(ns, tests__test_stories="x"), experimental(ns))
    kubectl.apply(gated(ns, "gated-missed.tar.gz", 0.9))
    job = eventually(lambda: kubectl.get("job", "train-nightly", ns), message="Job created")
    pod = job["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["validate", "train", "test", "gates"]
    assert pod["containers"][0]["args"][-2:] == ["--gates", "/workspace/out/gates.json"]

    summary = encode(evaluate(FIGURES, {"minIntentF1": 0.9}))
    finish_pod(kubectl, ns, "train-nightly", messages={"gates": summary})
    final = done(kubectl, ns)
    assert (final["phase"], final["reason"]) == ("Failed", "TestThresholdNotMet"), final
    assert final["gates"] == [
        {"name": "validate", "passed": True, "message": "rasa data validate passed"},
        {
            "name": "minIntentF1",
            "passed": False,
            "value": 0.8286,
            "threshold": 0.9,
            "message": "intent F1 (weighted average over 6 NLU test examples) 0.829 is "
            "below minIntentF1 0.9",
        },
    ]
    assert final["testResults"] == FIGURES
    ready = condition(kubectl.get("mtrain", "nightly", ns), "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "TestThresholdNotMet")
    assert "minIntentF1 0.8286 < 0.9" in ready["message"]
    events = [
        e for e in kubectl.list("events", ns) if e["involvedObject"]["kind"] == "ModelTraining"
    ]
    assert any(e["reason"] == "TestThresholdNotMet" and e["type"] == "Warning" for e in events), (
        events
    )
    assert kubectl.get("mtag", "experimental", ns)["spec"]["model"] == "before.tar.gz"
    assert "tag" not in final


def test_passed_gates_move_the_tag_and_stay_in_the_status(kubectl, operator, ns):
    kubectl.apply(project(ns, tests__test_stories="x"), experimental(ns))
    kubectl.apply(gated(ns, "gated-passed.tar.gz", 0.8))
    eventually(lambda: kubectl.get("job", "train-nightly", ns), message="Job created")
    model_file("gated-passed.tar.gz", b"a model that passed its gates")  # the upload's work
    summary = encode(evaluate(FIGURES, {"minIntentF1": 0.8}))
    finish_pod(kubectl, ns, "train-nightly", messages={"gates": summary})
    final = done(kubectl, ns)
    assert final["phase"] == "Succeeded", final
    assert [(g["name"], g["passed"]) for g in final["gates"]] == [
        ("validate", True),
        ("minIntentF1", True),
    ]
    assert final["testResults"]["intentF1"] == 0.8286
    assert "gates passed" in condition(kubectl.get("mtrain", "nightly", ns), "Ready")["message"]
    eventually(
        lambda: kubectl.get("mtag", "experimental", ns)["spec"]["model"] == "gated-passed.tar.gz",
        message="the tag moved",
    )


def test_a_failed_validation_trains_nothing_and_says_why(kubectl, operator, ns):
    kubectl.apply(project(ns), experimental(ns))
    kubectl.apply(training(ns, validate=True, backoffLimit=0))
    eventually(lambda: kubectl.get("job", "train-nightly", ns), message="Job created")
    finish_pod(
        kubectl,
        ns,
        "train-nightly",
        exit_codes={"validate": 1},
        messages={"validate": "The action 'action_x' is used in the 'r' block, but it is not "},
    )
    final = done(kubectl, ns)
    assert (final["phase"], final["reason"]) == ("Failed", "ValidationFailed"), final
    assert final["message"].startswith("rasa data validate exited with code 1")
    assert "action_x" in final["logTail"]
    assert final["gates"] == [
        {"name": "validate", "passed": False, "message": "rasa data validate exited with code 1"}
    ]
    assert kubectl.get("mtag", "experimental", ns)["spec"]["model"] == "before.tar.gz"


def test_spec_test_without_test_data_waits_naming_the_field(kubectl, operator, ns):
    kubectl.apply(project(ns), training(ns, test={"minStoryAccuracy": 1}))
    eventually(
        lambda: (
            condition(kubectl.get("mtrain", "nightly", ns), "Ready").get("reason")
            == "SourceInvalid"
        ),
        message="SourceInvalid",
    )
    assert "spec.test: ConfigMap 'project'" in status(kubectl, ns)["conditions"][0]["message"]
    assert kubectl.get("job", "train-nightly", ns) is None


def test_the_schema_and_the_rules_refuse_bad_gates(control_plane, kubectl, ns):
    out_of_range = training(ns, "range", test={"minIntentF1": 1.5})
    proc = kubectl.apply(out_of_range, check=False, server_validation_only=True)
    assert proc.returncode != 0 and "spec.test.minIntentF1" in proc.stderr, proc.stderr
    lonely = training(ns, "lonely", failOnWarnings=True)
    with pytest.raises(SpecError, match="spec.failOnWarnings: needs spec.validate: true"):
        parse_training(lonely, "rasa/rasa:3.6.21-full")  # what the operator says without CEL
    proc = kubectl.apply(lonely, check=False, server_validation_only=True)
    if control_plane.version < CEL_SINCE:
        assert proc.returncode == 0, proc.stderr
        return
    assert proc.returncode != 0
    assert "spec.failOnWarnings: " in proc.stderr and "needs spec.validate: true" in proc.stderr
