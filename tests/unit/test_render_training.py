"""ModelTraining: its spec, and the Job that trains and uploads (groundwork of the training
controller)."""

from __future__ import annotations

import json

import pytest

from botenv.api import SpecError
from botenv.api.training import default_model_name, parse_training
from botenv.controller import job_status
from botenv.render import training as render
from botenv.settings import Settings

IMAGE = "rasa/rasa:3.6.21-full"
BOTENV = "ghcr.io/botenv/botenv:0.1.0"
KEYS = ["config.yml", "domain.yml", "nlu.yml", "rules.yml"]
STORAGE = {
    "s3": {
        "provider": "s3",
        "bucket": "models",
        "prefix": "acme/",
        "region": "eu-west-1",
        "secretRef": {"name": "s3"},
    },
    "gcs": {"provider": "gcs", "bucket": "models", "secretRef": {"name": "gcs"}},
    "azure": {"provider": "azure", "bucket": "models", "secretRef": {"name": "azure"}},
    "local": {"provider": "local", "path": "/models"},
}


def body(name: str = "nightly", **spec: object) -> dict:
    return {
        "apiVersion": "botenv.dev/v1alpha1",
        "kind": "ModelTraining",
        "metadata": {
            "name": name,
            "namespace": "bots",
            "uid": "u-1",
            "creationTimestamp": "2026-11-22T03:04:05Z",
        },
        "spec": {
            "source": {"configMap": {"name": "acme-project"}},
            "output": {"storage": STORAGE["s3"]},
            **spec,
        },
    }


def test_model_name_defaults_to_the_name_and_creation_time() -> None:
    spec = parse_training(body(), IMAGE)
    assert spec.model_name == "nightly-20261122-030405.tar.gz"
    assert spec.fixed_model_name == "nightly-20261122-030405"
    assert default_model_name("x", "2026-01-02T03:04:05Z") == "x-20260102-030405.tar.gz"


def test_errors_name_the_fields() -> None:
    bad = body(tag="Not A Tag", activeDeadlineSeconds=5)
    bad["spec"]["output"] = {
        "storage": {"provider": "http", "url": "https://m/"},
        "modelName": "model.zip",
    }
    del bad["spec"]["source"]
    with pytest.raises(SpecError) as err:
        parse_training(bad, IMAGE)
    text = str(err.value)
    for field in (
        "spec.source",
        "spec.output.storage.provider",
        "spec.output.modelName",
        "spec.tag",
        "spec.activeDeadlineSeconds",
    ):
        assert field in text


@pytest.mark.parametrize("provider", sorted(STORAGE))
def test_job_trains_then_uploads_to_each_provider(provider: str) -> None:
    spec = parse_training(
        body(output={"storage": STORAGE[provider], "modelName": "m-1.tar.gz"}), IMAGE
    )
    job = render.job(spec, keys=KEYS, botenv_image=BOTENV, uid="u-1")
    assert job["metadata"]["name"] == "train-nightly"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "ModelTraining"
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (train,), (upload,) = pod["initContainers"], pod["containers"]
    assert train["image"] == IMAGE
    assert train["args"] == [
        "train",
        "--config",
        "/workspace/project/config.yml",
        "--domain",
        "/workspace/project/domain.yml",
        "--data",
        "/workspace/project/data",
        "--out",
        "/workspace/out",
        "--fixed-model-name",
        "m-1",
    ]
    assert upload["image"] == BOTENV
    assert upload["args"][:2] == ["upload", "/workspace/out/m-1.tar.gz"]
    storage = json.loads(upload["args"][upload["args"].index("--storage-json") + 1])
    expected = {k: v for k, v in STORAGE[provider].items() if k != "secretRef"}
    assert storage == expected
    secret = STORAGE[provider].get("secretRef", {}).get("name")
    volumes = {v["name"]: v for v in pod["volumes"]}
    if secret:
        # credentials by reference: a Secret volume, read by `botenv upload` only
        assert volumes["storage-credentials"]["secret"] == {"secretName": secret}
        assert {
            "name": "storage-credentials",
            "mountPath": render.SECRET_DIR,
            "readOnly": True,
        } in upload["volumeMounts"]
        assert "storage-credentials" not in [m["name"] for m in train["volumeMounts"]]
        assert upload["args"][-2:] == ["--secret-dir", render.SECRET_DIR]
    else:
        assert "storage-credentials" not in volumes
        assert "--secret-dir" not in upload["args"]
    # a pod that writes more is evicted rather than filling the node's disk
    assert volumes["out"] == {"name": "out", "emptyDir": {"sizeLimit": "2Gi"}}
    assert volumes["work"] == {"name": "work", "emptyDir": {"sizeLimit": "4Gi"}}
    assert "emptyDir" not in volumes["project"]  # a ConfigMap source


