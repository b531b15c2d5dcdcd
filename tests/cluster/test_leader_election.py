"""Only one operator replica reconciles: leader election on a real Lease."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import kubernetes
import pytest

from botenv.kube.client import Kube
from botenv.leader import LeaderElector
from botenv.local.controlplane import ControlPlane
from botenv.local.processes import free_port
from tests.support.kubectl import Kubectl, eventually

pytestmark = pytest.mark.cluster

NAMESPACE = "lease-test"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.datetime.now(datetime.UTC)

    def __call__(self) -> datetime.datetime:
        return self.now


@pytest.fixture(scope="module")
def kube(control_plane: ControlPlane, kubectl: Kubectl) -> Kube:
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(
        config_file=str(control_plane.kubeconfig), client_configuration=config
    )
    return Kube(kubernetes.client.ApiClient(config))


def test_one_holder_until_the_lease_expires(kube: Kube) -> None:
    clock_a, clock_b = Clock(), Clock()
    a = LeaderElector(kube, NAMESPACE, "replica-a", name="expiry", clock=clock_a)
    b = LeaderElector(kube, NAMESPACE, "replica-b", name="expiry", clock=clock_b)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    assert a.try_acquire_or_renew(), "the holder renews"
    assert a.holder() == "replica-a"

    clock_b.now += datetime.timedelta(seconds=a.lease_seconds - 1)
    assert not b.try_acquire_or_renew(), "taken over before the lease expired"
    clock_b.now += datetime.timedelta(seconds=2)
    assert b.try_acquire_or_renew(), "an expired lease is taken over"
    assert b.holder() == "replica-b"

    # The old holder notices on its next renewal and stops (on_lost), not writes on.
    lost = threading.Event()
    a.retry_seconds = 0.05
    runner = threading.Thread(target=a.keep, args=(threading.Event(), lost.set))
    runner.start()
    runner.join(timeout=10)
    assert lost.is_set()
    assert b.holder() == "replica-b"


def test_release_hands_over(kube: Kube) -> None:
    a = LeaderElector(kube, NAMESPACE, "replica-a", name="release")
    b = LeaderElector(kube, NAMESPACE, "replica-b", name="release")
    assert a.acquire(threading.Event())
    assert not b.try_acquire_or_renew()
    a.release()
    assert b.try_acquire_or_renew(), "a released lease is free at once"


def _health(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.read().decode()
    except OSError:
        return ""


def _ready(port: int) -> tuple[int, str]:
    """/readyz: 200 on the leader, 503 on a standby."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def _json_lines(log: Path) -> list[dict]:
    """--log-format json: every line is one object with time, level, object and reason."""
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    for line in lines:
        assert {"time", "level", "object", "reason", "message"} <= line.keys(), line
    return lines


def _start(control_plane: ControlPlane, name: str, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "KUBECONFIG": str(control_plane.kubeconfig), "POD_NAME": name}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "botenv.cli",
            "operator",
            "--leader-elect",
            "--leader-election-namespace",
            NAMESPACE,
            "-n",
            "lease-test-watch",
            "--health-address",
            f"127.0.0.1:{port}",
            "--log-format",
            "json",
        ],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def test_second_replica_stands_by_then_takes_over(
    control_plane: ControlPlane, kube: Kube, kubectl: Kubectl, tmp_path: Path
) -> None:
    ports = free_port(), free_port()
    first = _start(control_plane, "operator-1", ports[0], tmp_path / "1.log")
    second = None
    try:
        eventually(
            lambda: _health(ports[0]) == "leader", timeout=30, message="first replica never led"
        )
        second = _start(control_plane, "operator-2", ports[1], tmp_path / "2.log")
        eventually(
            lambda: _health(ports[1]) == "standby",
            timeout=30,
            message="second replica's /healthz never answered",
        )
        time.sleep(3)  # a few retry periods: it must still stand by
        assert _health(ports[1]) == "standby"
        assert _ready(ports[1]) == (503, "standby")
        eventually(
            lambda: _ready(ports[0]) == (200, "leader"), timeout=30, message="leader not ready"
        )
        assert b"botenv operator started" not in (tmp_path / "2.log").read_bytes()
        lease = kubectl.get("lease", "botenv-operator", NAMESPACE)
        assert lease["spec"]["holderIdentity"] == "operator-1"

        first.terminate()  # a rolling update: the leader stops cleanly and releases
        assert first.wait(timeout=30) == 0
        eventually(
            lambda: _health(ports[1]) == "leader",
            timeout=15,
            message="the standby did not take over after the leader stopped",
        )
        eventually(
            lambda: b"botenv operator started" in (tmp_path / "2.log").read_bytes(),
            timeout=30,
            message="the new leader did not start reconciling",
        )
        lease = kubectl.get("lease", "botenv-operator", NAMESPACE)
        assert lease["spec"]["holderIdentity"] == "operator-2"
        assert lease["spec"]["leaseTransitions"] >= 1
        eventually(lambda: _ready(ports[1])[0] == 200, message="the new leader is ready")
        messages = [line["message"] for line in _json_lines(tmp_path / "2.log")]
        assert any(m.startswith("botenv operator started") for m in messages), messages
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def _status(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def test_healthz_fails_when_no_watch_event_or_resync_arrives(
    control_plane: ControlPlane, kubectl: Kubectl, tmp_path: Path
) -> None:
    """An operator whose watches deliver nothing and whose resync does not run for
    BOTENV_STALL_SECONDS fails /healthz (here: an empty namespace, a resync hours away, a
    stall limit of 3 s); the next event makes it healthy again."""
    watched = "stall-test-watch"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": watched}})
    port = free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(control_plane.kubeconfig),
        "BOTENV_RESYNC_SECONDS": "3600",
        "BOTENV_STALL_SECONDS": "3",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "botenv.cli", "operator", "-n", watched]
        + ["--health-address", f"127.0.0.1:{port}"],
        env=env,
        stdout=(tmp_path / "operator.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        eventually(lambda: _status(port, "/readyz") == (200, "leader"), timeout=30)
        code, text = eventually(
            lambda: (s := _status(port, "/healthz"))[0] == 503 and s,
            timeout=30,
            message="/healthz never failed",
        )
        assert text.startswith("no watch event and no resync for "), text
        kubectl.apply(
            {
                "apiVersion": "botenv.dev/v1alpha1",
                "kind": "ModelTag",
                "metadata": {"name": "wake", "namespace": watched},
                "spec": {"model": "m.tar.gz", "storage": {"provider": "local", "path": "/m"}},
            }
        )
        eventually(
            lambda: _status(port, "/healthz") == (200, "leader"),
            timeout=30,
            message="an event did not make /healthz pass again",
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
