"""Action servers move with their models: one per environment, versioned with the tag."""

from __future__ import annotations

import pytest
import yaml

from tests.cluster.test_environments import deployment, env, model_file, replicasets, tag
from tests.support.kubectl import condition, eventually
from tests.support.pods import make_ready

pytestmark = pytest.mark.cluster

ACTIONS = "botenv.dev/environment={},app.kubernetes.io/component=action-server"


@pytest.fixture
def ns(kubectl):
    from tests.cluster.test_environments import _names

    name = f"actions-{next(_names)}"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def actions(kubectl, ns, environment):
    return kubectl.get("deployment", f"rasa-{environment}-actions", ns)


def image_of(deploy):
    return deploy["spec"]["template"]["spec"]["containers"][0]["image"]


def model_of(deploy):
    return deploy["spec"]["template"]["metadata"]["annotations"]["botenv.dev/model"]


def tag_with_actions(ns, name, model, image):
    body = tag(ns, name, model)
    body["spec"]["actionServerImage"] = image
    return body


def ready_all(kubectl, ns, environment):
    make_ready(kubectl, ns, f"botenv.dev/environment={environment}")
    return condition(kubectl.get("benv", environment, ns), "Ready").get("status") == "True"


def test_action_server_rolls_first_then_rasa_only_on_that_tag(kubectl, operator, ns):
    kubectl.apply(
        tag_with_actions(ns, "experimental", "m1.tar.gz", "acme/actions:1"),
        tag(ns, "production", "p1.tar.gz"),
        env(ns, "exp-a", modelTag="experimental", actionServer={"image": "acme/own:0"}),
        env(ns, "exp-b", modelTag="experimental", actionServer={"image": "acme/own:0"}),
        env(ns, "production", actionServer={"image": "acme/prod-actions:7"}),
    )
    for name in ("exp-a", "exp-b", "production"):
        eventually(lambda n=name: ready_all(kubectl, ns, n), message=f"{name} Ready")

    # The tag's image wins over the environment's; Rasa calls the environment's own server.
    assert image_of(actions(kubectl, ns, "exp-a")) == "acme/actions:1"
    assert image_of(actions(kubectl, ns, "production")) == "acme/prod-actions:7"
    cm = kubectl.get("configmap", "rasa-exp-a-endpoints", ns)["data"]["endpoints.yml"]
    assert yaml.safe_load(cm)["action_endpoint"] == {
        "url": f"http://rasa-exp-a-actions.{ns}.svc:5055/webhook"
    }
    svc = kubectl.get("service", "rasa-exp-a-actions", ns)
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "action-server"
    status = kubectl.get("benv", "exp-a", ns)["status"]
    assert status["actionServer"] == {
        "image": "acme/actions:1",
        "imageFrom": "tag",
        "endpoint": f"http://rasa-exp-a-actions.{ns}.svc:5055/webhook",
    }

    # Move the tag: new model and new actions together.
    model_file("m2.tar.gz")
    kubectl.patch(
        "mtag",
        "experimental",
        ns,
        {"spec": {"model": "m2.tar.gz", "actionServerImage": "acme/actions:2"}},
    )
    for name in ("exp-a", "exp-b"):
        eventually(
            lambda n=name: image_of(actions(kubectl, ns, n)) == "acme/actions:2",
            message=f"{name}'s action server rolls",
        )
        eventually(
            lambda n=name: (
                condition(kubectl.get("benv", n, ns), "Progressing").get("reason")
                == "WaitingForActionServer"
            ),
            message=f"{name} waits for its action server",
        )
    # Until the new action server pods are ready, Rasa stays on the old model.
    operator.settle()
    for name in ("exp-a", "exp-b"):
        assert model_of(deployment(kubectl, ns, name)) == "m1.tar.gz"
        assert kubectl.get("benv", name, ns)["status"]["model"]["name"] == "m1.tar.gz"

    for name in ("exp-a", "exp-b"):
        eventually(
            lambda n=name: (
                make_ready(kubectl, ns, ACTIONS.format(n))
                and model_of(deployment(kubectl, ns, n)) == "m2.tar.gz"
            ),
            message=f"{name}'s Rasa rolls once its action server is ready",
        )
        eventually(lambda n=name: ready_all(kubectl, ns, n), message=f"{name} Ready again")
        assert kubectl.get("benv", name, ns)["status"]["actionServer"]["image"] == "acme/actions:2"

    # The order is visible in the environment's Events.
    events = sorted(
        (e for e in kubectl.list("events", ns) if e["involvedObject"]["name"] == "exp-a"),
        key=lambda e: (e["lastTimestamp"], e["metadata"]["creationTimestamp"]),
    )
    reasons = [e["reason"] for e in events]

    def last(reason: str) -> int:
        return len(reasons) - 1 - reasons[::-1].index(reason)

    assert last("WaitingForActionServer") < last("ActionServerChanged")
    assert last("WaitingForActionServer") < last("ModelChanged")

    # Another tag's environment: neither its action server nor its Rasa rolled.
    operator.settle()
    assert len(replicasets(kubectl, ns, "production")) == 2  # one Rasa, one action server
    assert image_of(actions(kubectl, ns, "production")) == "acme/prod-actions:7"

    # The tag's history records model and actions together (rollback targets).
    history = kubectl.get("mtag", "experimental", ns)["status"]["history"]
    assert (history[0]["model"], history[0]["actionServerImage"]) == ("m1.tar.gz", "acme/actions:1")


def test_removing_the_action_server_removes_its_children(kubectl, operator, ns):
    kubectl.apply(
        tag(ns, "t", "r1.tar.gz"),
        env(
            ns,
            "shop",
            modelTag="t",
            actionServer={"image": "acme/shop:1"},
            license={"secretRef": {"name": "rasa-pro"}},
        ),
    )
    # The license Secret is missing: nothing is created, and the message names it.
    eventually(
        lambda: (
            "rasa-pro" in condition(kubectl.get("benv", "shop", ns), "Degraded").get("message", "")
        ),
        message="missing license Secret reported",
    )
    kubectl.run(
        "create",
        "secret",
        "generic",
        "rasa-pro",
        "-n",
        ns,
        "--from-literal=license=not-a-real-license",
    )
    operator.resync_now()
    eventually(lambda: actions(kubectl, ns, "shop"), message="action server created")
    # Rasa's Deployment is applied right after the action server's, in the same reconcile.
    rasa = eventually(lambda: deployment(kubectl, ns, "shop"), message="Rasa created")
    env_vars = {e["name"]: e for e in rasa["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env_vars["RASA_PRO_LICENSE"]["valueFrom"] == {
        "secretKeyRef": {"name": "rasa-pro", "key": "license"}
    }

    kubectl.patch("benv", "shop", ns, {"spec": {"actionServer": None}})
    eventually(lambda: actions(kubectl, ns, "shop") is None, message="action Deployment gone")
    eventually(
        lambda: kubectl.get("service", "rasa-shop-actions", ns) is None,
        message="action Service gone",
    )
    cm = kubectl.get("configmap", "rasa-shop-endpoints", ns)["data"]["endpoints.yml"]
    assert "action_endpoint" not in yaml.safe_load(cm)
