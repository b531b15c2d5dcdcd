"""Fixtures for the end-to-end tests: real PostgreSQL, Redis and RabbitMQ servers that the
tests start themselves (tests.support.peers), each private to the session, on free
loopback ports. scripts/install-peers.sh installs their Debian packages on first use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# botenv's operator and model server, one pair per test module (module scope).
from tests.e2e.botenv_fixtures import botenv  # noqa: F401

# The e2e tier's own control plane (not the cluster tier's: its operator runs as a separate
# process here, with the checks that need real pods switched on), and the test kubelet.
from tests.e2e.kubelet_fixtures import (  # noqa: E402,F401
    control_plane,
    control_plane_tokens,
    kubectl,
    kubelet,
    kubelet_ns,
    rasa_python_venv,
    tiny_image,
)
from tests.support.peers import (
    PeerError,
    PostgresServer,
    RabbitMQServer,
    RedisServer,
    ensure_installed,
)

PEER_FIXTURES = {"postgres", "redis", "rabbitmq"}


@pytest.hookimpl(trylast=True)  # after -m/-k deselection
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Install the peers (first run only: apt-get, about 15 s) before any test starts, so
    # the install does not count against a test's timeout, and show its progress. A
    # failure is not raised here (it would abort every tier): the peer fixtures raise it.
    if config.option.collectonly:
        return
    if any(
        item.get_closest_marker("e2e") or PEER_FIXTURES & set(getattr(item, "fixturenames", ()))
        for item in items
    ):
        capman = config.pluginmanager.getplugin("capturemanager")
        with capman.global_and_fixture_disabled():
            try:
                ensure_installed()
            except PeerError:
                pass


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """PostgreSQL with a login role (user/password over TCP) owning its database."""
    with PostgresServer(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture(scope="session")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Redis with a password (requirepass), no persistence."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQServer]:
    """RabbitMQ with a user/password; stop() and start() keep its port and its data."""
    with RabbitMQServer(tmp_path_factory.mktemp("rabbitmq")) as server:
        yield server
