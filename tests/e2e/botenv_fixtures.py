"""botenv itself for the end-to-end tests: its operator and model server as their own
processes, under the chart's RBAC, against the e2e control plane and its test kubelet."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from botenv.local.controlplane import ControlPlane
from botenv.local.processes import free_port, own_environ
from tests.cluster.conftest import MODEL_SERVER_TOKEN, OPERATOR_TOKEN, install_rbac
from tests.support.kubectl import Kubectl, eventually
from tests.support.kubelet import Image, TestKubelet
from tests.support.operator import EMULATORS_ALLOWED, model_server_argv

MODEL_SERVER_SERVICE = "botenv-model-server.botenv-system:8080"
# botenv's image as the e2e operator names it (BOTENV_IMAGE); the kubelet runs it from here.
BOTENV_IMAGE = "ghcr.io/botenv/botenv:e2e"


class Process:
    """A botenv component as its own process, its log in a file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        # Not the settings another tier's in-process operator left in os.environ.
        self.proc = subprocess.Popen(
            argv, env=own_environ(**env), stdout=log.open("wb"), stderr=subprocess.STDOUT
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_operator(control_plane: ControlPlane, workdir: Path) -> Process:
    """botenv's operator as its own process, as the chart's operator ServiceAccount."""
    return Process(
        [sys.executable, "-m", "botenv", "operator"],
        {
            "KUBECONFIG": str(control_plane.kubeconfig_for(OPERATOR_TOKEN)),
            # Secrets are not watched: a short resync notices a rotation (and an outage) soon.
            "BOTENV_RESYNC_SECONDS": "5",
            "BOTENV_RESOLVE_SECONDS": "2",
            # The defaults, said out loud: these tests are about them.
            "BOTENV_VERIFY_MODELS": "true",
            "BOTENV_CHECK_DEPENDENCIES": "true",
            "BOTENV_IMAGE": BOTENV_IMAGE,
            **EMULATORS_ALLOWED,
        },
        workdir / "operator.log",
    )


def wait_started(operator: Process) -> None:
    eventually(
        lambda: b"botenv operator started" in operator.log.read_bytes(),
        timeout=60,
        message="the operator did not start",
    )


@pytest.fixture(scope="module")
def botenv(
    control_plane: ControlPlane,
    kubectl: Kubectl,
    kubelet: TestKubelet,
    rasa_python_venv: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Process]]:
    """botenv as installed: the model server and the operator, each as its own process with
    its ServiceAccount's token and the chart's RBAC (one pair per test module). Its image
    (what a training Job's upload step runs) is this checkout's `python -m botenv`."""
    kubelet.images[BOTENV_IMAGE] = Image(entrypoint=(sys.executable, "-m", "botenv"))
    install_rbac(kubectl)
    workdir = tmp_path_factory.mktemp("botenv")
    port = free_port()
    model_server = Process(
        model_server_argv(port, workdir / "cache"),
        {"KUBECONFIG": str(control_plane.kubeconfig_for(MODEL_SERVER_TOKEN)), **EMULATORS_ALLOWED},
        workdir / "model-server.log",
    )
    # The pods reach it through its Service name, as in a cluster (the kubelet's proxy).
    kubelet.service_hosts[MODEL_SERVER_SERVICE] = f"127.0.0.1:{port}"
    operator = start_operator(control_plane, workdir)
    processes = {"model server": model_server, "operator": operator}
    try:
        wait_started(operator)
        yield processes
    finally:
        for process in processes.values():
            process.stop()
        kubelet.service_hosts.pop(MODEL_SERVER_SERVICE, None)
        kubelet.images.pop(BOTENV_IMAGE, None)
        for name, process in processes.items():
            text = process.log.read_text(errors="replace")
            assert "Forbidden" not in text, f"the {name} was denied something:\n{text[-3000:]}"
