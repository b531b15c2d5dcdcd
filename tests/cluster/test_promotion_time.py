"""A tag's status.servedAt on the real API server: the time every environment on the tag
first served its current resolution, and `botenv status` / `botenv history` showing
servedAt - resolvedAt as the promotion time of each move.

Pods are marked Ready through the API and the model check is off in this tier, so "served"
is: status.model is the tag's model, Ready is True and every desired replica is ready and
of the current template (tests/e2e asks real Rasa pods)."""

from __future__ import annotations

import datetime
import itertools

import pytest

from botenv.cli import output
from tests.cluster.test_cli import botenv, ok
from tests.cluster.test_environments import env, replicasets, tag
from tests.cluster.test_operator_metrics import SHARED, ready
from tests.support.kubectl import eventually

pytestmark = pytest.mark.cluster

_names = itertools.count()
USERS = ("production", "canary")


@pytest.fixture
def ns(kubectl):
    name = f"promoted-{next(_names)}"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def tag_status(kubectl, ns: str) -> dict:
    return kubectl.get("mtag", "production", ns).get("status") or {}


def seconds(status: dict) -> int:
    def at(field: str) -> datetime.datetime:
        return datetime.datetime.fromisoformat(status[field].replace("Z", "+00:00"))

    return int((at("servedAt") - at("resolvedAt")).total_seconds())


def promoted(text: str) -> str:
    """The PROMOTED cell of the tag's row in `botenv status`."""
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("TAG "))
    return lines[header + 1][lines[header].index("PROMOTED") :].split()[0]


def served(kubectl, ns: str, model: str) -> None:
    for name in USERS:
        eventually(
            lambda n=name: (
                ready(kubectl, ns, n)
                and kubectl.get("benv", n, ns)["status"]["model"]["name"] == model
            ),
            message=f"{name} serves {model}",
        )


def test_a_move_records_when_every_environment_served_it(kubectl, operator, control_plane, ns):
    def cli(*args: str) -> str:
        return ok(botenv(control_plane.kubeconfig, *args, "-n", ns))

    kubectl.apply(
        tag(ns, "production", "promoted-v1.tar.gz"),
        env(ns, "production"),
        env(ns, "canary", modelTag="production", replicas=2, **SHARED),
    )
    served(kubectl, ns, "promoted-v1.tar.gz")
    first = eventually(
        lambda: tag_status(kubectl, ns) if "servedAt" in tag_status(kubectl, ns) else None,
        message="servedAt of v1",
    )
    assert first["servedAt"] >= first["resolvedAt"]

    # The move: a new resolution, without servedAt until both environments serve it.
    tag(ns, "production", "promoted-v2.tar.gz")  # uploads the model first, as a release does
    kubectl.patch("mtag", "production", ns, {"spec": {"model": "promoted-v2.tar.gz"}})
    moved = eventually(
        lambda: (
            tag_status(kubectl, ns)
            if tag_status(kubectl, ns).get("model") == "promoted-v2.tar.gz"
            else None
        ),
        message="the tag resolves v2",
    )
    assert "servedAt" not in moved
    assert moved["history"][0]["servedAt"] == first["servedAt"]
    for name in USERS:
        eventually(lambda n=name: len(replicasets(kubectl, ns, n)) == 2, message=f"{name} rolls")
    operator.settle()
    assert "servedAt" not in tag_status(kubectl, ns)
    assert promoted(cli("status")) == "rolling"

    served(kubectl, ns, "promoted-v2.tar.gz")
    done = eventually(
        lambda: tag_status(kubectl, ns) if "servedAt" in tag_status(kubectl, ns) else None,
        message="servedAt of v2",
    )
    assert done["resolvedAt"] == moved["resolvedAt"]
    assert done["servedAt"] >= done["resolvedAt"]
    took = output.duration(seconds(done))
    assert promoted(cli("status")) == took
    history = cli("history", "production").splitlines()
    assert history[0].split()[-1] == "PROMOTED"
    assert history[1].split()[:2] == ["*", "promoted-v2.tar.gz"]
    assert history[1].split()[-1] == took
    assert history[2].split()[0] == "promoted-v1.tar.gz"
    assert history[2].split()[-1] == output.duration(seconds(first))

    # Resyncs keep it where it was.
    operator.resync_now()
    operator.settle()
    assert tag_status(kubectl, ns)["servedAt"] == done["servedAt"]
