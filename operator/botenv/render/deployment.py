"""The environment's Deployment: `rasa run --enable-api` with its endpoints, secrets and model."""

from __future__ import annotations

import dataclasses
import urllib.parse
from typing import Any

from botenv.api import podsettings as owned
from botenv.api.environment import EnvironmentSpec
from botenv.api.tag import StorageSpec
from botenv.render import names, podsecurity, podsettings, probe
from botenv.render import secretenv as se
from botenv.render.configmap import ENDPOINTS_FILE
from botenv.render.hashing import SECRETS_HASH_ANNOTATION

RASA_PORT = owned.RASA_PORT
CONFIG_DIR = f"{owned.BOTENV_DIR}/rasa"
REMOTE_STORAGE = {"s3": "aws", "gcs": "gcs", "azure": "azure"}
# Rasa 3.6's S3 persistor fails without a region, even for S3-compatible stores.
DEFAULT_S3_REGION = "us-east-1"

MODEL_ANNOTATION = "botenv.dev/model"
DIGEST_ANNOTATION = "botenv.dev/model-digest"
CONFIG_HASH_ANNOTATION = "botenv.dev/config-hash"


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """What the environment's tag resolves to now."""

    tag: str
    model: str
    digest: str
    storage: StorageSpec
    action_server_image: str = ""  # the tag's actions, "" when the tag names none


def needs_probe_script(spec: EnvironmentSpec) -> bool:
    return spec.auth_token is not None or spec.jwt_secret is not None


def _remote_storage_args_env(
    spec: EnvironmentSpec, model: ModelRef
) -> tuple[list[str], list[dict[str, Any]]]:
    """Rasa's flags and variables for the tag's storage; api.check_tag_fits has checked
    that Rasa can load from it."""
    storage = model.storage
    args = [
        "--model",
        storage.object_key(model.model),
        "--remote-storage",
        REMOTE_STORAGE[storage.provider],
    ]
    env: list[dict[str, Any]] = []
    if storage.provider == "s3":
        env += [
            {"name": "BUCKET_NAME", "value": storage.bucket},
            {"name": "AWS_DEFAULT_REGION", "value": storage.region or DEFAULT_S3_REGION},
        ]
        if storage.endpoint:
            env.append({"name": "AWS_ENDPOINT_URL", "value": storage.endpoint})
    elif storage.provider == "gcs":
        env.append({"name": "BUCKET_NAME", "value": storage.bucket})
        if storage.secret_name:
            env.append({"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": se.GCS_KEY_PATH})
    else:
        env.append({"name": "AZURE_CONTAINER", "value": storage.bucket})
    return args, env


def _args(spec: EnvironmentSpec) -> list[str]:
    args = [
        "run",
        "--enable-api",
        "--port",
        str(RASA_PORT),
        "--endpoints",
        f"{CONFIG_DIR}/{ENDPOINTS_FILE}",
    ]
    if spec.credentials:
        args += ["--credentials", se.CREDENTIALS_FILE]
    # $(VAR) is expanded by the kubelet from the container's env: the secret stays out of
    # the Deployment object.
    if spec.auth_token:
        args += ["--auth-token", f"$({se.AUTH_TOKEN})"]
    if spec.jwt_secret:
        args += ["--jwt-secret", f"$({se.JWT_SECRET})", "--jwt-method", spec.jwt_method]
    if spec.cors:
        args += ["--cors", *spec.cors]
    return args


def injected_env(
    spec: EnvironmentSpec, model: ModelRef, uses: list[se.SecretUse]
) -> list[dict[str, Any]]:
    """The variables botenv sets in the Rasa container: RASA_ENVIRONMENT, the storage
    settings Rasa reads (remoteStorage) or the pinned digest, and the Secret keys in `uses`.
    spec.env may not redefine any of them (plan checks it)."""
    env: list[dict[str, Any]] = [{"name": "RASA_ENVIRONMENT", "value": spec.name}]
    if spec.delivery == "remoteStorage":
        env += _remote_storage_args_env(spec, model)[1]
    elif spec.rollout == "Restart":
        # endpoints.yml's pull URL pins this digest (names.model_url).
        env.append(
            {"name": names.MODEL_DIGEST_VAR, "value": urllib.parse.quote(model.digest, safe="")}
        )
    for use in uses:
        if use.var:
            env.append(
                {
                    "name": use.var,
                    "valueFrom": {"secretKeyRef": {"name": use.secret, "key": use.key}},
                }
            )
    if spec.jwt_secret:
        env.append({"name": "BOTENV_JWT_METHOD", "value": spec.jwt_method})
    return env


def _env(spec: EnvironmentSpec, model: ModelRef, uses: list[se.SecretUse]) -> list[dict[str, Any]]:
    env = injected_env(spec, model, uses)
    # One entry per name (server-side apply treats env as a map keyed by name and rejects
    # duplicates); botenv's own win, though plan refuses a spec that redefines them.
    own = {e["name"] for e in env}
    return env + list({e["name"]: e for e in spec.env if e["name"] not in own}.values())


