"""ModelTraining on the real API server: the Job botenv creates for it, and the status it
reports before any pod runs (tests/e2e runs the training for real)."""

from __future__ import annotations

import pytest

from tests.cluster.test_environments import MODELS, _names
from tests.support.kubectl import CEL_SINCE, condition, eventually

pytestmark = pytest.mark.cluster


@pytest.fixture
def ns(kubectl):
    name = f"train-{next(_names)}"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def training(ns: str, name: str = "nightly", **spec: object) -> dict:
    return {
        "apiVersion": "botenv.dev/v1alpha1",
        "kind": "ModelTraining",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "source": {"configMap": {"name": "project"}},
            "output": {"storage": {"provider": "local", "path": str(MODELS)}},
            "tag": "experimental",
            **spec,
        },
    }


def project(ns: str, **extra: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "project", "namespace": ns},
        "data": {
            "config.yml": "recipe: default.v1\n",
            "domain.yml": "version: '3.1'\n",
            "nlu.yml": "version: '3.1'\n",
            **extra,
        },
    }


def status(kubectl, ns: str, name: str = "nightly") -> dict:
    return (kubectl.get("mtrain", name, ns) or {}).get("status") or {}


def test_a_job_trains_then_uploads(kubectl, operator, ns):
    kubectl.apply(project(ns), training(ns))
    job = eventually(lambda: kubectl.get("job", "train-nightly", ns), message="Job created")
    body = kubectl.get("mtrain", "nightly", ns)
    assert job["metadata"]["ownerReferences"][0]["uid"] == body["metadata"]["uid"]
    pod = job["spec"]["template"]["spec"]
    (train,), (upload,) = pod["initContainers"], pod["containers"]
    model = status(kubectl, ns)["modelName"]
    assert model.startswith("nightly-") and model.endswith(".tar.gz")
    assert train["args"][-2:] == ["--fixed-model-name", model.removesuffix(".tar.gz")]
    assert upload["args"][:2] == ["upload", f"/workspace/out/{model}"]
    items = {i["key"]: i["path"] for i in pod["volumes"][0]["configMap"]["items"]}
    assert items == {
        "config.yml": "config.yml",
        "domain.yml": "domain.yml",
        "nlu.yml": "data/nlu.yml",
    }
    assert status(kubectl, ns)["jobName"] == "train-nightly"
    assert status(kubectl, ns)["phase"] in ("Pending", "Training")
    reasons = {
        e["reason"] for e in kubectl.list("events", ns) if e["involvedObject"]["name"] == "nightly"
    }
    assert "Started" in reasons


def test_a_missing_project_waits_and_names_it(kubectl, operator, ns):
    kubectl.apply(training(ns))
    eventually(
        lambda: (
            status(kubectl, ns).get("conditions")
            and condition(kubectl.get("mtrain", "nightly", ns), "Ready")["reason"]
            == "SourceNotFound"
        ),
        message="SourceNotFound",
    )
    assert (
        "ConfigMap 'project'" in condition(kubectl.get("mtrain", "nightly", ns), "Ready")["message"]
    )
    assert kubectl.get("job", "train-nightly", ns) is None
    kubectl.apply(project(ns))  # found at the next look, within seconds
    eventually(
        lambda: kubectl.get("job", "train-nightly", ns),
        timeout=30,
        message="Job created once the ConfigMap exists",
    )


def test_an_invalid_spec_fails_naming_the_field(control_plane, kubectl, operator, ns):
    bad = training(ns)
    bad["spec"]["output"]["storage"] = {"provider": "http", "url": "https://models.example/"}
    kubectl.apply(project(ns))
    applied = kubectl.apply(bad, check=False, server_validation_only=True)
    if control_plane.version >= CEL_SINCE:
        # The CRD's CEL rule refuses it; servers before 1.25 store it for the operator to refuse.
        assert applied.returncode != 0
        assert "spec.output.storage.provider: " in applied.stderr, applied.stderr
        assert "http storage is read-only" in applied.stderr
        assert kubectl.get("mtrain", "nightly", ns) is None
        return
    assert applied.returncode == 0, applied.stderr
    eventually(lambda: status(kubectl, ns).get("phase") == "Failed", message="Failed")
    assert status(kubectl, ns)["reason"] == "InvalidSpec"
    assert "spec.output.storage.provider" in status(kubectl, ns)["message"]
    assert kubectl.get("job", "train-nightly", ns) is None


def test_a_changed_spec_trains_again_into_a_new_model(kubectl, operator, ns):
    kubectl.apply(project(ns), training(ns))
    first = eventually(lambda: kubectl.get("job", "train-nightly", ns))
    first_model = status(kubectl, ns)["modelName"]
    kubectl.apply(training(ns, backoffLimit=0))
    second = eventually(
        lambda: (
            (j := kubectl.get("job", "train-nightly", ns))
            and j["metadata"]["uid"] != first["metadata"]["uid"]
            and j
        ),
        message="a new Job for the new spec",
    )
    assert second["metadata"]["annotations"]["botenv.dev/training-generation"] == "2"
    assert second["spec"]["backoffLimit"] == 0
    eventually(
        lambda: status(kubectl, ns).get("modelName", "").endswith("-g2.tar.gz"),
        message="a new model name",
    )
    assert status(kubectl, ns)["modelName"] != first_model
