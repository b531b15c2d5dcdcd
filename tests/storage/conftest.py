"""Session-wide storage emulators, started by the tests themselves (CI starts bare)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.emulators import Azurite, FakeGCSServer, HTTPOrigin, MotoServer


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with MotoServer(tmp_path_factory.mktemp("moto"), auth=True) as server:
        yield server


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGCSServer]:
    with FakeGCSServer(tmp_path_factory.mktemp("gcs")) as server:
        yield server


@pytest.fixture(scope="session")
def azurite(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Azurite]:
    emulator = Azurite(tmp_path_factory.mktemp("azurite"))
    # The first run installs Azurite with npm (~25 s): let its progress reach the terminal.
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def http_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HTTPOrigin]:
    with HTTPOrigin(tmp_path_factory.mktemp("origin"), token="origin-token") as origin:
        yield origin
