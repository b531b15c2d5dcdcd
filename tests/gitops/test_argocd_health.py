"""The Argo CD health checks (gitops/argocd/botenv.dev/*/health.lua), run in a real Lua 5.1
interpreter against statuses built by the operator's own renderers, one case per branch."""

from __future__ import annotations

import itertools

import pytest

from botenv.controller import resolve, tag
from botenv.controller.environment import apply as environment_apply
from botenv.controller.environment import gate as environment_gate
from botenv.controller.environment import gather as environment_gather
from botenv.controller.environment import plan as environment_plan
from botenv.controller.environment import report as environment_report
from botenv.render import status as status_render
from botenv.render.status import Problem
from tests.gitops import scenarios as sc
from tests.gitops.argocd import health
from tests.gitops.reasons import BOTH, reported


@pytest.mark.parametrize("case", sc.environment_cases(), ids=lambda c: c.name)
def test_environment_health(case: sc.Case):
    result = health(case.obj)
    assert result["status"] == case.health, result
    assert case.message in result["message"], result


@pytest.mark.parametrize("case", sc.tag_cases(), ids=lambda c: c.name)
def test_tag_health(case: sc.Case):
    result = health(case.obj)
    assert result["status"] == case.health, result
    assert case.message in result["message"], result


@pytest.mark.parametrize("kind", ["BotEnvironment", "ModelTag"])
def test_a_condition_from_an_older_generation_is_not_trusted(kind: str):
    """Ready=True computed for generation 3 says nothing about generation 4, even when the
    top-level observedGeneration was already bumped."""
    if kind == "BotEnvironment":
        obj = sc.environment(
            sc.environment_rendered(deploy=sc.deployment(), generation=sc.GENERATION - 1)
        )
    else:
        obj = sc.tag(sc.GOOD_TAG)
    obj["status"]["observedGeneration"] = sc.GENERATION
    assert health(obj)["status"] == "Progressing"


@pytest.mark.parametrize("kind", ["BotEnvironment", "ModelTag"])
def test_numbers_given_as_strings_still_compare(kind: str):
    """Argo CD passes a json.Number to Lua as a string; tonumber() makes both work."""
    if kind == "BotEnvironment":
        obj = sc.environment(sc.environment_rendered(deploy=sc.deployment()))
    else:
        obj = sc.tag(sc.tag_rendered())
    obj["metadata"]["generation"] = str(sc.GENERATION)
    obj["status"]["observedGeneration"] = str(sc.GENERATION)
    for c in obj["status"]["conditions"]:
        c["observedGeneration"] = str(sc.GENERATION)
    assert health(obj)["status"] == "Healthy"
    obj["metadata"]["generation"] = str(sc.GENERATION + 1)
    assert health(obj)["status"] == "Progressing"


def test_tag_ready_unknown_is_progressing():
    obj = sc.tag(sc.tag_rendered())
    obj["status"]["conditions"][0].update(status="Unknown", reason="Resolving", message="")
    assert health(obj) == {"status": "Progressing", "message": "Resolving"}


def test_every_environment_reason_the_operator_reports_has_the_right_health():
    """Scans the controller for every reason it reports, so a new one cannot slip past the
    health check: a Problem with degraded=False is Progressing, every other one Degraded."""
    found = [
        found
        for module in (
            environment_gather,
            environment_plan,
            environment_gate,
            environment_apply,
            environment_report,
            status_render,
        )
        for found in reported(module, "Problem")
    ]
    reasons = {reason for _, reason, _ in found}
    assert {
        "InvalidSpec",
        "TagNotFound",
        "WaitingForTag",
        "TagInvalid",
        "SecretMissing",
        "QueueConflict",
        "ApplyFailed",
        "SecretUnreadable",
        "RolloutStalled",
        "ModelIncompatible",
    } <= reasons
    for _, reason, keywords in found:
        flag = keywords.get("degraded", True)
        for degraded, deploy in itertools.product(
            (True, False) if flag is BOTH else (flag,), (None, sc.deployment())
        ):
            problem = Problem(reason, f"something about {reason}", degraded)
            result = health(sc.environment(sc.environment_rendered(problem=problem, deploy=deploy)))
            assert result["status"] == ("Degraded" if degraded else "Progressing"), (reason, result)
            assert f"something about {reason}" in result["message"]


def test_every_tag_reason_the_operator_reports_has_the_right_health():
    """A reason the operator retries by itself (retry=True) is Progressing; any other reason
    needs a fix and is Degraded."""
    found = reported(resolve, "Unresolved") + reported(tag, "Problem")
    reasons = {reason for _, reason, _ in found}
    assert {
        "ModelNotFound",
        "StorageAccessDenied",
        "StorageUnavailable",
        "SecretMissing",
        "SecretUnreadable",
        "InvalidSpec",
    } <= reasons
    for _, reason, keywords in found:
        flag = keywords.get("retry", False)
        for retry in (True, False) if flag is BOTH else (flag,):
            result = health(sc.tag(sc.tag_rendered(Problem(reason, "why", retry=retry))))
            assert result["status"] == ("Progressing" if retry else "Degraded"), (reason, result)


def _training(
    phase: str | None,
    *,
    generation: int = 2,
    observed: int = 2,
    reason: str = "",
    message: str = "",
) -> dict:
    body: dict = {
        "apiVersion": "botenv.dev/v1alpha1",
        "kind": "ModelTraining",
        "metadata": {"name": "nightly", "generation": generation},
    }
    if phase is not None:
        body["status"] = {
            "phase": phase,
            "observedGeneration": observed,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if phase == "Succeeded" else "False",
                    "reason": reason or phase,
                    "message": message,
                    "observedGeneration": observed,
                }
            ],
        }
        if phase == "Failed":
            body["status"].update(reason=reason, message=message)
    return body


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (_training(None), "Progressing"),
        (_training("Training"), "Progressing"),
        (_training("Uploading"), "Progressing"),
        (_training("Succeeded", observed=1), "Progressing"),
        (_training("Succeeded", message="model m stored"), "Healthy"),
        (
            _training("Failed", reason="TrainingFailed", message="rasa train exited with code 1"),
            "Degraded",
        ),
    ],
)
def test_training_health(body: dict, expected: str) -> None:
    result = health(body)
    assert result["status"] == expected
    if expected == "Degraded":
        assert result["message"] == "TrainingFailed: rasa train exited with code 1"
