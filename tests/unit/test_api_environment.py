"""parse_environment: defaults a user can leave out, and errors that name the bad field."""

from __future__ import annotations

import pytest

from botenv.api import SpecError, parse_environment
from tests.unit.builders import DEFAULT_IMAGE, environment, spec

REDIS_LOCK = {"type": "redis", "host": "redis.db"}
BROKER = {"host": "rabbitmq.mq", "secretRef": {"name": "rabbitmq"}}

REDIS_TRACKER = {"type": "redis", "host": "redis.db"}


def problems(body: dict) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_environment(body, DEFAULT_IMAGE)
    # every problem is `field.path: message`, and str() carries all of them
    for problem in info.value.problems:
        assert ": " in problem
        assert problem in str(info.value)
    return info.value.problems


def fields(body: dict) -> set[str]:
    return {p.split(": ", 1)[0] for p in problems(body)}


def test_an_empty_spec_gets_every_default():
    parsed = spec(name="production")
    assert parsed.name == "production"
    assert parsed.namespace == "bots"
    assert parsed.model_tag == "production"  # modelTag defaults to the environment's name
    assert parsed.image == DEFAULT_IMAGE
    assert parsed.replicas == 1
    assert parsed.delivery == "pull"
    assert parsed.rollout == "Restart"
    assert parsed.pull_interval_seconds == 10
    assert parsed.tracker_store.type == "memory"
    assert parsed.lock_store.type == "memory"
    assert parsed.event_broker is None
    assert parsed.auth_token is None and parsed.jwt_secret is None
    assert parsed.jwt_method == "HS256"
    assert parsed.service.type == "ClusterIP" and parsed.service.port == 5005


def test_default_image_comes_from_the_operator_settings_argument():
    body = environment()
    image = "registry.local/rasa:3.6.20"
    assert parse_environment(body, image).image == image
    body["spec"]["image"] = "rasa/rasa:3.6.21"
    assert parse_environment(body, "registry.local/rasa:3.6.20").image == "rasa/rasa:3.6.21"


def test_explicit_values_are_kept():
    parsed = spec(
        modelTag="candidate",
        replicas=3,
        lockStore=REDIS_LOCK,
        trackerStore=REDIS_TRACKER,
        rollout="HotSwap",
        pullIntervalSeconds=30,
        cors=["https://example.com"],
        auth={
            "tokenSecretRef": {"name": "rasa-auth"},
            "jwtSecretRef": {"name": "rasa-auth", "key": "jwt"},
            "jwtMethod": "HS512",
        },
    )
    assert parsed.model_tag == "candidate"
    assert parsed.replicas == 3
    assert parsed.rollout == "HotSwap"
    assert parsed.pull_interval_seconds == 30
    assert parsed.cors == ("https://example.com",)
    assert (parsed.auth_token.name, parsed.auth_token.key) == ("rasa-auth", "token")
    assert (parsed.jwt_secret.name, parsed.jwt_secret.key) == ("rasa-auth", "jwt")
    assert parsed.jwt_method == "HS512"


def test_remote_storage_delivery_is_accepted():
    assert spec(delivery="remoteStorage").delivery == "remoteStorage"


def test_secret_refs_default_their_keys():
    parsed = spec(
        trackerStore={"type": "sql", "host": "pg", "secretRef": {"name": "db"}},
        lockStore={"type": "redis", "host": "r", "secretRef": {"name": "redis"}},
        eventBroker=BROKER,
        credentialsSecretRef={"name": "channels"},
    )
    tracker = parsed.tracker_store.credentials
    assert (tracker.name, tracker.username_key, tracker.password_key) == (
        "db",
        "username",
        "password",
    )
    assert parsed.lock_store.credentials.password_key == "password"
    broker = parsed.event_broker.credentials
    assert (broker.username_key, broker.password_key) == ("username", "password")
    assert (parsed.credentials.name, parsed.credentials.key) == ("channels", "credentials.yml")


def test_event_broker_defaults():
    broker = spec(eventBroker=BROKER).event_broker
    assert broker.host == "rabbitmq.mq"
    assert broker.port == 5672
    assert broker.queue == ""  # empty: the operator derives a unique one


@pytest.mark.parametrize("store_type", ["sql", "redis", "mongod"])
def test_tracker_store_server_types_need_a_host(store_type):
    assert "spec.trackerStore.host" in fields(environment(trackerStore={"type": store_type}))


