"""endpoints.yml as Rasa 3.x reads it. Secrets appear only as ${VAR} references, which Rasa
expands from the pod's environment when it reads the file."""

from __future__ import annotations

from typing import Any

from botenv.api.environment import EnvironmentSpec
from botenv.render import names
from botenv.render import secretenv as se

_TRACKER_DEFAULT_PORTS = {"sql": None, "redis": 6379, "mongod": 27017}


def _ref(var: str) -> str:
    return "${" + var + "}"


def _put(target: dict[str, Any], key: str, value: object) -> None:
    if value not in (None, "", {}):
        target[key] = value


def _secret_refs(target: dict[str, Any], used_vars: set[str], username: str, password: str) -> None:
    if username in used_vars:
        target["username"] = _ref(username)
    if password in used_vars:
        target["password"] = _ref(password)


def tracker_store(spec: EnvironmentSpec, used_vars: set[str]) -> dict[str, Any] | None:
    store = spec.tracker_store
    if store.type == "memory":
        return None
    out: dict[str, Any] = {}
    if store.type == "sql":
        out["type"] = "SQL"
        out["dialect"] = store.dialect
        _put(out, "url", store.host)
        _put(out, "port", store.port)
        _put(out, "db", store.db)
        _put(out, "login_db", store.login_db)
        _put(out, "query", dict(store.query))
        _secret_refs(out, used_vars, se.TRACKER_USERNAME, se.TRACKER_PASSWORD)
    elif store.type == "redis":
        out["type"] = "redis"
        _put(out, "url", store.host)
        _put(out, "port", store.port or 6379)
        _put(out, "db", int(store.db) if store.db not in (None, "") else None)
        _put(out, "key_prefix", store.key_prefix)
        _secret_refs(out, used_vars, "", se.TRACKER_PASSWORD)
        _put(out, "use_ssl", store.use_ssl)
        _put(out, "record_exp", store.record_exp)
    elif store.type == "mongod":
        out["type"] = "mongod"
        host = store.host
        if "://" not in host:
            host = f"mongodb://{host}:{store.port or 27017}"
        out["url"] = host
        _put(out, "db", store.db)
        _secret_refs(out, used_vars, se.TRACKER_USERNAME, se.TRACKER_PASSWORD)
        _put(out, "auth_source", store.auth_source)
        _put(out, "collection", store.collection)
    elif store.type == "dynamo":
        out["type"] = "dynamo"
        _put(out, "table_name", store.table_name)
        _put(out, "region", store.region)
    else:  # custom: Rasa imports the class and passes the remaining keys to it
        out["type"] = store.class_name
        _put(out, "url", store.host)
        _put(out, "port", store.port)
        _put(out, "db", store.db)
        _secret_refs(out, used_vars, se.TRACKER_USERNAME, se.TRACKER_PASSWORD)
    # params pass through, but never over the keys botenv derived from the spec
    return {**store.params, **out}


def lock_store(spec: EnvironmentSpec, used_vars: set[str]) -> dict[str, Any] | None:
    store = spec.lock_store
    if store.type == "memory":
        return None
    out: dict[str, Any] = {"type": "redis" if store.type == "redis" else store.class_name}
    _put(out, "url", store.host)
    _put(out, "port", store.port or (6379 if store.type == "redis" else None))
    _put(out, "db", store.db)
    _put(out, "key_prefix", store.key_prefix)
    _secret_refs(out, used_vars, "", se.LOCK_PASSWORD)
    _put(out, "use_ssl", store.use_ssl)
    return {**store.params, **out}


def event_broker(spec: EnvironmentSpec, queue: str, used_vars: set[str]) -> dict[str, Any] | None:
    broker = spec.event_broker
    if broker is None:
        return None
    out: dict[str, Any] = {"type": "pika", "url": broker.host, "port": broker.port}
    _secret_refs(out, used_vars, se.BROKER_USERNAME, se.BROKER_PASSWORD)
    out["queues"] = [queue]
    out["exchange_name"] = broker.exchange_name or names.derived_exchange(spec.namespace, spec.name)
    return {**broker.params, **out}


def action_endpoint(spec: EnvironmentSpec) -> dict[str, Any] | None:
    """The action server botenv runs for the environment, or an external one, or none."""
    if spec.action_server is not None:
        return {"url": names.action_server_url(spec.name, spec.namespace, spec.action_server.port)}
    return {"url": spec.action_endpoint_url} if spec.action_endpoint_url else None


def endpoints(
    spec: EnvironmentSpec, *, model_url: str, queue: str, used_vars: set[str]
) -> dict[str, Any]:
    """The endpoints.yml document. `used_vars` are the secret variables the pod defines."""
    doc: dict[str, Any] = {}
    if spec.delivery == "pull":
        doc["models"] = {"url": model_url, "wait_time_between_pulls": spec.pull_interval_seconds}
        if se.PULL_TOKEN in used_vars:
            # A header, not Rasa's `token` (a query parameter that lands in access logs).
            doc["models"]["headers"] = {"Authorization": "Bearer " + _ref(se.PULL_TOKEN)}
    for key, value in (
        ("tracker_store", tracker_store(spec, used_vars)),
        ("lock_store", lock_store(spec, used_vars)),
        ("event_broker", event_broker(spec, queue, used_vars)),
        ("action_endpoint", action_endpoint(spec)),
    ):
        if value is not None:
            doc[key] = value
    return doc
