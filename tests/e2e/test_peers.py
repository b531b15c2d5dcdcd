"""The e2e tests' peers themselves: each starts, takes a password login over TCP (and
refuses a wrong one), and does its basic job; stopped and started again on the same port,
the stores keep their data."""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

import pika
import pika.exceptions
import pytest

from tests.support.peers import (
    PeerError,
    PostgresServer,
    RabbitMQServer,
    RedisReplyError,
    RedisServer,
)

pytestmark = pytest.mark.e2e


def _name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


# -- PostgreSQL -----------------------------------------------------------------------


def test_postgres_password_login_and_sql(postgres: PostgresServer) -> None:
    table = _name("peers_check")
    assert postgres.query("SELECT current_user, current_database()") == [
        (postgres.user, postgres.database)
    ]
    postgres.query(f"CREATE TABLE {table} (id int PRIMARY KEY, note text)")
    postgres.query(f"INSERT INTO {table} VALUES (1, 'hello'), (2, NULL)")
    assert postgres.query(f"SELECT id, note FROM {table} ORDER BY id") == [
        ("1", "hello"),
        ("2", None),
    ]
    # The TCP login checks the password (scram-sha-256), it does not trust.
    with pytest.raises(PeerError, match="password authentication failed"):
        postgres.query("SELECT 1", password="wrong-password")
    [(verifier,)] = postgres.query(
        f"SELECT rolpassword FROM pg_authid WHERE rolname = '{postgres.user}'", admin=True
    )
    assert verifier.startswith("SCRAM-SHA-256$")
    # The role may create databases (Rasa's SQL tracker store creates its own).
    assert postgres.query("SELECT rolcreatedb FROM pg_roles WHERE rolname = current_user") == [
        ("t",)
    ]


def test_postgres_restart_keeps_rows_on_same_port(postgres: PostgresServer) -> None:
    table = _name("peers_restart")
    postgres.query(f"CREATE TABLE {table} (v text)")
    postgres.query(f"INSERT INTO {table} VALUES ('kept')")
    port = postgres.port
    postgres.stop()
    try:
        assert not postgres.running
        with pytest.raises(PeerError):
            postgres.query("SELECT 1")
    finally:
        postgres.start()
    assert postgres.port == port
    assert postgres.query(f"SELECT v FROM {table}") == [("kept",)]


# -- Redis ----------------------------------------------------------------------------


def test_redis_password_login_and_keys(redis: RedisServer) -> None:
    assert redis.password
    with redis.client(auth=False) as anonymous, pytest.raises(RedisReplyError, match="NOAUTH"):
        anonymous.call("GET", "anything")
    with pytest.raises(RedisReplyError, match="WRONGPASS"):
        redis.client(password="wrong-password")
    prefix = _name("tracker")
    assert redis.command("SET", f"{prefix}:alice", '{"events": []}') == "OK"
    redis.command("SET", f"{prefix}:bob", "{}")
    assert redis.keys(f"{prefix}:*") == [f"{prefix}:alice", f"{prefix}:bob"]
    assert redis.get(f"{prefix}:alice") == b'{"events": []}'
    assert redis.get(f"{prefix}:nobody") is None


def test_a_taken_port_fails_with_the_log_tail(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        server = RedisServer(tmp_path, port=holder.getsockname()[1])
        with pytest.raises(PeerError, match="(?i)address already in use") as failure:
            server.start()
    assert str(server.log_path) in str(failure.value)
    assert not server.running


# -- RabbitMQ -------------------------------------------------------------------------


def test_rabbitmq_password_login_and_queue(rabbitmq: RabbitMQServer) -> None:
    queue = _name("peers")
    rabbitmq.declare_queue(queue)
    rabbitmq.publish(queue, '{"event": "user"}', app_id="production")
    rabbitmq.publish(queue, '{"event": "bot"}', app_id="experimental")
    expected = [(b'{"event": "user"}', "production"), (b'{"event": "bot"}', "experimental")]
    # Reading leaves the messages in the queue, in their order, unless told to remove them.
    assert [(m.body, m.app_id) for m in rabbitmq.messages(queue)] == expected
    assert [(m.body, m.app_id) for m in rabbitmq.messages(queue, remove=True)] == expected
    assert rabbitmq.message_count(queue) == 0

    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        with rabbitmq.channel(password="wrong-password"):
            pass
    # No guest account: only the node's own user.
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        with rabbitmq.channel(user="guest", password="guest"):
            pass


def test_rabbitmq_restart_on_same_port_keeps_durable_messages(
    rabbitmq: RabbitMQServer,
) -> None:
    queue = _name("peers_durable")
    rabbitmq.declare_queue(queue, durable=True)
    sent = [(f"event {i}".encode(), f"env-{i % 2}") for i in range(3)]
    for body, app_id in sent:
        rabbitmq.publish(queue, body, app_id=app_id, persistent=True)
    port, node = rabbitmq.port, rabbitmq.node

    rabbitmq.stop()
    try:
        assert not rabbitmq.running
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            with rabbitmq.channel():
                pass
    finally:
        rabbitmq.start()

    assert (rabbitmq.port, rabbitmq.node) == (port, node)
    assert [(m.body, m.app_id) for m in rabbitmq.messages(queue)] == sent
