"""endpoints.yml as Rasa 3.x reads it, parsed back from the rendered ConfigMap text."""

from __future__ import annotations

import re

import pytest
import yaml

from botenv.render import names
from botenv.render.configmap import ENDPOINTS_FILE
from tests.unit.builders import MODEL_SERVER, UID, environment, render_all, storage

TRACKER_USER = "${BOTENV_TRACKER_STORE_USERNAME}"
TRACKER_PASSWORD = "${BOTENV_TRACKER_STORE_PASSWORD}"
REDIS_LOCK = {"type": "redis", "host": "redis.db"}
BROKER = {"host": "rabbitmq.mq", "secretRef": {"name": "rabbitmq"}}


def endpoints_of(**spec: object) -> dict:
    return render_all(environment(**spec)).endpoints


def tracker(**store: object) -> dict:
    return endpoints_of(trackerStore=store)["tracker_store"]


# --- tracker stores -------------------------------------------------------------------------


def test_memory_tracker_store_is_rasas_default_and_not_written():
    assert "tracker_store" not in endpoints_of()
    assert "tracker_store" not in endpoints_of(trackerStore={"type": "memory"})


def test_sql_tracker_store():
    assert tracker(
        type="sql",
        dialect="postgresql",
        host="postgres.db",
        port=5432,
        db="rasa",
        loginDb="postgres",
        query={"sslmode": "require"},
        secretRef={"name": "tracker-db"},
    ) == {
        "type": "SQL",
        "dialect": "postgresql",
        "url": "postgres.db",
        "port": 5432,
        "db": "rasa",
        "login_db": "postgres",
        "query": {"sslmode": "require"},
        "username": TRACKER_USER,
        "password": TRACKER_PASSWORD,
    }


def test_sql_tracker_store_leaves_out_what_was_not_given():
    assert tracker(type="sql", host="pg") == {"type": "SQL", "dialect": "postgresql", "url": "pg"}


def test_sqlite_tracker_store():
    assert tracker(type="sql", dialect="sqlite", db="rasa.db") == {
        "type": "SQL",
        "dialect": "sqlite",
        "db": "rasa.db",
    }


def test_redis_tracker_store():
    assert tracker(
        type="redis",
        host="redis.db",
        port=6380,
        db="2",
        keyPrefix="prod",
        useSsl=True,
        recordExp=3600,
        secretRef={"name": "redis"},
    ) == {
        "type": "redis",
        "url": "redis.db",
        "port": 6380,
        "db": 2,  # an int, as redis-py wants, even when written as a string
        "key_prefix": "prod",
        "password": TRACKER_PASSWORD,
        "use_ssl": True,
        "record_exp": 3600,
    }


def test_redis_tracker_store_defaults_port_and_has_no_username():
    store = tracker(type="redis", host="redis.db", db=0, secretRef={"name": "redis"})
    assert store["port"] == 6379
    assert store["db"] == 0
    assert "username" not in store  # Rasa's RedisTrackerStore takes no username


def test_redis_use_ssl_false_is_written():
    assert tracker(type="redis", host="r", useSsl=False)["use_ssl"] is False


@pytest.mark.parametrize(
    "host,port,url",
    [
        ("mongo.db", None, "mongodb://mongo.db:27017"),
        ("mongo.db", 27018, "mongodb://mongo.db:27018"),
        (
            "mongodb://mongo-0.mongo,mongo-1.mongo/?replicaSet=rs0",
            None,
            "mongodb://mongo-0.mongo,mongo-1.mongo/?replicaSet=rs0",
        ),
        ("mongodb+srv://cluster.example.net", None, "mongodb+srv://cluster.example.net"),
    ],
)
def test_mongod_tracker_store_url(host, port, url):
    store = {"type": "mongod", "host": host}
    if port:
        store["port"] = port
    assert tracker(**store)["url"] == url


def test_mongod_tracker_store():
    assert tracker(
        type="mongod",
        host="mongo.db",
        db="rasa",
        authSource="admin",
        collection="conversations",
        secretRef={"name": "mongo"},
    ) == {
        "type": "mongod",
        "url": "mongodb://mongo.db:27017",
        "db": "rasa",
        "username": TRACKER_USER,
        "password": TRACKER_PASSWORD,
        "auth_source": "admin",
        "collection": "conversations",
    }


