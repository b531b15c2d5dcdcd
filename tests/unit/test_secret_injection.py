"""Secrets are referenced, never copied: missing keys, optional keys, hashing, no leaks."""

from __future__ import annotations

import base64
import json

import pytest

from botenv.api import SpecError
from botenv.render import hashing
from botenv.render import secretenv as se
from botenv.render.status import Problem, environment_status
from tests.unit.builders import UID, environment, render_all, spec, storage

BROKER = {"host": "rabbitmq.mq", "secretRef": {"name": "rabbitmq"}}


def uses_of(**fields: object) -> list[se.SecretUse]:
    """The Secrets a user named (the pull token botenv provisions itself is left out)."""
    return [u for u in se.secret_uses(spec(**fields), None) if u.var != se.PULL_TOKEN]


# --- missing_keys ---------------------------------------------------------------------------


def test_a_missing_secret_is_reported_once_with_the_field_that_named_it():
    uses = uses_of(eventBroker=BROKER)
    problems = se.missing_keys(uses, {"rabbitmq": None})
    assert problems == ["Secret 'rabbitmq' not found (named by spec.eventBroker.secretRef)"]


def test_a_missing_key_names_the_key_and_the_field():
    uses = uses_of(auth={"tokenSecretRef": {"name": "rasa-auth", "key": "api-token"}})
    problems = se.missing_keys(uses, {"rasa-auth": frozenset({"token"})})
    assert len(problems) == 1
    assert "'rasa-auth'" in problems[0]
    assert "'api-token'" in problems[0]
    assert "spec.auth.tokenSecretRef" in problems[0]


def test_nothing_missing_gives_no_problems():
    uses = uses_of(auth={"tokenSecretRef": {"name": "rasa-auth"}}, eventBroker=BROKER)
    present = {"rasa-auth": frozenset({"token"}), "rabbitmq": frozenset({"username", "password"})}
    assert se.missing_keys(uses, present) == []


@pytest.mark.parametrize("keys", [{"username"}, {"password"}, {"username", "password"}])
def test_a_tracker_store_needs_either_username_or_password(keys):
    uses = uses_of(trackerStore={"type": "sql", "host": "pg", "secretRef": {"name": "db"}})
    assert se.missing_keys(uses, {"db": frozenset(keys)}) == []


def test_a_tracker_store_secret_with_neither_key_is_reported():
    uses = uses_of(trackerStore={"type": "sql", "host": "pg", "secretRef": {"name": "db"}})
    problems = se.missing_keys(uses, {"db": frozenset({"other"})})
    assert len(problems) == 1
    assert "'username'" in problems[0] and "'password'" in problems[0]
    assert "spec.trackerStore.secretRef" in problems[0]


@pytest.mark.parametrize("keys,missing", [({"username"}, "password"), ({"password"}, "username")])
def test_the_event_broker_needs_both_username_and_password(keys, missing):
    uses = uses_of(eventBroker=BROKER)
    problems = se.missing_keys(uses, {"rabbitmq": frozenset(keys)})
    assert len(problems) == 1
    assert f"'{missing}'" in problems[0]
    assert "spec.eventBroker.secretRef" in problems[0]


def test_the_lock_store_password_is_required_when_a_secret_is_named():
    uses = uses_of(lockStore={"type": "redis", "host": "r", "secretRef": {"name": "redis"}})
    assert se.missing_keys(uses, {"redis": frozenset()}) != []
    assert se.missing_keys(uses, {"redis": frozenset({"password"})}) == []


def test_custom_key_names_are_used():
    uses = uses_of(
        trackerStore={
            "type": "sql",
            "host": "pg",
            "secretRef": {"name": "db", "usernameKey": "user", "passwordKey": "pass"},
        }
    )
    assert {(u.var, u.key) for u in uses} == {
        ("BOTENV_TRACKER_STORE_USERNAME", "user"),
        ("BOTENV_TRACKER_STORE_PASSWORD", "pass"),
    }
    assert se.missing_keys(uses, {"db": frozenset({"pass"})}) == []