def test_sqlite_needs_no_host():
    assert (
        spec(
            trackerStore={"type": "sql", "dialect": "sqlite", "db": "rasa.db"}
        ).tracker_store.dialect
        == "sqlite"
    )


def test_unknown_tracker_store_type_is_named():
    assert "spec.trackerStore.type" in fields(environment(trackerStore={"type": "cassandra"}))


def test_custom_tracker_store_needs_a_dotted_class():
    assert "spec.trackerStore.class" in fields(environment(trackerStore={"type": "custom"}))
    assert "spec.trackerStore.class" in fields(
        environment(trackerStore={"type": "custom", "class": "NotDotted"})
    )


def test_redis_tracker_db_must_be_a_number():
    assert "spec.trackerStore.db" in fields(
        environment(trackerStore={"type": "redis", "host": "r", "db": "rasa"})
    )


@pytest.mark.parametrize("queue", ["amq.rasa", "amq.gen-1", "has space", "x" * 256])
def test_bad_event_queue_is_named(queue):
    found = problems(environment(eventBroker={**BROKER, "queue": queue}))
    assert any(p.startswith("spec.eventBroker.queue: ") and repr(queue) in p for p in found)


def test_event_broker_needs_a_host_and_credentials():
    assert {"spec.eventBroker.host", "spec.eventBroker.secretRef"} <= fields(
        environment(eventBroker={"queue": "q"})
    )


def test_several_replicas_need_shared_lock_and_tracker_stores():
    found = problems(environment(replicas=2))
    assert any(p.startswith("spec.lockStore: ") and "replicas" in p for p in found)
    assert any(p.startswith("spec.trackerStore: ") and "replicas" in p for p in found)
    assert spec(replicas=2, lockStore=REDIS_LOCK, trackerStore=REDIS_TRACKER).replicas == 2
    assert spec(replicas=1).lock_store.type == "memory"


def test_hotswap_needs_pull_delivery():
    found = problems(environment(delivery="remoteStorage", rollout="HotSwap"))
    assert any(p.startswith("spec.rollout: ") and "pull" in p for p in found)


def test_redis_lock_store_needs_a_host():
    assert "spec.lockStore.host" in fields(environment(lockStore={"type": "redis"}))


@pytest.mark.parametrize("name", ["a" * 59, "prod.eu", "Production", "prod_eu", "1prod", ""])
def test_bad_environment_name_is_named(name):
    assert "metadata.name" in fields(environment(name=name))


def test_longest_allowed_name_fits_a_service_name():
    name = "a" * 58
    assert spec(name=name).name == name
    assert len(f"rasa-{name}") <= 63


@pytest.mark.parametrize(
    "field,value",
    [
        ("delivery", "s3"),
        ("rollout", "Recreate"),
        ("replicas", -1),
        ("replicas", "2"),
        ("pullIntervalSeconds", 0),
        ("cors", "*"),
        ("modelTag", "Not A Tag"),
    ],
)
def test_bad_top_level_values_are_named(field, value):
    assert f"spec.{field}" in fields(environment(**{field: value}))


def test_unknown_jwt_method_is_named():
    assert "spec.auth.jwtMethod" in fields(
        environment(auth={"jwtSecretRef": {"name": "a"}, "jwtMethod": "none"})
    )


def test_secret_ref_without_name_is_named():
    assert "spec.auth.tokenSecretRef.name" in fields(environment(auth={"tokenSecretRef": {}}))
    assert "spec.trackerStore.secretRef.name" in fields(
        environment(trackerStore={"type": "sql", "host": "pg", "secretRef": {"key": "x"}})
    )


def test_action_endpoint_must_be_a_url():
    assert "spec.actionEndpoint.url" in fields(environment(actionEndpoint={"url": "actions:5055"}))
    assert (
        spec(actionEndpoint={"url": "http://actions:5055/webhook"}).action_endpoint_url
        == "http://actions:5055/webhook"
    )


def test_env_entries_need_a_name():
    assert "spec.env[0].name" in fields(environment(env=[{"value": "x"}]))


def test_all_problems_are_reported_at_once():
    found = fields(
        environment(
            name="Bad.Name",
            replicas=2,
            delivery="ftp",
            trackerStore={"type": "sql"},
            eventBroker={**BROKER, "queue": "amq.x"},
        )
    )
    assert {
        "metadata.name",
        "spec.lockStore",
        "spec.delivery",
        "spec.trackerStore.host",
        "spec.eventBroker.queue",
    } <= found


def test_a_non_object_section_is_named():
    assert "spec.trackerStore" in fields(environment(trackerStore="sql"))