def test_the_volume_size_limits_come_from_the_settings() -> None:
    settings = Settings.from_env(
        {
            "BOTENV_TRAINING_PROJECT_SIZE_LIMIT": "300Mi",
            "BOTENV_TRAINING_OUT_SIZE_LIMIT": "5Gi",
            "BOTENV_TRAINING_WORK_SIZE_LIMIT": "10G",
        }
    )
    default = Settings()
    assert (
        default.training_project_size_limit,
        default.training_out_size_limit,
        default.training_work_size_limit,
    ) == (render.PROJECT_SIZE_LIMIT, render.OUT_SIZE_LIMIT, render.WORK_SIZE_LIMIT)
    archive = {"provider": "s3", "bucket": "projects"}
    spec = parse_training(body(source={"storage": archive, "object": "a.tar.gz"}), IMAGE)
    job = render.job(
        spec,
        keys=[],
        botenv_image=BOTENV,
        uid="u-1",
        project_size_limit=settings.training_project_size_limit,
        out_size_limit=settings.training_out_size_limit,
        work_size_limit=settings.training_work_size_limit,
    )
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert {n: volumes[n]["emptyDir"] for n in ("project", "out", "work")} == {
        "project": {"sizeLimit": "300Mi"},
        "out": {"sizeLimit": "5Gi"},
        "work": {"sizeLimit": "10G"},
    }
    with pytest.raises(ValueError, match="BOTENV_.*quantity"):
        Settings.from_env({"BOTENV_TRAINING_WORK_SIZE_LIMIT": "lots"})


def test_project_files_are_laid_out_for_rasa() -> None:
    items = render.project_items("p", KEYS)
    assert items == [
        {"key": "config.yml", "path": "config.yml"},
        {"key": "domain.yml", "path": "domain.yml"},
        {"key": "nlu.yml", "path": "data/nlu.yml"},
        {"key": "rules.yml", "path": "data/rules.yml"},
    ]


def test_a_project_without_domain_or_data_is_refused_with_the_configmap_named() -> None:
    with pytest.raises(SpecError, match="ConfigMap 'p' has no key 'domain.yml'"):
        render.project_items("p", ["config.yml", "nlu.yml"])
    with pytest.raises(SpecError, match="ConfigMap 'p' holds no training data"):
        render.project_items("p", ["config.yml", "domain.yml"])


def test_scheduling_limits_and_deadline_are_passed_on() -> None:
    spec = parse_training(
        body(
            nodeSelector={"pool": "workers"},
            tolerations=[{"key": "training", "operator": "Exists"}],
            resources={"requests": {"cpu": "2"}},
            activeDeadlineSeconds=1800,
            backoffLimit=0,
        ),
        IMAGE,
    )
    job = render.job(spec, keys=KEYS, botenv_image=BOTENV, uid="u-1")
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "workers"}
    assert pod["tolerations"] == [{"key": "training", "operator": "Exists"}]
    assert pod["initContainers"][0]["resources"] == {"requests": {"cpu": "2"}}
    assert (job["spec"]["activeDeadlineSeconds"], job["spec"]["backoffLimit"]) == (1800, 0)


def test_an_archive_source_is_fetched_by_botenv_before_training() -> None:
    archive = {"provider": "s3", "bucket": "projects", "secretRef": {"name": "s3-projects"}}
    spec = parse_training(body(source={"storage": archive, "object": "acme.tar.gz"}), IMAGE)
    job = render.job(spec, keys=[], botenv_image=BOTENV, uid="u-1")
    pod = job["spec"]["template"]["spec"]
    fetch, train = pod["initContainers"]
    assert fetch["image"] == BOTENV
    assert fetch["args"][:1] == ["fetch-project"]
    assert fetch["args"][fetch["args"].index("--object") + 1] == "acme.tar.gz"
    assert fetch["args"][fetch["args"].index("--into") + 1] == render.PROJECT_DIR
    assert json.loads(fetch["args"][fetch["args"].index("--storage-json") + 1]) == {
        "provider": "s3",
        "bucket": "projects",
    }
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["project"] == {"name": "project", "emptyDir": {"sizeLimit": "1Gi"}}
    assert volumes["source-credentials"]["secret"] == {"secretName": "s3-projects"}
    assert train["args"][train["args"].index("--data") + 1] == "/workspace/project/data"


def test_a_source_needs_exactly_one_kind() -> None:
    both = body(
        source={"configMap": {"name": "p"}, "storage": STORAGE["local"], "object": "p.tar.gz"}
    )
    with pytest.raises(SpecError, match="spec.source: needs exactly one of configMap"):
        parse_training(both, IMAGE)
    no_object = body(source={"storage": STORAGE["local"]})
    with pytest.raises(SpecError, match="spec.source.object: is required"):
        parse_training(no_object, IMAGE)


def test_failure_names_the_step_and_keeps_the_log_tail() -> None:
    job = {
        "status": {
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                }
            ]
        }
    }
    pod = {
        "metadata": {"creationTimestamp": "t"},
        "status": {
            "initContainerStatuses": [
                {
                    "name": "train",
                    "state": {
                        "terminated": {"exitCode": 1, "message": "YamlSyntaxException: domain.yml"}
                    },
                }
            ]
        },
    }
    reason, message, tail = job_status.failure_of(job, [pod])
    assert reason == "TrainingFailed"
    assert message.startswith("rasa train exited with code 1")
    assert tail == "YamlSyntaxException: domain.yml"
    assert job_status.phase_of([pod]) == "Training"
