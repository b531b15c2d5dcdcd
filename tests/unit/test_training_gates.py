"""A ModelTraining's gates: spec.validate runs `rasa data validate` before training, spec.test
runs `rasa test` on the trained model and checks its thresholds (`botenv check-gates`),
`botenv upload --gates` stores nothing when one is missed, and the operator reports each
gate (status.gates, status.testResults) and moves the tag only when all passed.
tests/e2e/test_training_gates.py runs the same with a real Rasa."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from botenv import cli
from botenv.api import SpecError
from botenv.api.training import parse_training
from botenv.cli.jobsteps import gates as check
from botenv.controller import job_status
from botenv.controller import training as controller
from botenv.render import gates as render_gates
from botenv.render import training as render
from botenv.settings import Settings

IMAGE = "rasa/rasa:3.6.21-full"
BOTENV = "ghcr.io/botenv/botenv:0.1.0"
KEYS = ["config.yml", "domain.yml", "nlu.yml", "rules.yml", "tests__test_stories.yml"]
NOW = "2026-11-22T03:10:00Z"

# What Rasa 3.6.21's `rasa test` wrote for a tiny project (two intents, six NLU test
# examples, one of them confused; two test stories, both right).
INTENT_REPORT = {
    "greet": {"precision": 0.75, "recall": 1.0, "f1-score": 0.857, "support": 3},
    "bye": {"precision": 1.0, "recall": 0.667, "f1-score": 0.8, "support": 3},
    "accuracy": 0.8333333333333334,
    "macro avg": {"precision": 0.875, "recall": 0.833, "f1-score": 0.8285, "support": 6},
    "weighted avg": {
        "precision": 0.875,
        "recall": 0.8333333333333334,
        "f1-score": 0.8285714285714286,
        "support": 6,
    },
}
STORY_REPORT = {
    "utter_greet": {"precision": 1.0, "recall": 1.0, "f1-score": 1.0, "support": 1},
    "accuracy": 1.0,
    "weighted avg": {"precision": 1.0, "recall": 1.0, "f1-score": 1.0, "support": 6},
    "conversation_accuracy": {"accuracy": 1.0, "correct": 2, "with_warnings": 0, "total": 2},
}


def body(**spec: object) -> dict:
    return {
        "apiVersion": "botenv.dev/v1alpha1",
        "kind": "ModelTraining",
        "metadata": {
            "name": "nightly",
            "namespace": "bots",
            "uid": "u-1",
            "generation": 1,
            "creationTimestamp": "2026-11-22T03:04:05Z",
        },
        "spec": {
            "source": {"configMap": {"name": "acme-project"}},
            "output": {"storage": {"provider": "s3", "bucket": "models"}},
            **spec,
        },
    }


def pod_spec(**spec: object) -> dict:
    job = render.job(parse_training(body(**spec), IMAGE), keys=KEYS, botenv_image=BOTENV, uid="u")
    return job["spec"]["template"]["spec"]


# --- the spec -----------------------------------------------------------------------------


def test_the_gates_are_parsed() -> None:
    spec = parse_training(
        body(validate=True, failOnWarnings=True, test={"minIntentF1": 0.8, "minStoryAccuracy": 1}),
        IMAGE,
    )
    assert spec.gates.validate and spec.gates.fail_on_warnings
    assert spec.gates.test is not None
    assert spec.gates.test.thresholds() == {"minIntentF1": 0.8, "minStoryAccuracy": 1.0}
    plain = parse_training(body(), IMAGE)
    assert not plain.gates.any


def test_bad_gates_name_their_fields() -> None:
    with pytest.raises(SpecError) as err:
        parse_training(
            body(
                validate="yes",
                failOnWarnings=True,
                test={"minIntentF1": 1.5, "minStoryAccuracy": "high"},
            ),
            IMAGE,
        )
    text = str(err.value)
    assert "spec.validate: must be true or false" in text
    assert "spec.failOnWarnings: needs spec.validate: true" in text
    assert "spec.test.minIntentF1: must be a number from 0 to 1, got 1.5" in text
    assert "spec.test.minStoryAccuracy: must be a number from 0 to 1, got 'high'" in text


# --- the Job ------------------------------------------------------------------------------


def test_without_gates_the_job_only_trains_and_uploads() -> None:
    pod = pod_spec()
    assert [c["name"] for c in pod["initContainers"]] == ["train"]
    assert "--gates" not in pod["containers"][0]["args"]


def test_validate_runs_rasa_data_validate_before_training() -> None:
    pod = pod_spec(validate=True, resources={"limits": {"memory": "2Gi"}})
    validate, train = pod["initContainers"]
    assert validate["name"] == "validate" and train["name"] == "train"
    assert validate["image"] == IMAGE
    assert validate["args"] == [
        "data",
        "validate",
        "--config",
        "/workspace/project/config.yml",
        "--domain",
        "/workspace/project/domain.yml",
        "--data",
        "/workspace/project/data",
    ]
    assert validate["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert validate["resources"] == {"limits": {"memory": "2Gi"}}
    assert {"name": "project", "mountPath": "/workspace/project", "readOnly": True} in validate[
        "volumeMounts"
    ]
    strict = pod_spec(validate=True, failOnWarnings=True)["initContainers"][0]
    assert strict["args"][-1] == "--fail-on-warnings"


def test_test_runs_rasa_test_then_checks_the_thresholds_and_upload_obeys() -> None:
    pod = pod_spec(test={"minIntentF1": 0.8, "minStoryAccuracy": 0.9})
    train, test, gate = pod["initContainers"]
    assert (train["name"], test["name"], gate["name"]) == ("train", "test", "gates")
    model = parse_training(body(), IMAGE).model_name
    assert test["image"] == IMAGE
    assert test["args"] == [
        "test",
        "--model",
        f"/workspace/out/{model}",
        "--stories",
        "/workspace/project/tests",
        "--nlu",
        "/workspace/project/tests",
        "--domain",
        "/workspace/project/domain.yml",
        "--out",
        "/workspace/out/test-results",
        "--no-plot",
    ]
    assert gate["image"] == BOTENV
    assert gate["args"] == [
        "check-gates",
        "--results",
        "/workspace/out/test-results",
        "--min-intent-f1",
        "0.8",
        "--min-story-accuracy",
        "0.9",
        "--summary",
        "/workspace/out/gates.json",
        "--termination-log",
        "/dev/termination-log",
    ]
    (upload,) = pod["containers"]
    assert upload["args"][-2:] == ["--gates", "/workspace/out/gates.json"]
    # the project's tests/ folder comes from the tests__ keys, and is not training data
    items = {i["key"]: i["path"] for i in pod["volumes"][0]["configMap"]["items"]}
    assert items["tests__test_stories.yml"] == "tests/test_stories.yml"
    assert items["nlu.yml"] == "data/nlu.yml"


def test_test_without_test_data_is_refused_naming_the_configmap() -> None:
    spec = parse_training(body(test={"minIntentF1": 0.5}), IMAGE)
    with pytest.raises(SpecError, match="spec.test: ConfigMap 'acme-project'.*no test data"):
        render.job(spec, keys=KEYS[:-1], botenv_image=BOTENV, uid="u")
    with pytest.raises(SpecError, match="holds no training data"):
        render.project_items("p", ["config.yml", "domain.yml", "tests__test_stories.yml"])
    assert render_gates.project_path("tests__sub__test_x.yml") == "tests/sub__test_x.yml"


# --- botenv check-gates -------------------------------------------------------------------


def results(tmp_path: Path, intents: dict | None, stories: dict | None) -> Path:
    out = tmp_path / "test-results"
    out.mkdir()
    if intents is not None:
        (out / "intent_report.json").write_text(json.dumps(intents))
    if stories is not None:
        (out / "story_report.json").write_text(json.dumps(stories))
    return out


def test_the_figures_come_from_rasa_tests_reports(tmp_path: Path) -> None:
    figures = check.read_figures(results(tmp_path, INTENT_REPORT, STORY_REPORT))
    assert figures == {
        "intentF1": 0.8286,
        "intentAccuracy": 0.8333,
        "nluExamples": 6,
        "actionAccuracy": 1.0,
        "storyAccuracy": 1.0,
        "stories": 2,
        "storiesCorrect": 2,
    }


def test_each_threshold_passes_or_fails_with_its_figure(tmp_path: Path) -> None:
    figures = check.read_figures(results(tmp_path, INTENT_REPORT, STORY_REPORT))
    summary = check.evaluate(figures, {"minIntentF1": 0.9, "minStoryAccuracy": 1.0})
    assert summary["passed"] is False
    f1, stories = summary["gates"]
    assert (f1["name"], f1["passed"], f1["value"], f1["threshold"]) == (
        "minIntentF1",
        False,
        0.8286,
        0.9,
    )
    assert f1["message"] == (
        "intent F1 (weighted average over 6 NLU test examples) 0.829 is below minIntentF1 0.9"
    )
    assert (stories["name"], stories["passed"]) == ("minStoryAccuracy", True)
    assert "2 of 2 test stories right" in stories["message"]
    assert check.evaluate(figures, {"minIntentF1": 0.8})["passed"] is True
    assert check.evaluate(figures, {}) == {"passed": True, "gates": [], "figures": figures}


def test_a_threshold_without_test_data_fails_and_says_what_is_missing(tmp_path: Path) -> None:
    # Rasa writes no intent report without NLU examples, and {} without test stories.
    figures = check.read_figures(results(tmp_path, None, {}))
    summary = check.evaluate(figures, {"minIntentF1": 0.1, "minStoryAccuracy": 0.1})
    assert summary["passed"] is False
    f1, stories = summary["gates"]
    assert not f1["passed"] and "no NLU test examples" in f1["message"]
    assert not stories["passed"] and "no test stories" in stories["message"]
    assert "value" not in f1


def test_check_gates_writes_the_summary_where_upload_and_the_operator_read_it(
    tmp_path: Path,
) -> None:
    out = results(tmp_path, INTENT_REPORT, STORY_REPORT)
    summary, log = tmp_path / "gates.json", tmp_path / "termination-log"
    proc = subprocess.run(
        [sys.executable, "-m", "botenv", "check-gates", "--results", str(out)]
        + ["--min-intent-f1", "0.9", "--summary", str(summary), "--termination-log", str(log)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # a missed threshold is an answer, not a failed pod (a retry would train again)
    assert proc.returncode == 0, proc.stderr
    written = json.loads(log.read_text())
    assert written == json.loads(summary.read_text()) == json.loads(proc.stdout)
    assert written["passed"] is False and written["gates"][0]["name"] == "minIntentF1"
    assert len(log.read_bytes()) < 4096  # what the kubelet keeps of a termination message
    assert "FAILED: intent F1" in proc.stderr


def test_check_gates_without_results_exits_1(tmp_path: Path, capsys) -> None:
    code = cli.main(["check-gates", "--results", str(tmp_path / "none")])
    assert code == 1
    assert "no such directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["check-gates", "--results", str(tmp_path), "--min-intent-f1", "2"])
    assert exc.value.code == 2


# --- botenv upload --gates ----------------------------------------------------------------


def upload(tmp_path: Path, gates: dict | None) -> tuple[subprocess.CompletedProcess[str], Path]:
    model = tmp_path / "m.tar.gz"
    model.write_bytes(os.urandom(1024))
    store = tmp_path / "models"
    store.mkdir()
    summary = tmp_path / "gates.json"
    if gates is not None:
        summary.write_text(json.dumps(gates))
    storage = json.dumps({"provider": "local", "path": str(store)})
    proc = subprocess.run(
        [sys.executable, "-m", "botenv", "upload", str(model), "--storage-json", storage]
        + ["--model", model.name, "--gates", str(summary)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc, store / model.name


def test_upload_stores_nothing_when_a_gate_failed(tmp_path: Path) -> None:
    failed = {"passed": False, "gates": [{"name": "minIntentF1", "passed": False}]}
    proc, stored = upload(tmp_path, failed)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"model": "m.tar.gz", "uploaded": False}
    assert "not uploading m.tar.gz: gate minIntentF1 failed" in proc.stderr
    assert not stored.exists()


def test_upload_stores_the_model_when_every_gate_passed(tmp_path: Path) -> None:
    proc, stored = upload(tmp_path, {"passed": True, "gates": [], "figures": {}})
    assert proc.returncode == 0, proc.stderr
    assert stored.is_file()


def test_upload_without_a_readable_summary_stores_nothing_and_fails(tmp_path: Path) -> None:
    proc, stored = upload(tmp_path, None)
    assert proc.returncode == 1
    assert "cannot read the gates' summary" in proc.stderr
    assert not stored.exists()


# --- the operator: phases, failures, status -----------------------------------------------


def terminated(name: str, code: int, message: str = "") -> dict:
    return {"name": name, "state": {"terminated": {"exitCode": code, "message": message}}}


def running(name: str) -> dict:
    return {"name": name, "state": {"running": {}}}


def pod(*inits: dict, upload: dict | None = None) -> dict:
    status: dict = {"initContainerStatuses": list(inits)}
    if upload is not None:
        status["containerStatuses"] = [upload]
    return {"metadata": {"creationTimestamp": "2026-11-22T03:05:00Z"}, "status": status}


def test_the_phase_follows_the_step_that_runs() -> None:
    assert job_status.phase_of([]) == "Pending"
    assert job_status.phase_of([pod(running("validate"))]) == "Validating"
    assert job_status.phase_of([pod(terminated("validate", 0), running("train"))]) == "Training"
    assert (
        job_status.phase_of([pod(terminated("train", 0), running("test"), running("gates"))])
        == "Testing"
    )
    assert (
        job_status.phase_of([pod(terminated("train", 0), terminated("test", 0), running("gates"))])
        == "Testing"
    )
    done = pod(terminated("train", 0), terminated("test", 0), terminated("gates", 0))
    assert job_status.phase_of([done]) == "Uploading"


def test_a_failed_validation_is_named() -> None:
    job = {"status": {"conditions": [{"type": "Failed", "status": "True"}]}}
    failed = pod(terminated("validate", 1, "UserWarning: action 'action_x' is not in the domain"))
    reason, message, tail = job_status.failure_of(job, [failed])
    assert reason == "ValidationFailed"
    assert message.startswith("rasa data validate exited with code 1")
    assert "action_x" in tail
    crashed = pod(terminated("train", 0), terminated("test", 1, "The path does not exist"))
    assert job_status.failure_of(job, [crashed])[0] == "TestFailed"


def summary(passed: bool, f1: float = 0.83) -> str:
    return check.encode(
        check.evaluate(
            {"intentF1": f1, "intentAccuracy": 0.85, "nluExamples": 6},
            {"minIntentF1": 0.9 if not passed else 0.5},
        )
    )


def seen(spec_fields: dict, pods: list[dict], stored: tuple[str, int] | None = None, **kw):
    training = body(tag="experimental", **spec_fields)
    job = {
        "metadata": {"name": "train-nightly", "annotations": {render.GENERATION_ANNOTATION: "1"}},
        "status": {"conditions": [{"type": "Complete", "status": "True"}]},
    }
    return controller.Seen(
        body=training,
        spec=parse_training(training, IMAGE),
        job=job,
        pods=pods,
        stored=stored,
        **kw,
    )


GATED = {"validate": True, "test": {"minIntentF1": 0.9}}


def test_a_missed_threshold_fails_the_training_and_moves_nothing() -> None:
    pods = [
        pod(
            terminated("validate", 0),
            terminated("train", 0),
            terminated("test", 0),
            terminated("gates", 0, summary(passed=False)),
            upload=terminated("upload", 0),
        )
    ]
    plan = controller.plan(seen(GATED, pods), Settings(), NOW)
    assert plan.move_tag is None and plan.create_tag is None
    status = plan.status
    assert status is not None
    assert (status["phase"], status["reason"]) == ("Failed", "TestThresholdNotMet")
    model = parse_training(body(), IMAGE).model_name
    assert status["message"] == (
        f"rasa test: minIntentF1 0.83 < 0.9; model {model} was not stored and ModelTag "
        "'experimental' not moved"
    )
    assert status["gates"] == [
        {"name": "validate", "passed": True, "message": "rasa data validate passed"},
        {
            "name": "minIntentF1",
            "passed": False,
            "value": 0.83,
            "threshold": 0.9,
            "message": "intent F1 (weighted average over 6 NLU test examples) 0.830 is "
            "below minIntentF1 0.9",
        },
    ]
    assert status["testResults"] == {"intentF1": 0.83, "intentAccuracy": 0.85, "nluExamples": 6}
    assert plan.event is not None
    assert plan.event[:2] == ("Warning", "TestThresholdNotMet")


def test_passed_gates_are_reported_and_the_tag_moves() -> None:
    pods = [
        pod(
            terminated("validate", 0),
            terminated("train", 0),
            terminated("test", 0),
            terminated("gates", 0, summary(passed=True)),
            upload=terminated("upload", 0),
        )
    ]
    tag = {"spec": {"model": "old.tar.gz", "storage": {"provider": "s3", "bucket": "models"}}}
    tag["spec"]["trainings"] = {"allowed": True}
    plan = controller.plan(
        seen({"validate": True, "test": {"minIntentF1": 0.5}}, pods, ("d1", 10), tag=tag),
        Settings(),
        NOW,
    )
    assert plan.status is not None and plan.status["phase"] == "Succeeded"
    assert [g["name"] for g in plan.status["gates"]] == ["validate", "minIntentF1"]
    assert all(g["passed"] for g in plan.status["gates"])
    (ready,) = plan.status["conditions"]
    assert "gates passed: validate passed; minIntentF1 0.83 >= 0.5" in ready["message"]
    assert plan.event is not None and "gates passed" in plan.event[2]
    assert plan.move_tag == {"spec": {"model": parse_training(body(), IMAGE).model_name}}


def test_a_failed_validation_is_a_failed_gate_in_the_status() -> None:
    training = seen({"validate": True}, [pod(terminated("validate", 1, "bad domain"))])
    assert training.job is not None
    training.job["status"] = {"conditions": [{"type": "Failed", "status": "True"}]}
    plan = controller.plan(training, Settings(), NOW)
    assert plan.status is not None
    assert (plan.status["phase"], plan.status["reason"]) == ("Failed", "ValidationFailed")
    assert plan.status["gates"] == [
        {"name": "validate", "passed": False, "message": "rasa data validate exited with code 1"}
    ]
    assert plan.status["logTail"] == "bad domain"