def test_storage_credentials_missing_for_remote_storage():
    parsed = spec(delivery="remoteStorage")
    uses = se.secret_uses(parsed, storage(provider="s3", bucket="b", secretRef={"name": "s3"}))
    problems = se.missing_keys(uses, {"s3": frozenset({"AWS_ACCESS_KEY_ID"})})
    assert len(problems) == 1 and "'AWS_SECRET_ACCESS_KEY'" in problems[0]


def test_a_missing_storage_secret_names_the_model_tag():
    parsed = spec(delivery="remoteStorage", modelTag="stable")
    uses = se.secret_uses(
        parsed, storage(provider="azure", bucket="c", secretRef={"name": "azure"})
    )
    problems = se.missing_keys(uses, {"azure": None})
    assert len(problems) == 1
    assert "'azure'" in problems[0] and "ModelTag stable" in problems[0]


def test_one_variable_from_two_secrets_is_rejected():
    """A dynamo tracker store and S3 remote storage both set the AWS variables."""
    parsed = spec(
        delivery="remoteStorage",
        trackerStore={
            "type": "dynamo",
            "tableName": "t",
            "region": "eu-west-1",
            "secretRef": {"name": "dynamo"},
        },
    )
    with pytest.raises(SpecError) as info:
        se.secret_uses(parsed, storage(provider="s3", bucket="b", secretRef={"name": "s3"}))
    assert "AWS_" in str(info.value)


# --- usable: absent optional keys are left out ----------------------------------------------


def test_usable_drops_absent_optional_keys_and_endpoints_omit_their_reference():
    body = environment(trackerStore={"type": "sql", "host": "pg", "secretRef": {"name": "db"}})
    uses = se.secret_uses(spec(trackerStore=body["spec"]["trackerStore"]), None)
    present = {"db": frozenset({"password"})}
    assert [u.key for u in se.usable(uses, present)] == ["password"]

    rendered = render_all(body, present=present)
    store = rendered.endpoints["tracker_store"]
    assert "username" not in store
    assert store["password"] == "${BOTENV_TRACKER_STORE_PASSWORD}"
    assert "BOTENV_TRACKER_STORE_USERNAME" not in rendered.env
    assert "BOTENV_TRACKER_STORE_PASSWORD" in rendered.env


def test_usable_drops_keys_of_a_missing_secret():
    uses = uses_of(eventBroker=BROKER)
    assert se.usable(uses, {"rabbitmq": None}) == []


# --- no secret ever leaves its Secret -------------------------------------------------------

SECRETS = {
    "rasa-auth": {"token": "S3CR3T-token-value-123", "jwt": "S3CR3T-jwt-value-456"},
    "tracker-db": {"username": "S3CR3T-db-user-789", "password": "S3CR3T-db-pass-012"},
    "redis": {"password": "S3CR3T-redis-pass-345"},
    "rabbitmq": {"username": "S3CR3T-mq-user-678", "password": "S3CR3T-mq-pass-901"},
    "channels": {"credentials.yml": "slack:\n  slack_token: S3CR3T-slack-234\n"},
    "s3-credentials": {
        "AWS_ACCESS_KEY_ID": "S3CR3T-AKIA-567",
        "AWS_SECRET_ACCESS_KEY": "S3CR3T-aws-secret-890",
    },
}


def leak_forms(value: str) -> list[str]:
    raw = value.encode()
    forms = [value, json.dumps(value)[1:-1], base64.b64encode(raw).decode()]
    # a distinctive fragment too, in case a value were embedded partly
    forms.append(value.split("S3CR3T-", 1)[-1].splitlines()[0])
    return forms