def test_dynamo_tracker_store():
    assert tracker(type="dynamo", tableName="rasa", region="eu-west-1") == {
        "type": "dynamo",
        "table_name": "rasa",
        "region": "eu-west-1",
    }


def test_dynamo_credentials_are_aws_variables_not_endpoint_keys():
    rendered = render_all(
        environment(
            trackerStore={
                "type": "dynamo",
                "tableName": "rasa",
                "region": "eu-west-1",
                "secretRef": {"name": "aws", "usernameKey": "id", "passwordKey": "secret"},
            }
        )
    )
    assert "username" not in rendered.endpoints["tracker_store"]
    assert "password" not in rendered.endpoints["tracker_store"]
    assert rendered.env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": "aws",
        "key": "id",
    }
    assert rendered.env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "aws",
        "key": "secret",
    }


def test_custom_tracker_store_passes_the_class_and_params():
    assert tracker(
        type="custom",
        **{"class": "acme.stores.MyStore"},
        host="db.acme",
        port=1234,
        params={"timeout": 5, "tls": {"verify": False}},
        secretRef={"name": "acme"},
    ) == {
        "type": "acme.stores.MyStore",
        "url": "db.acme",
        "port": 1234,
        "timeout": 5,
        "tls": {"verify": False},
        "username": TRACKER_USER,
        "password": TRACKER_PASSWORD,
    }


def test_params_never_override_derived_keys():
    store = tracker(type="sql", host="pg", params={"url": "evil", "type": "x", "pool_size": 5})
    assert store["url"] == "pg"
    assert store["type"] == "SQL"
    assert store["pool_size"] == 5


# --- lock store ----------------------------------------------------------------------------


def test_memory_lock_store_is_not_written():
    assert "lock_store" not in endpoints_of()


def test_redis_lock_store():
    assert endpoints_of(
        lockStore={
            "type": "redis",
            "host": "redis.db",
            "port": 6380,
            "db": 1,
            "keyPrefix": "lock",
            "secretRef": {"name": "redis"},
        },
    )["lock_store"] == {
        "type": "redis",
        "url": "redis.db",
        "port": 6380,
        "db": 1,
        "key_prefix": "lock",
        "password": "${BOTENV_LOCK_STORE_PASSWORD}",
    }


def test_redis_lock_store_defaults_port_and_password_is_optional():
    assert endpoints_of(lockStore=REDIS_LOCK)["lock_store"] == {
        "type": "redis",
        "url": "redis.db",
        "port": 6379,
    }


def test_custom_lock_store():
    lock = endpoints_of(
        lockStore={"type": "custom", "class": "acme.locks.Lock", "params": {"ttl": 30}}
    )["lock_store"]
    assert lock == {"type": "acme.locks.Lock", "ttl": 30}


# --- event broker --------------------------------------------------------------------------


def test_pika_event_broker_with_derived_queue():
    assert render_all(environment(eventBroker=BROKER), queue="").endpoints["event_broker"] == {
        "type": "pika",
        "url": "rabbitmq.mq",
        "port": 5672,
        "username": "${BOTENV_EVENT_BROKER_USERNAME}",
        "password": "${BOTENV_EVENT_BROKER_PASSWORD}",
        "queues": ["rasa_bots_production_events"],
        # its own fanout exchange: on Rasa's shared default, queues get each other's events
        "exchange_name": "rasa_bots_production_exchange",
    }


def test_pika_event_broker_with_named_queue_and_exchange():
    broker = endpoints_of(
        eventBroker={
            **BROKER,
            "port": 5673,
            "queue": "rasa_production_events",
            "exchangeName": "rasa-exchange",
        }
    )["event_broker"]
    assert broker["port"] == 5673
    assert broker["queues"] == ["rasa_production_events"]
    assert broker["exchange_name"] == "rasa-exchange"


def test_no_broker_no_event_broker_key():
    assert "event_broker" not in endpoints_of()


# --- models and actions --------------------------------------------------------------------