def _volumes(
    spec: EnvironmentSpec, uses: list[se.SecretUse]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes = [
        {
            "name": owned.CONFIG_VOLUME,
            "configMap": {"name": names.endpoints_configmap_name(spec.name)},
        }
    ]
    mounts = [{"name": owned.CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True}]
    for i, use in enumerate(u for u in uses if u.mount):
        directory, filename = use.mount.rsplit("/", 1)
        volumes.append(
            {
                "name": f"secret-{i}",
                "secret": {"secretName": use.secret, "items": [{"key": use.key, "path": filename}]},
            }
        )
        mounts.append({"name": f"secret-{i}", "mountPath": directory, "readOnly": True})
    # Where Rasa writes (traced on rasa run): its working directory (remoteStorage downloads
    # the model there), HOME and /tmp (the unpacked model): emptyDirs, so the root
    # filesystem stays read-only.
    tmp, tmp_mount = podsettings.tmp_volume()
    volumes += [{"name": owned.WORK_VOLUME, "emptyDir": {}}, tmp]
    mounts += [{"name": owned.WORK_VOLUME, "mountPath": owned.RASA_WORK_DIR}, tmp_mount]
    return volumes, mounts


def _probes(spec: EnvironmentSpec) -> dict[str, Any]:
    if needs_probe_script(spec):
        readiness: dict[str, Any] = {
            "exec": {"command": ["python", f"{CONFIG_DIR}/{probe.PROBE_FILE}"]}
        }
    else:
        readiness = {"httpGet": {"path": "/status", "port": "http"}}
    return {
        # Rasa opens its port only after the first model load, which may take minutes for
        # large models: the startup probe holds liveness back until then.
        "startupProbe": {
            "tcpSocket": {"port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 120,
            "timeoutSeconds": 3,
        },
        # GET / answers even without a model: right for liveness, wrong for readiness.
        "livenessProbe": {
            "httpGet": {"path": "/", "port": "http"},
            "periodSeconds": 15,
            "timeoutSeconds": 5,
            "failureThreshold": 4,
        },
        # /status is 200 only when a model is loaded.
        "readinessProbe": {
            **readiness,
            "periodSeconds": 5,
            "timeoutSeconds": 5,
            "failureThreshold": 2,
        },
    }


def deployment(
    spec: EnvironmentSpec,
    *,
    model: ModelRef,
    uid: str,
    uses: list[se.SecretUse],
    config_hash: str,
    secrets_hash: str,
) -> dict[str, Any]:
    """`uses` are the Secret keys that exist and are injected (see secretenv.usable); the
    spec is parsed and checked against its tag (api.check_tag_fits)."""
    args = _args(spec)
    if spec.delivery == "remoteStorage":
        args += _remote_storage_args_env(spec, model)[0]
    args += spec.pod.extra_args
    annotations = dict(spec.pod_annotations)
    annotations[CONFIG_HASH_ANNOTATION] = config_hash
    annotations[SECRETS_HASH_ANNOTATION] = secrets_hash
    # With HotSwap the pods pull the new model themselves; the template stays as it is.
    if spec.rollout == "Restart":
        annotations[MODEL_ANNOTATION] = model.model
        if model.digest:
            annotations[DIGEST_ANNOTATION] = model.digest
    volumes, mounts = _volumes(spec, uses)

    container: dict[str, Any] = {
        "name": owned.RASA_CONTAINER,
        "image": spec.image,
        "args": args,
        "workingDir": owned.RASA_WORK_DIR,
        "ports": [{"name": "http", "containerPort": RASA_PORT, "protocol": "TCP"}],
        # Rasa writes its config and caches to HOME, which the image puts in /app: into the
        # working-directory emptyDir instead. Modules a custom image keeps in /app (Rasa
        # puts its working directory on sys.path) stay importable. spec.env may set both.
        "env": podsettings.env_defaults(
            _env(spec, model, uses),
            HOME=owned.RASA_WORK_DIR,
            PYTHONPATH=owned.IMAGE_WORK_DIR,
        ),
        "volumeMounts": mounts,
        **_probes(spec),
    }
    if spec.image_pull_policy:
        container["imagePullPolicy"] = spec.image_pull_policy
    if spec.env_from:
        container["envFrom"] = [dict(e) for e in spec.env_from]
    if spec.resources:
        container["resources"] = spec.resources

    pod_spec: dict[str, Any] = {"containers": [container], "volumes": volumes}
    if spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in spec.image_pull_secrets]
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.tolerations]
    if spec.affinity:
        pod_spec["affinity"] = spec.affinity
    pod_spec = podsettings.pod_spec(
        pod_spec,
        spec.pod,
        user=podsecurity.RASA_USER,
        service_account=spec.service_account_name,
    )

    labels = names.labels(spec.name, model.tag)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": names.rasa_name(spec.name),
            "namespace": spec.namespace,
            "labels": labels,
            "ownerReferences": [names.owner_reference(spec.name, uid)],
        },
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": names.selector_labels(spec.name)},
            # Never fewer serving pods than asked for while rolling to a new model.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "revisionHistoryLimit": 5,
            # A roll with no new replica ready for this long is stalled; for a new model
            # botenv then goes back to the one served before (render.rollback).
            "progressDeadlineSeconds": spec.promotion.ready_timeout_seconds,
            "template": {
                "metadata": {"labels": {**spec.pod_labels, **labels}, "annotations": annotations},
                "spec": pod_spec,
            },
        },
    }