def test_no_secret_value_appears_in_anything_botenv_writes():
    body = environment(
        name="production",
        replicas=2,
        delivery="remoteStorage",
        auth={
            "tokenSecretRef": {"name": "rasa-auth", "key": "token"},
            "jwtSecretRef": {"name": "rasa-auth", "key": "jwt"},
        },
        trackerStore={"type": "sql", "host": "postgres.db", "secretRef": {"name": "tracker-db"}},
        lockStore={"type": "redis", "host": "redis.db", "secretRef": {"name": "redis"}},
        eventBroker={"host": "rabbitmq.mq", "secretRef": {"name": "rabbitmq"}},
        credentialsSecretRef={"name": "channels"},
    )
    s3 = storage(
        provider="s3",
        bucket="rasa-models",
        region="eu-west-1",
        endpoint="http://minio.minio:9000",
        secretRef={"name": "s3-credentials"},
    )
    present = {name: frozenset(data) for name, data in SECRETS.items()}
    parsed = spec(**body["spec"])
    uses = se.secret_uses(parsed, s3)
    assert se.missing_keys(uses, present) == []
    secrets_hash = hashing.secrets_hash(
        UID,
        [(u.secret, u.key, SECRETS[u.secret][u.key].encode()) for u in se.usable(uses, present)],
    )

    rendered = render_all(
        body, storage=s3, present=present, digest="etag-1", secrets_hash=secrets_hash
    )
    applied = {
        "model": {"tag": "production", "name": "20190506-100418.tar.gz", "digest": "etag-1"},
        "queue": "rasa_bots_production_events",
        "endpoint": "http://rasa-production.bots.svc:5005",
    }
    status = environment_status(
        previous={},
        generation=1,
        problem=None,
        deployment=rendered.deployment,
        replicas=2,
        applied=applied,
        timestamp="2024-01-01T00:00:00Z",
    )
    problem_status = environment_status(
        previous=status,
        generation=2,
        problem=Problem("SecretMissing", "; ".join(se.missing_keys(uses, {}))),
        deployment=None,
        replicas=2,
        applied=None,
        timestamp="2024-01-01T00:01:00Z",
    )

    written = json.dumps(
        [
            rendered.configmap,
            rendered.deployment,
            rendered.service,
            status,
            problem_status,
            secrets_hash,
        ]
    )
    for data in SECRETS.values():
        for value in data.values():
            for form in leak_forms(value):
                assert form not in written, f"secret leaked: {form!r}"

    # ...and every secret is still delivered, by reference
    container = rendered.container
    refs = {
        (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container["env"]
        if "valueFrom" in e
    }
    for volume in rendered.pod["volumes"]:
        if "secret" in volume:
            refs |= {(volume["secret"]["secretName"], i["key"]) for i in volume["secret"]["items"]}
    assert refs == {(name, key) for name, data in SECRETS.items() for key in data}
    assert all("value" not in e for e in container["env"] if "valueFrom" in e)


# --- secrets_hash ---------------------------------------------------------------------------

VALUES = [("db", "password", b"one"), ("db", "username", b"rasa")]


def test_secrets_hash_is_stable_and_order_independent():
    assert hashing.secrets_hash(UID, VALUES) == hashing.secrets_hash(UID, list(VALUES))
    assert hashing.secrets_hash(UID, VALUES) == hashing.secrets_hash(UID, VALUES[::-1])


def test_secrets_hash_changes_when_a_value_is_rotated():
    rotated = [("db", "password", b"two"), ("db", "username", b"rasa")]
    assert hashing.secrets_hash(UID, VALUES) != hashing.secrets_hash(UID, rotated)


def test_secrets_hash_differs_between_environments():
    assert hashing.secrets_hash("uid-a", VALUES) != hashing.secrets_hash("uid-b", VALUES)


def test_secrets_hash_does_not_confuse_boundaries():
    assert hashing.secrets_hash(UID, [("a", "bc", b"d")]) != hashing.secrets_hash(
        UID, [("ab", "c", b"d")]
    )


def test_secrets_hash_fits_an_annotation():
    value = hashing.secrets_hash(UID, VALUES)
    assert 0 < len(value) <= 63
    assert b"one" not in value.encode()


def test_stable_hash_follows_content_not_key_order():
    one = {"endpoints.yml": "models: {}\n", "readiness.py": "x"}
    two = {"readiness.py": "x", "endpoints.yml": "models: {}\n"}
    assert hashing.stable_hash(one) == hashing.stable_hash(two)
    assert hashing.stable_hash(one) != hashing.stable_hash({**one, "endpoints.yml": "{}\n"})


def test_pull_delivery_uses_the_provisioned_pull_token():
    uses = se.secret_uses(spec(), None)
    (token,) = [u for u in uses if u.var == se.PULL_TOKEN]
    assert (token.secret, token.key) == ("rasa-production-pull", "token")
    assert not token.optional
    assert not [
        u for u in se.secret_uses(spec(delivery="remoteStorage"), None) if u.var == se.PULL_TOKEN
    ]
