"""The Job of a ModelTraining: `rasa train` (an init container, the Rasa image), then
`botenv upload` (botenv's own image) stores the model with the storage backends the model
server reads with, and verifies what was stored."""

from __future__ import annotations

import json
from typing import Any

from botenv.api import API_VERSION
from botenv.api.errors import SpecError
from botenv.api.tag import StorageSpec
from botenv.api.training import TrainingSpec
from botenv.labels import MANAGED_BY, MANAGED_BY_LABEL, TRAINING_LABEL, label_value
from botenv.render import gates, podsecurity
from botenv.render.workspace import OUT_DIR, PROJECT_DIR, WORK_DIR

TMP_DIR = "/tmp"
SECRET_DIR = "/var/run/secrets/botenv/storage"
SOURCE_SECRET_DIR = "/var/run/secrets/botenv/source"
PROJECT_FILES = ("config.yml", "domain.yml")
# sizeLimit of the Job's emptyDir volumes (the operator's BOTENV_TRAINING_*_SIZE_LIMIT): a
# pod that writes more is evicted instead of filling the node's disk.
PROJECT_SIZE_LIMIT = "1Gi"  # the unpacked archive (botenv fetch-project caps it at 256Mi)
OUT_SIZE_LIMIT = "2Gi"  # the trained model
WORK_SIZE_LIMIT = "4Gi"  # Rasa's cache and temporary files, downloaded language models


def job_name(training: str) -> str:
    return f"train-{training}"


def project_items(config_map: str, keys: list[str]) -> list[dict[str, Any]]:
    """config.yml and domain.yml at the project's root, every other key under data/ (so
    `--data` sees training data only). Raises SpecError when a required file is missing."""
    missing = [f for f in PROJECT_FILES if f not in keys]
    if missing:
        raise SpecError(
            [
                f"spec.source.configMap.name: ConfigMap {config_map!r} has no key "
                f"{' and no key '.join(repr(m) for m in missing)} (a Rasa project "
                "needs config.yml, domain.yml and training data files)"
            ]
        )
    data = sorted(k for k in keys if k not in PROJECT_FILES)
    if all(map(gates.is_test_file, data)):
        raise SpecError(
            [
                f"spec.source.configMap.name: ConfigMap {config_map!r} holds no "
                "training data: add files such as nlu.yml, stories.yml, rules.yml"
            ]
        )
    return [{"key": f, "path": f} for f in PROJECT_FILES] + [
        {"key": k, "path": gates.project_path(k)} for k in data
    ]


def _storage_json(storage: StorageSpec) -> str:
    # credentials come from the mounted Secret, not from the JSON
    return json.dumps(storage.block(with_secret=False), sort_keys=True)


def _tmp_mount() -> dict[str, Any]:
    """/tmp of every step is the work volume (the root filesystem is read-only): one budget,
    BOTENV_TRAINING_WORK_SIZE_LIMIT, for Rasa's and botenv's scratch files."""
    return {"name": "work", "mountPath": TMP_DIR}


def _hardened(spec: TrainingSpec, step: dict[str, Any], botenv_image: str) -> dict[str, Any]:
    """A gate step (render.gates) with the security context of its kind of step (Rasa's,
    with the training's overrides, or botenv's own) and /tmp on the work volume."""
    context = (
        podsecurity.botenv_step_context()
        if step.get("image") == botenv_image
        else podsecurity.container_context(spec.security_context)
    )
    mounts = list(step.get("volumeMounts") or [])
    if not any(m.get("mountPath") == TMP_DIR for m in mounts):
        mounts.append(_tmp_mount())
    return {**step, "volumeMounts": mounts, "securityContext": context}


def labels(training: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "rasa-training",
        "app.kubernetes.io/part-of": "botenv",
        MANAGED_BY_LABEL: MANAGED_BY,
        TRAINING_LABEL: label_value(training),
    }


