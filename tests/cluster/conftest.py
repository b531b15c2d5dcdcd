"""Fixtures for tests against the project's own real control plane."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.support.controlplane import ControlPlane, find_binaries
from tests.support.emulators import MotoServer
from tests.support.kubectl import Kubectl
from tests.support.operator import OperatorProcess

REPO = Path(__file__).resolve().parents[2]

# A non-admin identity, as a service account of a namespace would be seen.
VIEWER_TOKEN = "botenv-viewer-token"
VIEWER_USER = "system:serviceaccount:botenv-test:viewer"
VIEWER_GROUPS = ["system:serviceaccounts", "system:serviceaccounts:botenv-test"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Build the binaries (first run only, 5-10 min) before any test starts, so
    # the build does not count against a test's timeout (pytest-timeout).
    if config.option.collectonly:
        return
    if any("control_plane" in getattr(item, "fixturenames", ()) for item in items):
        capman = config.pluginmanager.getplugin("capturemanager")
        with capman.global_and_fixture_disabled():
            find_binaries()


@pytest.fixture(scope="session")
def control_plane_tokens() -> dict[str, tuple[str, Sequence[str]]]:
    """Extra bearer tokens the apiserver accepts (read once at start).

    Override this fixture in a conftest to add the identities a test suite needs.
    """
    return {VIEWER_TOKEN: (VIEWER_USER, VIEWER_GROUPS)}


@pytest.fixture(scope="session")
def control_plane(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    control_plane_tokens: dict[str, tuple[str, Sequence[str]]],
) -> Iterator[ControlPlane]:
    """A started etcd + kube-apiserver + kube-controller-manager for the session."""
    capman = request.config.pluginmanager.getplugin("capturemanager")
    # A first run builds the binaries (~10 min): let its progress reach the terminal.
    with capman.global_and_fixture_disabled():
        bin_dir = find_binaries()
    with ControlPlane(
        tmp_path_factory.mktemp("control-plane"),
        extra_tokens=control_plane_tokens,
        bin_dir=bin_dir,
    ) as cp:
        yield cp


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    """kubectl as the cluster admin, with the botenv CRDs installed."""
    client = Kubectl(control_plane.kubeconfig)
    client.run("apply", "-f", str(REPO / "crds"))
    client.run("wait", "--for=condition=Established", "crd/botenvironments.botenv.dev",
               "crd/modeltags.botenv.dev", "--timeout=60s")
    return client


@pytest.fixture(scope="session")
def operator(control_plane: ControlPlane, kubectl: Kubectl) -> Iterator[OperatorProcess]:
    """The botenv operator, running in this process (its write counters are readable)."""
    process = OperatorProcess(control_plane.kubeconfig, {
        "BOTENV_MODEL_SERVER_URL": "http://botenv-model-server.botenv-system.svc:8080",
        # Secrets are not watched: tests trigger the resync themselves (resync_now).
        "BOTENV_RESYNC_SECONDS": "3600",
        # Storage stats are re-done on every resync_now() a test triggers.
        "BOTENV_RESOLVE_SECONDS": "0.5",
    }).start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A real S3 API (moto server) that checks credentials."""
    with MotoServer(tmp_path_factory.mktemp("moto")) as server:
        yield server
