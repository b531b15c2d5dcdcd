"""Fixtures for tests against the project's own real control plane."""

from __future__ import annotations

import os
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import yaml

from botenv.local.controlplane import ControlPlane, find_binaries
from botenv.local.processes import free_port
from botenv.runtime.health import serve_health
from tests.support.emulators import MotoServer
from tests.support.kubectl import Kubectl, eventually
from tests.support.operator import EMULATORS_ALLOWED, OperatorProcess, model_server_argv

REPO = Path(__file__).resolve().parents[2]

# Models live in a real directory (storage provider `local`): the operator runs in this
# process, so it resolves them by reading the files, as it would a mounted volume. It is the
# one local storage root the storage policy allows here.
MODELS = Path(tempfile.mkdtemp(prefix="botenv-test-models-"))
# The storage policy of the tests' operator and model server: MODELS, and the storage
# emulators.
STORAGE_POLICY = {"BOTENV_STORAGE_LOCAL_ROOTS": str(MODELS), **EMULATORS_ALLOWED}

# A non-admin identity, as a service account of a namespace would be seen.
VIEWER_TOKEN = "botenv-viewer-token"
VIEWER_USER = "system:serviceaccount:botenv-test:viewer"
VIEWER_GROUPS = ["system:serviceaccounts", "system:serviceaccounts:botenv-test"]

# The chart's components, as the API server sees their pods (manifests/install.yaml installs
# them in botenv-system): the operator and the model server run as these in every cluster
# test, under exactly the RBAC the chart grants.
INSTALL_NAMESPACE = "botenv-system"
SA_GROUPS = ["system:serviceaccounts", f"system:serviceaccounts:{INSTALL_NAMESPACE}"]
OPERATOR_TOKEN = "botenv-operator-sa-token"
OPERATOR_USER = f"system:serviceaccount:{INSTALL_NAMESPACE}:botenv-operator"
MODEL_SERVER_TOKEN = "botenv-model-server-sa-token"
MODEL_SERVER_USER = f"system:serviceaccount:{INSTALL_NAMESPACE}:botenv-model-server"
# A second install of the chart, release botenv-scoped, with a namespace list (helm --set
# watch.namespaces={team-a}); cluster-scoped RBAC names carry the release name, so the two
# installs do not overwrite each other.
SCOPED_NAMESPACE = "botenv-scoped"
SCOPED_OPERATOR_TOKEN = "botenv-scoped-operator-sa-token"
SCOPED_OPERATOR_USER = f"system:serviceaccount:{SCOPED_NAMESPACE}:botenv-scoped-operator"
# People, for the chart's user roles (groups are what RoleBindings name).
PEOPLE = {"alice": ["release-managers"]}
RBAC_KINDS = (
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
)


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
    return {
        VIEWER_TOKEN: (VIEWER_USER, VIEWER_GROUPS),
        OPERATOR_TOKEN: (OPERATOR_USER, SA_GROUPS),
        MODEL_SERVER_TOKEN: (MODEL_SERVER_USER, SA_GROUPS),
        SCOPED_OPERATOR_TOKEN: (
            SCOPED_OPERATOR_USER,
            ["system:serviceaccounts", f"system:serviceaccounts:{SCOPED_NAMESPACE}"],
        ),
        **{f"{name}-token": (name, groups) for name, groups in PEOPLE.items()},
    }


def install_rbac(kubectl: Kubectl) -> list[dict]:
    """Apply the chart's ServiceAccounts and RBAC as manifests/install.yaml has them."""
    docs = [
        d
        for d in yaml.safe_load_all((REPO / "manifests" / "install.yaml").read_text())
        if d and d.get("kind") in RBAC_KINDS
    ]
    kubectl.apply(*docs)
    return docs


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
    client.apply_crds(control_plane.version)
    return client


@pytest.fixture(scope="session")
def chart_rbac(kubectl: Kubectl) -> list[dict]:
    return install_rbac(kubectl)


@pytest.fixture(scope="session")
def operator(
    control_plane: ControlPlane, kubectl: Kubectl, chart_rbac: list[dict]
) -> Iterator[OperatorProcess]:
    """The botenv operator, running in this process (its write counters are readable), as
    the chart's operator ServiceAccount: every cluster test doubles as a check that the
    chart grants what the operator needs."""
    process = OperatorProcess(
        control_plane.kubeconfig_for(OPERATOR_TOKEN),
        {
            "BOTENV_MODEL_SERVER_URL": "http://botenv-model-server.botenv-system.svc:8080",
            # Secrets are not watched: tests trigger the resync themselves (resync_now).
            "BOTENV_RESYNC_SECONDS": "3600",
            # Storage stats are re-done on every resync_now() a test triggers.
            "BOTENV_RESOLVE_SECONDS": "0.5",
            # Pods here are only marked Ready (tests/support/pods.py): no Rasa answers /status.
            # tests/e2e runs real Rasa pods with the check on.
            "BOTENV_VERIFY_MODELS": "false",
            # Hosts in these tests' specs (pg, redis, mq) do not exist; tests/e2e runs real ones.
            "BOTENV_CHECK_DEPENDENCIES": "false",
            **STORAGE_POLICY,
        },
    ).start()
    yield process
    process.stop()


@pytest.fixture
def health(operator: OperatorProcess) -> Iterator[str]:
    """The base URL of the health port as `botenv operator --health-address` serves it, for
    this process's operator (it leads: no election in this tier)."""
    port = free_port()
    server = serve_health(f"127.0.0.1:{port}", lambda: True, stall_seconds=3600)
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A real S3 API (moto server) that checks credentials."""
    with MotoServer(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="module")
def model_server(control_plane, kubectl, chart_rbac, tmp_path_factory) -> Iterator[str]:
    """The model server as its own process, as the chart's model-server ServiceAccount."""
    port = free_port()
    workdir = tmp_path_factory.mktemp("model-server")
    log = (workdir / "model-server.log").open("w")
    proc = subprocess.Popen(
        model_server_argv(port, workdir / "cache"),
        env={
            **os.environ,
            **STORAGE_POLICY,
            "KUBECONFIG": str(control_plane.kubeconfig_for(MODEL_SERVER_TOKEN)),
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    eventually(
        lambda: _answers(url + "/readyz"),
        timeout=60,
        message=f"model server ready (log: {workdir / 'model-server.log'})",
    )
    yield url
    proc.terminate()
    proc.wait(timeout=15)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False