def test_pull_delivery_points_rasa_at_the_tag_on_the_model_server():
    assert endpoints_of(modelTag="candidate", pullIntervalSeconds=30)["models"] == {
        # rollout Restart: pinned to the digest the pod starts with (its env)
        "url": f"{MODEL_SERVER}/models/bots/tags/candidate?digest=${{BOTENV_MODEL_DIGEST}}",
        "wait_time_between_pulls": 30,
        # the environment's own credential, as a header (Rasa expands ${VAR})
        "headers": {"Authorization": "Bearer ${BOTENV_PULL_TOKEN}"},
    }


def test_model_url_tolerates_a_trailing_slash_on_the_base():
    assert (
        names.model_url("http://ms:8080/", "bots", "production")
        == "http://ms:8080/models/bots/tags/production"
    )


def test_pull_delivery_default_interval():
    assert endpoints_of()["models"]["wait_time_between_pulls"] == 10


def test_remote_storage_delivery_has_no_models_endpoint():
    rendered = render_all(
        environment(delivery="remoteStorage"), storage=storage(provider="s3", bucket="models")
    )
    assert "models" not in rendered.endpoints


def test_action_endpoint():
    assert endpoints_of(actionEndpoint={"url": "http://actions:5055/webhook"})[
        "action_endpoint"
    ] == {"url": "http://actions:5055/webhook"}
    assert "action_endpoint" not in endpoints_of()


def test_minimal_environment_has_only_the_models_endpoint():
    assert set(endpoints_of()) == {"models"}


# --- the ConfigMap itself ------------------------------------------------------------------


def test_secret_references_are_plain_yaml_scalars_rasa_expands():
    """Rasa expands ${VAR} only in plain (unquoted) scalars."""
    rendered = render_all(
        environment(
            trackerStore={"type": "sql", "host": "pg", "secretRef": {"name": "db"}},
            lockStore={"type": "redis", "host": "r", "secretRef": {"name": "redis"}},
            eventBroker=BROKER,
        )
    )
    text = rendered.configmap["data"][ENDPOINTS_FILE]
    refs = []

    def walk(node: yaml.Node) -> None:
        if isinstance(node, yaml.ScalarNode):
            if "${" in node.value:
                refs.append((node.value, node.style))
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                walk(k)
                walk(v)
        elif isinstance(node, yaml.SequenceNode):
            for v in node.value:
                walk(v)

    walk(yaml.compose(text))
    assert sorted(v for v, _ in refs) == sorted(
        [
            TRACKER_USER,
            TRACKER_PASSWORD,
            "${BOTENV_LOCK_STORE_PASSWORD}",
            "${BOTENV_EVENT_BROKER_USERNAME}",
            "${BOTENV_EVENT_BROKER_PASSWORD}",
            "Bearer ${BOTENV_PULL_TOKEN}",
            f"{MODEL_SERVER}/models/bots/tags/production?digest=${{BOTENV_MODEL_DIGEST}}",
        ]
    )
    assert all(style is None for _, style in refs)


def test_every_referenced_variable_is_defined_in_the_pod():
    """An unset ${VAR} aborts Rasa's start-up."""
    rendered = render_all(
        environment(
            trackerStore={"type": "mongod", "host": "m", "secretRef": {"name": "db"}},
            lockStore={"type": "redis", "host": "r", "secretRef": {"name": "redis"}},
            eventBroker=BROKER,
        )
    )
    text = rendered.configmap["data"][ENDPOINTS_FILE]
    defined = set(rendered.env)
    referenced = set(re.findall(r"\$\{([A-Z_]+)\}", text))
    assert referenced and referenced <= defined


def test_configmap_metadata():
    config = render_all(environment(name="production")).configmap
    meta = config["metadata"]
    assert meta["name"] == "rasa-production-endpoints"
    assert meta["namespace"] == "bots"
    assert meta["labels"]["botenv.dev/environment"] == "production"
    assert meta["ownerReferences"][0]["uid"] == UID
    assert meta["ownerReferences"][0]["controller"] is True


def test_probe_script_is_shipped_only_with_auth():
    assert set(render_all(environment()).configmap["data"]) == {ENDPOINTS_FILE}
    with_auth = render_all(environment(auth={"tokenSecretRef": {"name": "a"}})).configmap
    assert "readiness.py" in with_auth["data"]
    compile(with_auth["data"]["readiness.py"], "readiness.py", "exec")  # valid Python
