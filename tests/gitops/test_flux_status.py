"""What Flux reads: kstatus's rules for custom resources, applied to the statuses the
operator's renderers produce.

kstatus (the library behind Flux's `wait: true` and `healthChecks`) decides a custom
resource's status in this order:

1. metadata.deletionTimestamp set: Terminating;
2. status.observedGeneration present and different from metadata.generation: InProgress;
3. a condition Reconciling=True: InProgress; Stalled=True: Failed;
4. a Ready condition: True is Current, False or Unknown is InProgress;
5. nothing of the above: Current.

`kstatus()` below is that order, written out so the README's table can be checked against
every status botenv writes.
"""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import pytest
import yaml

from botenv.render.status import Problem
from tests.gitops import scenarios as sc
from tests.gitops.argocd import health

REPO = Path(__file__).resolve().parents[2]


def kstatus(obj: dict) -> str:
    meta, status = obj["metadata"], obj.get("status") or {}
    if meta.get("deletionTimestamp"):
        return "Terminating"
    if "observedGeneration" in status and status["observedGeneration"] != meta.get(
        "generation", status["observedGeneration"]
    ):
        return "InProgress"
    conditions = status.get("conditions") or []
    for c in conditions:
        if c.get("type") == "Reconciling" and c.get("status") == "True":
            return "InProgress"
        if c.get("type") == "Stalled" and c.get("status") == "True":
            return "Failed"
    for c in conditions:
        if c.get("type") == "Ready":
            return "Current" if c.get("status") == "True" else "InProgress"
    return "Current"


def environment_statuses() -> list[dict]:
    """Every combination of problem, Deployment state and previous status."""
    problems = [None, Problem("WaitingForTag", "no model yet", degraded=False)] + [
        Problem(reason, f"why {reason}")
        for reason in (
            "InvalidSpec",
            "TagNotFound",
            "TagInvalid",
            "SecretMissing",
            "QueueConflict",
            "SecretUnreadable",
            "ApplyFailed",
        )
    ]
    deployments = [
        None,
        sc.deployment(updated=1, available=1),
        sc.deployment(available=1),
        sc.deployment(observed=6),
        sc.deployment(),
        sc.deployment(updated=1, available=1, stalled=True),
    ]
    previous = [
        {},
        sc.environment_rendered(deploy=sc.deployment(), generation=1),
        sc.environment_rendered(problem=Problem("SecretMissing", "x"), generation=1),
    ]
    return [
        sc.environment_rendered(problem=p, deploy=d, previous=prev)
        for p, d, prev in itertools.product(problems, deployments, previous)
    ]


def tag_statuses() -> list[dict]:
    problems = [None] + [
        Problem(reason, f"why {reason}", retry=retry)
        for reason, retry in (
            ("ModelNotFound", False),
            ("StorageAccessDenied", False),
            ("SecretMissing", False),
            ("InvalidSpec", False),
            ("StorageUnavailable", True),
            ("SecretUnreadable", True),
        )
    ]
    return [
        sc.tag_rendered(p, previous=prev)
        for p, prev in itertools.product(problems, [{}, sc.GOOD_TAG])
    ]


def _check_kstatus_shape(status: dict) -> None:
    assert status["observedGeneration"] == sc.GENERATION
    conditions = status["conditions"]
    types = [c["type"] for c in conditions]
    assert len(types) == len(set(types)), types  # the CRD's list-map key is `type`
    assert "Ready" in types
    # Reconciling/Stalled would take precedence over Ready in kstatus; botenv uses neither.
    assert not {"Reconciling", "Stalled"} & set(types)
    for c in conditions:
        assert c["status"] in ("True", "False"), c
        assert c["reason"] and c["reason"][0].isupper() and c["reason"].isalnum(), c
        assert isinstance(c["message"], str), c
        assert c["lastTransitionTime"].endswith("Z"), c
        assert c["observedGeneration"] == sc.GENERATION, c


@pytest.mark.parametrize("status", environment_statuses())
def test_environment_status_always_has_observed_generation_and_ready(status: dict):
    _check_kstatus_shape(status)
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Progressing", "Degraded"]


@pytest.mark.parametrize("status", tag_statuses())
def test_tag_status_always_has_observed_generation_and_ready(status: dict):
    _check_kstatus_shape(status)
    assert [c["type"] for c in status["conditions"]] == ["Ready"]


def _declared(schema: dict, value: object, path: str) -> None:
    """Every field of `value` is declared in the structural schema: the API server would
    silently prune anything else, and kstatus would never see it."""
    if isinstance(value, dict):
        assert schema.get("type") == "object", path
        properties = schema.get("properties", {})
        for key, item in value.items():
            assert key in properties, f"{path}.{key} is not in the CRD schema"
            _declared(properties[key], item, f"{path}.{key}")
    elif isinstance(value, list):
        assert schema.get("type") == "array", path
        for index, item in enumerate(value):
            _declared(schema["items"], item, f"{path}[{index}]")
    else:
        expected = {"string": str, "integer": int, "boolean": bool}[schema["type"]]
        assert isinstance(value, expected), path
        if "enum" in schema:
            assert value in schema["enum"], path


@functools.cache
def _status_schema(crd: str) -> dict:
    doc = yaml.safe_load((REPO / "crds" / crd).read_text())
    version = next(v for v in doc["spec"]["versions"] if v["storage"])
    assert version["subresources"]["status"] == {}  # status is a subresource (and maybe scale)
    return version["schema"]["openAPIV3Schema"]["properties"]["status"]


def test_every_status_field_is_in_the_crd_schema():
    for status in environment_statuses():
        _declared(_status_schema("botenv.dev_botenvironments.yaml"), status, "status")
    for status in tag_statuses():
        _declared(_status_schema("botenv.dev_modeltags.yaml"), status, "status")


@pytest.mark.parametrize(
    "case",
    [c for c in sc.environment_cases() + sc.tag_cases() if c.rendered],
    ids=lambda c: f"{c.obj['kind']}: {c.name}",
)
def test_flux_and_argocd_agree_once_the_operator_has_reported(case: sc.Case):
    """Current in kstatus is Healthy in Argo CD. Degraded is InProgress for kstatus (it has no
    Stalled condition to read), so `wait: true` without healthCheckExprs reports it only
    when the Kustomization's timeout expires. (Made-up statuses the operator never writes,
    such as none at all, are left out: see test_kstatus_takes_a_missing_status_as_current.)"""
    expected = {"Healthy": "Current", "Progressing": "InProgress", "Degraded": "InProgress"}
    assert kstatus(case.obj) == expected[health(case.obj)["status"]]


def test_kstatus_takes_a_missing_status_as_current():
    """The gap the README warns about: until the operator writes its first status, kstatus
    has nothing to go on and says Current (the healthCheckExprs in gitops/flux/ close it)."""
    assert kstatus(sc.environment(None)) == "Current"
    assert kstatus(sc.tag(None)) == "Current"
