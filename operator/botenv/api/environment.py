"""BotEnvironment: one running Rasa server fleet, its stores, broker and model delivery."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from botenv.api.errors import SpecError
from botenv.api.exposure import (
    HTTPRouteSpec,
    IngressSpec,
    parse_http_route,
    parse_ingress,
    parse_session_affinity,
)
from botenv.api.podsettings import RASA, PodSettings, action_server_owned, parse_pod_settings
from botenv.api.reader import Reader
from botenv.api.refs import SecretKeyRef, secret_key
from botenv.api.scaling import ScalingSpec, parse_scaling
from botenv.api.tag import StorageSpec
from botenv.api.versions import VERSION_HINT, is_version

TRACKER_TYPES = ("memory", "sql", "redis", "mongod", "dynamo", "custom")
LOCK_TYPES = ("memory", "redis", "custom")
SQL_DIALECTS = ("postgresql", "sqlite", "oracle")
JWT_METHODS = (
    "HS256",
    "HS384",
    "HS512",
    "RS256",
    "RS384",
    "RS512",
    "ES256",
    "ES384",
    "ES512",
    "PS256",
    "PS384",
    "PS512",
)
_CLASS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_TAG_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_QUEUE = re.compile(r"^[A-Za-z0-9_.:-]{1,255}$")
_URL = re.compile(r"^https?://\S+$")
# Children are named rasa-<environment>; a Service name is a DNS-1035 label of <= 63 chars.
MAX_ENVIRONMENT_NAME = 58
# ... and its action server's Service is rasa-<environment>-actions.
MAX_NAME_WITH_ACTION_SERVER = 50


@dataclasses.dataclass(frozen=True)
class CredentialRef:
    """A Secret holding a username and/or a password under the given keys."""

    name: str
    username_key: str
    password_key: str
    field: str


@dataclasses.dataclass(frozen=True)
class TrackerStoreSpec:
    type: str = "memory"
    dialect: str = "postgresql"
    host: str = ""
    port: int | None = None
    db: str | int | None = None
    login_db: str = ""
    query: dict[str, str] = dataclasses.field(default_factory=dict)
    key_prefix: str = ""
    use_ssl: bool | None = None
    record_exp: int | None = None
    auth_source: str = ""
    collection: str = ""
    table_name: str = ""
    region: str = ""
    class_name: str = ""
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    credentials: CredentialRef | None = None


@dataclasses.dataclass(frozen=True)
class LockStoreSpec:
    type: str = "memory"
    host: str = ""
    port: int | None = None
    db: int | None = None
    key_prefix: str = ""
    use_ssl: bool | None = None
    class_name: str = ""
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    credentials: CredentialRef | None = None


@dataclasses.dataclass(frozen=True)
class EventBrokerSpec:
    host: str
    port: int = 5672
    queue: str = ""
    exchange_name: str = ""
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    credentials: CredentialRef | None = None


@dataclasses.dataclass(frozen=True)
class ServiceSpec:
    type: str = "ClusterIP"
    port: int = 5005
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    session_affinity: str = ""  # "" leaves the Service's default (None)
    session_affinity_seconds: int | None = None  # ClientIP only


# How long a roll to a new model may take before botenv puts the environment back.
DEFAULT_READY_TIMEOUT = 600


@dataclasses.dataclass(frozen=True)
class PromotionSpec:
    """What happens when a tag moves: a roll that does not get every replica ready within
    ready_timeout_seconds is rolled back (render.rollback)."""

    ready_timeout_seconds: int = DEFAULT_READY_TIMEOUT


@dataclasses.dataclass(frozen=True)
class ActionServerSpec:
    """A rasa-sdk action server run for this environment only."""

    image: str = ""  # "" when the tag's actionServerImage is meant to provide it
    replicas: int = 1
    port: int = 5055
    env: tuple[dict[str, Any], ...] = ()
    env_from: tuple[dict[str, Any], ...] = ()
    resources: dict[str, Any] = dataclasses.field(default_factory=dict)
    node_selector: dict[str, str] = dataclasses.field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    affinity: dict[str, Any] = dataclasses.field(default_factory=dict)
    pod_annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    image_pull_policy: str = ""
    args: tuple[str, ...] = ()  # the image's own start command when empty
    service_account_name: str = ""
    pod: PodSettings = PodSettings()
    scaling: ScalingSpec = ScalingSpec()


@dataclasses.dataclass(frozen=True)
class EnvironmentSpec:
    name: str
    namespace: str
    image: str
    model_tag: str
    replicas: int = 1
    image_pull_policy: str = ""
    image_pull_secrets: tuple[str, ...] = ()
    delivery: str = "pull"
    rollout: str = "Restart"
    pull_interval_seconds: int = 10
    auth_token: SecretKeyRef | None = None
    jwt_secret: SecretKeyRef | None = None
    jwt_method: str = "HS256"
    cors: tuple[str, ...] = ()
    tracker_store: TrackerStoreSpec = TrackerStoreSpec()
    lock_store: LockStoreSpec = LockStoreSpec()
    event_broker: EventBrokerSpec | None = None
    credentials: SecretKeyRef | None = None
    action_endpoint_url: str = ""
    action_server: ActionServerSpec | None = None
    license: SecretKeyRef | None = None
    env: tuple[dict[str, Any], ...] = ()
    env_from: tuple[dict[str, Any], ...] = ()
    resources: dict[str, Any] = dataclasses.field(default_factory=dict)
    node_selector: dict[str, str] = dataclasses.field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    affinity: dict[str, Any] = dataclasses.field(default_factory=dict)
    pod_annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    pod_labels: dict[str, str] = dataclasses.field(default_factory=dict)
    pod: PodSettings = PodSettings()  # volumes, sidecars, probes, security contexts, ...
    service_account_name: str = ""
    service: ServiceSpec = ServiceSpec()
    promotion: PromotionSpec = PromotionSpec()
    ingress: IngressSpec | None = None
    http_route: HTTPRouteSpec | None = None
    # The image's Rasa version when its tag does not tell (botenv's version gate).
    rasa_version: str = ""
    scaling: ScalingSpec = ScalingSpec()


def _credentials(parent: Reader, with_username: bool = True) -> CredentialRef | None:
    ref = parent.child("secretRef")
    if ref is None:
        return None
    password = secret_key(ref, "passwordKey", "password")
    username_key = secret_key(ref, "usernameKey", "username").key if with_username else ""
    return CredentialRef(password.name, username_key, password.key, ref.path)


def _class_name(reader: Reader) -> str:
    value = reader.text("class")
    if not value:
        reader.fail(f"{reader.path}.class", "is required for type custom: module.Class")
    elif not _CLASS.match(value):
        reader.fail(f"{reader.path}.class", f"must be a dotted module.Class path, got {value!r}")
    return value


def _tracker_store(spec: Reader) -> TrackerStoreSpec:
    store = spec.child("trackerStore") or Reader({}, "spec.trackerStore", spec.problems)
    kind = store.enum("type", TRACKER_TYPES, "memory")
    port = store.integer("port", minimum=1, maximum=65535)
    db = store.data.get("db")
    if db is not None and (isinstance(db, bool) or not isinstance(db, int | str)):
        store.fail("spec.trackerStore.db", "must be a string or an integer")
        db = None
    parsed = TrackerStoreSpec(
        type=kind,
        dialect=store.enum("dialect", SQL_DIALECTS, "postgresql"),
        host=store.text("host"),
        port=port,
        db=db,
        login_db=store.text("loginDb"),
        query=store.text_map("query"),
        key_prefix=store.text("keyPrefix"),
        use_ssl=store.flag("useSsl"),
        record_exp=store.integer("recordExp", minimum=0),
        auth_source=store.text("authSource"),
        collection=store.text("collection"),
        table_name=store.text("tableName"),
        region=store.text("region"),
        class_name=_class_name(store) if kind == "custom" else "",
        params=store.mapping("params"),
        credentials=_credentials(store),
    )
    if kind in ("sql", "redis", "mongod") and not parsed.host and parsed.dialect != "sqlite":
        store.fail("spec.trackerStore.host", f"is required for type {kind}: the server's host name")
    if kind == "redis" and isinstance(db, str) and not db.isdigit():
        store.fail(
            "spec.trackerStore.db", f"must be a Redis database number for type redis, got {db!r}"
        )
    return parsed


def _lock_store(spec: Reader) -> LockStoreSpec:
    store = spec.child("lockStore") or Reader({}, "spec.lockStore", spec.problems)
    kind = store.enum("type", LOCK_TYPES, "memory")
    parsed = LockStoreSpec(
        type=kind,
        host=store.text("host"),
        port=store.integer("port", minimum=1, maximum=65535),
        db=store.integer("db", minimum=0),
        key_prefix=store.text("keyPrefix"),
        use_ssl=store.flag("useSsl"),
        class_name=_class_name(store) if kind == "custom" else "",
        params=store.mapping("params"),
        credentials=_credentials(store, with_username=False),
    )
    if kind == "redis" and not parsed.host:
        store.fail("spec.lockStore.host", "is required for type redis: the Redis host name")
    return parsed


def _event_broker(spec: Reader) -> EventBrokerSpec | None:
    broker = spec.child("eventBroker")
    if broker is None:
        return None
    broker.enum("type", ("pika",), "pika")
    queue = broker.text("queue")
    if queue and (not _QUEUE.match(queue) or queue.startswith("amq.")):
        broker.fail(
            "spec.eventBroker.queue",
            "must be 1-255 characters of letters, digits, "
            f"'_', '.', ':' or '-' and not start with 'amq.', got {queue!r}",
        )
    host = broker.text("host")
    if not host:
        broker.fail("spec.eventBroker.host", "is required: the RabbitMQ host name")
    if broker.child("secretRef") is None:
        broker.fail(
            "spec.eventBroker.secretRef",
            "is required: Rasa's pika broker needs a "
            "username and a password (keys username, password)",
        )
    return EventBrokerSpec(
        host=host,
        port=broker.integer("port", 5672, minimum=1, maximum=65535) or 5672,
        queue=queue,
        exchange_name=broker.text("exchangeName"),
        params=broker.mapping("params"),
        credentials=_credentials(broker),
    )


def _objects(reader: Reader, key: str, required: str = "") -> tuple[dict[str, Any], ...]:
    items = reader.items(key)
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            reader.fail(f"{reader.path}.{key}[{i}]", "must be an object")
        elif required and not item.get(required):
            reader.fail(f"{reader.path}.{key}[{i}].{required}", "is required")
    return tuple(i for i in items if isinstance(i, dict))


def _strings(reader: Reader, key: str) -> tuple[str, ...]:
    items = reader.items(key)
    if any(not isinstance(i, str) for i in items):
        reader.fail(f"{reader.path}.{key}", "must be a list of strings")
    return tuple(i for i in items if isinstance(i, str))


def _action_server(spec: Reader, name: str) -> ActionServerSpec | None:
    server = spec.child("actionServer")
    if server is None:
        return None
    if len(name) > MAX_NAME_WITH_ACTION_SERVER:
        server.fail(
            "metadata.name",
            f"must be at most {MAX_NAME_WITH_ACTION_SERVER} "
            f"characters with spec.actionServer (its Service is rasa-<name>-actions), "
            f"got {len(name)}",
        )
    port = server.integer("port", 5055, minimum=1, maximum=65535) or 5055
    return ActionServerSpec(
        image=server.text("image"),
        replicas=server.integer("replicas", 1, minimum=0, maximum=1000) or 0,
        port=port,
        env=_objects(server, "env", "name"),
        env_from=_objects(server, "envFrom"),
        resources=server.mapping("resources"),
        node_selector=server.text_map("nodeSelector"),
        tolerations=_objects(server, "tolerations"),
        affinity=server.mapping("affinity"),
        pod_annotations=server.text_map("podAnnotations"),
        image_pull_policy=server.text("imagePullPolicy"),
        args=_strings(server, "args"),
        service_account_name=server.text("serviceAccountName"),
        pod=parse_pod_settings(server, action_server_owned(port), extra_args=False),
        scaling=parse_scaling(server),
    )


def parse_environment(body: dict[str, Any], default_image: str) -> EnvironmentSpec:
    """Parse and check a BotEnvironment body; raise SpecError naming every bad field."""
    problems: list[str] = []
    meta = body.get("metadata") or {}
    name, namespace = meta.get("name", ""), meta.get("namespace", "")
    if len(name) > MAX_ENVIRONMENT_NAME or not _DNS_LABEL.match(name):
        problems.append(
            f"metadata.name: must be at most {MAX_ENVIRONMENT_NAME} characters of "
            f"a-z, 0-9 and '-', starting with a letter (its Service is "
            f"rasa-<name>), got {name!r}"
        )
    spec = Reader(body.get("spec") or {}, "spec", problems)

    model_tag = spec.text("modelTag") or name
    if not _TAG_NAME.match(model_tag) or len(model_tag) > 253:
        spec.fail("spec.modelTag", f"must be the name of a ModelTag, got {model_tag!r}")
    auth = spec.child("auth") or Reader({}, "spec.auth", problems)
    token_ref, jwt_ref = auth.child("tokenSecretRef"), auth.child("jwtSecretRef")
    credentials_ref = spec.child("credentialsSecretRef")
    service = spec.child("service") or Reader({}, "spec.service", problems)
    promotion = spec.child("promotion") or Reader({}, "spec.promotion", problems)
    action_url = (spec.child("actionEndpoint") or Reader({}, "", problems)).text("url")
    if action_url and not _URL.match(action_url):
        spec.fail("spec.actionEndpoint.url", f"must be an http(s):// URL, got {action_url!r}")
    action_server = _action_server(spec, name)
    if action_server is not None and action_url:
        spec.fail(
            "spec.actionEndpoint.url",
            "must be empty with spec.actionServer (botenv "
            "points Rasa at the action server it runs); set one of the two",
        )
    license_ref = (spec.child("license") or Reader({}, "spec.license", problems)).child("secretRef")
    affinity, affinity_seconds = parse_session_affinity(service)
    cors = spec.items("cors")
    if any(not isinstance(c, str) for c in cors):
        spec.fail("spec.cors", "must be a list of origins (strings), e.g. ['*']")

    parsed = EnvironmentSpec(
        name=name,
        namespace=namespace,
        image=spec.text("image") or default_image,
        model_tag=model_tag,
        replicas=spec.integer("replicas", 1, minimum=0, maximum=1000) or 0,
        image_pull_policy=spec.text("imagePullPolicy"),
        image_pull_secrets=tuple(
            s.get("name", "") for s in _objects(spec, "imagePullSecrets", "name")
        ),
        delivery=spec.enum("delivery", ("pull", "remoteStorage"), "pull"),
        rollout=spec.enum("rollout", ("Restart", "HotSwap"), "Restart"),
        pull_interval_seconds=spec.integer("pullIntervalSeconds", 10, minimum=1, maximum=86400)
        or 10,
        auth_token=secret_key(token_ref, "key", "token") if token_ref else None,
        jwt_secret=secret_key(jwt_ref, "key", "jwt-secret") if jwt_ref else None,
        jwt_method=auth.enum("jwtMethod", JWT_METHODS, "HS256"),
        cors=tuple(c for c in cors if isinstance(c, str)),
        tracker_store=_tracker_store(spec),
        lock_store=_lock_store(spec),
        event_broker=_event_broker(spec),
        credentials=(
            secret_key(credentials_ref, "key", "credentials.yml") if credentials_ref else None
        ),
        action_endpoint_url=action_url,
        action_server=action_server,
        license=secret_key(license_ref, "key", "license") if license_ref else None,
        env=_objects(spec, "env", "name"),
        env_from=_objects(spec, "envFrom"),
        resources=spec.mapping("resources"),
        node_selector=spec.text_map("nodeSelector"),
        tolerations=_objects(spec, "tolerations"),
        affinity=spec.mapping("affinity"),
        pod_annotations=spec.text_map("podAnnotations"),
        pod_labels=spec.text_map("podLabels"),
        service_account_name=spec.text("serviceAccountName"),
        promotion=PromotionSpec(
            ready_timeout_seconds=promotion.integer(
                "readyTimeoutSeconds", DEFAULT_READY_TIMEOUT, minimum=10, maximum=86400
            )
            or DEFAULT_READY_TIMEOUT
        ),
        service=ServiceSpec(
            type=service.enum("type", ("ClusterIP", "NodePort", "LoadBalancer"), "ClusterIP"),
            port=service.integer("port", 5005, minimum=1, maximum=65535) or 5005,
            annotations=service.text_map("annotations"),
            session_affinity=affinity,
            session_affinity_seconds=affinity_seconds,
        ),
        ingress=parse_ingress(spec),
        http_route=parse_http_route(spec),
        pod=parse_pod_settings(spec, RASA, extra_args=True),
        scaling=parse_scaling(spec),
    )
    for i, item in enumerate(parsed.env):
        if item.get("name") == "RASA_ENVIRONMENT" or str(item.get("name")).startswith("BOTENV_"):
            spec.fail(f"spec.env[{i}].name", f"{item['name']} is set by botenv itself: {OWN_ENV}")
    # With autoscaling, the most replicas the HPA may run.
    most_field, most = parsed.scaling.most_replicas(parsed.replicas)
    if most > 1 and parsed.lock_store.type == "memory":
        spec.fail(
            "spec.lockStore",
            f"must be redis or custom when spec.{most_field} > 1 (got "
            f"{most} replicas): an in-memory lock store lets two replicas "
            "handle one conversation at once",
        )
    if most > 1 and parsed.tracker_store.type == "memory":
        spec.fail(
            "spec.trackerStore",
            f"must not be memory when spec.{most_field} > 1 (got "
            f"{most} replicas): each replica would keep its own, partial "
            "conversations",
        )
    if parsed.rollout == "HotSwap" and parsed.delivery != "pull":
        spec.fail(
            "spec.rollout",
            "HotSwap needs delivery: pull (the pods pull the new model "
            "themselves); with remoteStorage the model is a start-up flag, use Restart",
        )
    if parsed.jwt_secret and not parsed.auth_token and not parsed.jwt_method.startswith("HS"):
        spec.fail(
            "spec.auth.tokenSecretRef",
            "is required with an asymmetric jwtMethod "
            f"({parsed.jwt_method}): the readiness check needs a credential to ask "
            "Rasa's /status whether a model is loaded",
        )
    rasa_version = _rasa_version(spec)
    if problems:
        raise SpecError(problems)
    return dataclasses.replace(parsed, rasa_version=rasa_version) if rasa_version else parsed


def _rasa_version(spec: Reader) -> str:
    value = spec.text("rasaVersion")
    if value and not is_version(value):
        spec.fail(
            "spec.rasaVersion", f"must be a Rasa version such as {VERSION_HINT}, got {value!r}"
        )
    return value


# spec.env must not redefine what botenv injects; these names are botenv's in every spec
# (the rest depend on the tag and the stores: plan checks those).
OWN_ENV = (
    "RASA_ENVIRONMENT (the environment's name, the app_id of every broker message) and the "
    "BOTENV_* variables (credentials botenv injects by secretKeyRef, and its own settings) "
    "cannot be redefined in spec.env"
)


# The tag storages Rasa's own persistors can load a model from (delivery: remoteStorage).
REMOTE_STORAGE_PROVIDERS = ("s3", "gcs", "azure")


def check_tag_fits(
    spec: EnvironmentSpec, *, storage: StorageSpec, action_server_image: str
) -> None:
    """Raise SpecError for what the environment asks of its ModelTag that the tag cannot
    give: an action server without any image, or a remote storage Rasa cannot load from.
    `storage` is the tag's storage; `action_server_image` its spec.actionServerImage."""
    problems: list[str] = []
    if spec.action_server is not None and not (action_server_image or spec.action_server.image):
        problems.append(
            f"spec.actionServer.image: is required, since ModelTag "
            f"{spec.model_tag!r} sets no spec.actionServerImage"
        )
    if spec.delivery == "remoteStorage":
        if storage.provider not in REMOTE_STORAGE_PROVIDERS:
            problems.append(
                f"spec.delivery: remoteStorage needs a tag stored in s3, gcs or "
                f"azure; ModelTag {spec.model_tag!r} uses {storage.provider}: use "
                "delivery: pull"
            )
        elif storage.endpoint and storage.provider != "s3":
            problems.append(
                f"spec.delivery: Rasa's {storage.provider} persistor cannot use the "
                f"custom endpoint of ModelTag {spec.model_tag!r} (storage.endpoint): "
                "use delivery: pull"
            )
    if problems:
        raise SpecError(problems)