def job(
    spec: TrainingSpec,
    *,
    keys: list[str],
    botenv_image: str,
    uid: str,
    generation: int = 1,
    project_size_limit: str = PROJECT_SIZE_LIMIT,
    out_size_limit: str = OUT_SIZE_LIMIT,
    work_size_limit: str = WORK_SIZE_LIMIT,
) -> dict[str, Any]:
    """`keys`: the keys of the source ConfigMap (see project_items); unused with an
    archive source, which an init container of botenv's image fetches and unpacks.
    `*_size_limit`: the sizeLimit of the project (archive source), out and work emptyDirs."""
    gates.check_test_data(spec, keys)
    volumes: list[dict[str, Any]] = [
        {
            "name": "project",
            "configMap": {"name": spec.config_map, "items": project_items(spec.config_map, keys)},
        }
        if spec.archive is None
        else {"name": "project", "emptyDir": {"sizeLimit": project_size_limit}},
        {"name": "out", "emptyDir": {"sizeLimit": out_size_limit}},
        {"name": "work", "emptyDir": {"sizeLimit": work_size_limit}},
    ]
    fetch: list[dict[str, Any]] = []
    if spec.archive is not None:
        fetch_mounts: list[dict[str, Any]] = [
            {"name": "project", "mountPath": PROJECT_DIR},
            _tmp_mount(),
        ]
        if spec.archive.secret_name:
            volumes.append(
                {"name": "source-credentials", "secret": {"secretName": spec.archive.secret_name}}
            )
            fetch_mounts.append(
                {"name": "source-credentials", "mountPath": SOURCE_SECRET_DIR, "readOnly": True}
            )
        fetch.append(
            {
                "name": "fetch-project",
                "image": botenv_image,
                "args": [
                    "fetch-project",
                    "--storage-json",
                    _storage_json(spec.archive),
                    "--object",
                    spec.archive_object,
                    "--into",
                    PROJECT_DIR,
                    *(["--secret-dir", SOURCE_SECRET_DIR] if spec.archive.secret_name else []),
                ],
                "volumeMounts": fetch_mounts,
                "securityContext": podsecurity.botenv_step_context(),
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "resources": {
                    "requests": {"cpu": "50m", "memory": "64Mi"},
                    "limits": {"memory": "256Mi"},
                },
            }
        )
    upload_mounts = [{"name": "out", "mountPath": OUT_DIR, "readOnly": True}, _tmp_mount()]
    if spec.output.secret_name:
        volumes.append(
            {"name": "storage-credentials", "secret": {"secretName": spec.output.secret_name}}
        )
        upload_mounts.append(
            {"name": "storage-credentials", "mountPath": SECRET_DIR, "readOnly": True}
        )
    train: dict[str, Any] = {
        "name": "train",
        "image": spec.image,
        "args": [
            "train",
            "--config",
            f"{PROJECT_DIR}/config.yml",
            "--domain",
            f"{PROJECT_DIR}/domain.yml",
            "--data",
            f"{PROJECT_DIR}/data",
            "--out",
            OUT_DIR,
            "--fixed-model-name",
            spec.fixed_model_name,
        ],
        # Rasa writes its cache and temp files where it runs.
        "workingDir": WORK_DIR,
        # On failure the kubelet puts the log's last lines in the status: botenv reports
        # them without reading pod logs.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "env": [{"name": "HOME", "value": WORK_DIR}],
        "volumeMounts": [
            {"name": "project", "mountPath": PROJECT_DIR, "readOnly": True},
            {"name": "out", "mountPath": OUT_DIR},
            {"name": "work", "mountPath": WORK_DIR},
            _tmp_mount(),
        ],
        "securityContext": podsecurity.container_context(spec.security_context),
    }
    if spec.resources:
        train["resources"] = spec.resources
    upload = {
        "name": "upload",
        "image": botenv_image,
        "args": [
            "upload",
            f"{OUT_DIR}/{spec.model_name}",
            "--storage-json",
            _storage_json(spec.output),
            "--model",
            spec.model_name,
            # without a Secret: the provider's own credentials (IRSA, Workload Identity)
            *(["--secret-dir", SECRET_DIR] if spec.output.secret_name else []),
            *gates.upload_args(spec),
        ],
        "volumeMounts": upload_mounts,
        "securityContext": podsecurity.botenv_step_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
    }
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "initContainers": [
            *fetch,
            *(_hardened(spec, step, botenv_image) for step in gates.before_training(spec)),
            train,
            *(
                _hardened(spec, step, botenv_image)
                for step in gates.after_training(spec, botenv_image)
            ),
        ],
        "containers": [upload],
        "volumes": volumes,
        # Rasa's user for the pod; botenv's steps run as botenv's own (their securityContext).
        "securityContext": podsecurity.pod_context(
            podsecurity.RASA_USER, spec.pod_security_context
        ),
        **podsecurity.automount(""),
    }
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod["tolerations"] = [dict(t) for t in spec.tolerations]
    if spec.affinity:
        pod["affinity"] = spec.affinity
    if spec.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": n} for n in spec.image_pull_secrets]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(spec.name),
            "namespace": spec.namespace,
            "labels": labels(spec.name),
            "annotations": {GENERATION_ANNOTATION: str(generation)},
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "ModelTraining",
                    "name": spec.name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "backoffLimit": spec.backoff_limit,
            "activeDeadlineSeconds": spec.active_deadline_seconds,
            "template": {"metadata": {"labels": labels(spec.name)}, "spec": pod},
        },
    }


GENERATION_ANNOTATION = "botenv.dev/training-generation"
