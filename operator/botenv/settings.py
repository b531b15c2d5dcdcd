"""Operator settings, read once from `BOTENV_*` environment variables."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import re
from collections.abc import Mapping

from botenv.storage.policy import StoragePolicy

try:
    _VERSION = importlib.metadata.version("botenv")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    _VERSION = "latest"


_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")


def _quantity(value: str) -> str:
    if not _QUANTITY.match(value):
        raise ValueError(f"expected a Kubernetes quantity such as 1Gi, got {value!r}")
    return value


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Settings:
    # Base URL of botenv's model server; a tag's pull URL is BASE/models/<ns>/tags/<tag>.
    model_server_url: str = "http://botenv-model-server.botenv-system.svc:8080"
    default_image: str = "rasa/rasa:3.6.21-full"
    # botenv's own image: a training Job's upload step runs it (the chart sets it to the
    # image the operator runs).
    botenv_image: str = f"ghcr.io/botenv/botenv:{_VERSION}"
    # How many earlier models a ModelTag keeps in status.history (rollback targets).
    history_limit: int = 10
    # Every environment is reconciled again at this period: Secrets are not watched
    # (watching every Secret of a cluster costs memory), so rotation is seen here.
    resync_seconds: float = 60.0
    # How long a tag's storage stat is trusted; a resync after that stats again, which is
    # how a model re-uploaded under the same name is noticed.
    resolve_seconds: float = 60.0
    # /healthz fails after this long without a watch event or resync, or with work queued
    # and no reconcile finished; 0: three resync periods.
    stall_seconds: float = 0.0
    workers: int = 8
    # Ask each ready Rasa pod's /status which model it serves before calling an environment
    # Ready (the operator must reach pod IPs; turn off where a NetworkPolicy forbids it).
    verify_models: bool = True
    # Open a TCP connection to the broker and stores an environment names; one that cannot
    # be reached makes it Degraded (EventBrokerUnreachable, ...), without touching the pods.
    check_dependencies: bool = True
    # Namespaces to watch; empty means all namespaces.
    namespaces: tuple[str, ...] = ()
    # Where ModelTags may keep models (BOTENV_STORAGE_LOCAL_ROOTS, _URL_PREFIXES,
    # _ALLOWED_NETWORKS): the same for the operator and the model server, which both read
    # a tag's storage with their own identity.
    storage: StoragePolicy = StoragePolicy()
    # sizeLimit of a training Job's emptyDir volumes: the unpacked project (archive
    # source), the model output, and Rasa's working directory (cache, temporary files).
    training_project_size_limit: str = "1Gi"
    training_out_size_limit: str = "2Gi"
    training_work_size_limit: str = "4Gi"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        default = cls()

        def get(name: str, fallback: str) -> str:
            return env.get(f"BOTENV_{name}", "").strip() or fallback

        namespaces = tuple(n.strip() for n in get("NAMESPACES", "").split(",") if n.strip())
        try:
            return cls(
                model_server_url=get("MODEL_SERVER_URL", default.model_server_url).rstrip("/"),
                default_image=get("DEFAULT_IMAGE", default.default_image),
                botenv_image=get("IMAGE", default.botenv_image),
                history_limit=int(get("HISTORY_LIMIT", str(default.history_limit))),
                resync_seconds=float(get("RESYNC_SECONDS", str(default.resync_seconds))),
                resolve_seconds=float(get("RESOLVE_SECONDS", str(default.resolve_seconds))),
                workers=int(get("WORKERS", str(default.workers))),
                stall_seconds=float(get("STALL_SECONDS", str(default.stall_seconds))),
                verify_models=_bool(get("VERIFY_MODELS", str(default.verify_models))),
                check_dependencies=_bool(
                    get("CHECK_DEPENDENCIES", str(default.check_dependencies))
                ),
                namespaces=namespaces,
                storage=storage_policy(env),
                training_project_size_limit=_quantity(
                    get("TRAINING_PROJECT_SIZE_LIMIT", default.training_project_size_limit)
                ),
                training_out_size_limit=_quantity(
                    get("TRAINING_OUT_SIZE_LIMIT", default.training_out_size_limit)
                ),
                training_work_size_limit=_quantity(
                    get("TRAINING_WORK_SIZE_LIMIT", default.training_work_size_limit)
                ),
            )
        except ValueError as exc:
            raise ValueError(f"invalid BOTENV_* setting: {exc}") from exc


def storage_policy(environ: Mapping[str, str] | None = None) -> StoragePolicy:
    """The storage policy from BOTENV_STORAGE_* (also read alone by the model server)."""
    env = os.environ if environ is None else environ

    def items(name: str) -> list[str]:
        return [n.strip() for n in env.get(f"BOTENV_STORAGE_{name}", "").split(",") if n.strip()]

    return StoragePolicy.parse(
        items("LOCAL_ROOTS"), items("URL_PREFIXES"), items("ALLOWED_NETWORKS")
    )
