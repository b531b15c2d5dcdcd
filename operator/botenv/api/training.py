"""ModelTraining: `rasa train` as a Job in the worker environment, its model uploaded to
storage, and (optionally) a tag moved to it."""

from __future__ import annotations

import dataclasses
import datetime
import re
from typing import Any

from botenv.api.errors import SpecError
from botenv.api.gates import GatesSpec, parse_gates
from botenv.api.reader import Reader
from botenv.api.tag import StorageSpec, parse_storage

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.tar\.gz$")
# The Job is named train-<name>, and Job names label their pods (<= 63 characters).
MAX_TRAINING_NAME = 57


@dataclasses.dataclass(frozen=True)
class TrainingSpec:
    name: str
    namespace: str
    image: str
    config_map: str  # the project: config.yml, domain.yml and data files as keys, or
    output: StorageSpec
    model_name: str  # the file name in storage, ending in .tar.gz
    tag: str = ""  # the ModelTag to create or move once the model is stored
    resources: dict[str, Any] = dataclasses.field(default_factory=dict)
    node_selector: dict[str, str] = dataclasses.field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    affinity: dict[str, Any] = dataclasses.field(default_factory=dict)
    active_deadline_seconds: int = 3600
    backoff_limit: int = 1
    image_pull_secrets: tuple[str, ...] = ()
    # ... an archive (.tar.gz) of the project in storage (config_map is then "")
    archive: StorageSpec | None = None
    archive_object: str = ""
    # over botenv's restricted defaults, key by key: the pod, and the `rasa train` step
    pod_security_context: dict[str, Any] = dataclasses.field(default_factory=dict)
    security_context: dict[str, Any] = dataclasses.field(default_factory=dict)
    # rasa data validate before training, rasa test after: the model is stored (and its tag
    # moved) only when every gate passes
    gates: GatesSpec = GatesSpec()

    @property
    def fixed_model_name(self) -> str:
        """`rasa train --fixed-model-name` adds .tar.gz itself."""
        return self.model_name.removesuffix(".tar.gz")


def default_model_name(name: str, created: str, generation: int = 1) -> str:
    """Unique per resource and spec, stable across reconciles: NAME-YYYYMMDD-HHMMSS.tar.gz
    from metadata.creationTimestamp (a training of the same name created later gets
    another), with -gN for a later generation of the spec (a changed spec trains again)."""
    when = datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ")
    suffix = f"-g{generation}" if generation > 1 else ""
    return f"{name}-{when:%Y%m%d-%H%M%S}{suffix}.tar.gz"


def parse_training(body: dict[str, Any], default_image: str) -> TrainingSpec:
    """Parse and check a ModelTraining body; raise SpecError naming every bad field."""
    problems: list[str] = []
    meta = body.get("metadata") or {}
    name, namespace = meta.get("name", ""), meta.get("namespace", "")
    if len(name) > MAX_TRAINING_NAME or not _NAME.match(name):
        problems.append(
            f"metadata.name: must be at most {MAX_TRAINING_NAME} characters of "
            f"a-z, 0-9, '-' and '.' (its Job is train-<name>), got {name!r}"
        )
    spec = Reader(body.get("spec") or {}, "spec", problems)

    source = spec.child("source")
    config_map, archive, archive_object = "", None, ""
    if source is None:
        spec.fail(
            "spec.source",
            "is required: the Rasa project to train (configMap: {name} or storage + object)",
        )
    else:
        ref, stored = source.child("configMap"), source.child("storage")
        if (ref is None) == (stored is None):
            source.fail(
                "spec.source",
                "needs exactly one of configMap (a ConfigMap holding "
                "config.yml, domain.yml and the data files) and storage + object (a "
                ".tar.gz of the project in storage)",
            )
        elif ref is not None:
            config_map = ref.text("name")
            if not _NAME.match(config_map):
                ref.fail(
                    "spec.source.configMap.name", f"must be a ConfigMap name, got {config_map!r}"
                )
        elif stored is not None:
            archive = parse_storage(stored)
            archive_object = source.text("object")
            if (
                not archive_object
                or archive_object.startswith("/")
                or ".." in archive_object.split("/")
            ):
                source.fail(
                    "spec.source.object",
                    "is required with spec.source.storage: the "
                    f"project archive's name (e.g. acme-bot.tar.gz), got "
                    f"{archive_object!r}",
                )

    output = spec.child("output")
    if output is None:
        spec.fail("spec.output", "is required: where the trained model is stored")
        output = Reader({}, "spec.output", problems)
    storage = output.child("storage")
    if storage is None:
        output.fail("spec.output.storage", "is required: the storage block of a ModelTag")
        storage = Reader({}, "spec.output.storage", problems)
    parsed_storage = parse_storage(storage)
    if parsed_storage.provider == "http":
        storage.fail(
            "spec.output.storage.provider",
            "http storage is read-only: use s3, gcs, azure or local for a training's output",
        )
    model_name = output.text("modelName")
    if model_name and not _MODEL.match(model_name):
        output.fail(
            "spec.output.modelName",
            "must be a file name ending in .tar.gz (letters, "
            f"digits, '.', '_', '-'), got {model_name!r}",
        )
    if not model_name and meta.get("creationTimestamp"):
        model_name = default_model_name(
            name, meta["creationTimestamp"], int(meta.get("generation") or 1)
        )

    tag = spec.text("tag")
    if tag and (not _NAME.match(tag) or len(tag) > 253):
        spec.fail("spec.tag", f"must be the name of a ModelTag, got {tag!r}")
    pull_secrets = spec.items("imagePullSecrets")
    if any(not isinstance(s, dict) or not s.get("name") for s in pull_secrets):
        spec.fail("spec.imagePullSecrets", "must be a list of {name: SECRET}")

    parsed = TrainingSpec(
        name=name,
        namespace=namespace,
        image=spec.text("image") or default_image,
        config_map=config_map,
        output=parsed_storage,
        model_name=model_name,
        tag=tag,
        resources=spec.mapping("resources"),
        node_selector=spec.text_map("nodeSelector"),
        tolerations=tuple(t for t in spec.items("tolerations") if isinstance(t, dict)),
        affinity=spec.mapping("affinity"),
        active_deadline_seconds=spec.integer(
            "activeDeadlineSeconds", 3600, minimum=60, maximum=7 * 86400
        )
        or 3600,
        backoff_limit=spec.integer("backoffLimit", 1, minimum=0, maximum=10) or 0,
        image_pull_secrets=tuple(
            s["name"] for s in pull_secrets if isinstance(s, dict) and s.get("name")
        ),
        archive=archive,
        archive_object=archive_object,
        pod_security_context=spec.mapping("podSecurityContext"),
        security_context=spec.mapping("securityContext"),
        gates=parse_gates(spec),
    )
    if problems:
        raise SpecError(problems)
    return parsed
