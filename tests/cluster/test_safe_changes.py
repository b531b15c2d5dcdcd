"""Changes that must not slip through unnoticed or half-done, on the real API server:
rotating any Secret an environment's pods read rolls exactly those pods; botenv's own
variables cannot be redefined in spec.env; a change the API server rejects leaves every
child as it was; a spec that will lose conversations says so."""

from __future__ import annotations

import itertools
import json

import pytest
import yaml

from tests.cluster.test_environments import deployment, env, secret, tag, wait_degraded
from tests.support.kubectl import CEL_SINCE, condition, eventually
from tests.support.pods import make_ready

pytestmark = pytest.mark.cluster

_names = itertools.count()
SECRETS_HASH = "botenv.dev/secrets-hash"
ACTIONS = "botenv.dev/environment=bot,app.kubernetes.io/component=action-server"


@pytest.fixture
def ns(kubectl):
    name = f"safe-{next(_names)}"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def template_hash(kubectl, ns: str, name: str) -> str | None:
    deploy = kubectl.get("deployment", name, ns)
    annotations = (deploy or {}).get("spec", {}).get("template", {}).get("metadata", {})
    return (annotations.get("annotations") or {}).get(SECRETS_HASH)


def test_rotating_any_secret_the_pods_read_rolls_exactly_their_pods(kubectl, operator, ns):
    kubectl.apply(
        tag(ns, "t", "m.tar.gz"),
        secret(ns, "api-key", key="v1"),
        secret(ns, "bulk", A="1", B="2"),
        secret(ns, "actions-key", key="a1"),
        secret(ns, "unrelated", key="u1"),
        secret(ns, "mounted", key="m1"),
        env(
            ns,
            "bot",
            modelTag="t",
            env=[
                {
                    "name": "API_KEY",
                    "valueFrom": {"secretKeyRef": {"name": "api-key", "key": "key"}},
                }
            ],
            envFrom=[{"secretRef": {"name": "bulk"}}],
            volumes=[{"name": "extra", "secret": {"secretName": "mounted"}}],
            volumeMounts=[{"name": "extra", "mountPath": "/opt/extra", "readOnly": True}],
            actionServer={
                "image": "registry.example/actions:1",
                "env": [
                    {
                        "name": "ACTIONS_KEY",
                        "valueFrom": {"secretKeyRef": {"name": "actions-key", "key": "key"}},
                    }
                ],
            },
        ),
    )
    eventually(lambda: make_ready(kubectl, ns, ACTIONS), message="the action server's pod")
    rasa = eventually(lambda: template_hash(kubectl, ns, "rasa-bot"), message="rasa hash")
    actions = eventually(
        lambda: template_hash(kubectl, ns, "rasa-bot-actions"), message="action server hash"
    )

    def after_rotating(name: str, **data: str) -> tuple[str | None, str | None]:
        kubectl.apply(secret(ns, name, **data))
        operator.resync_now()  # Secrets are not watched: the resync sees a rotation
        for _ in range(3):  # Rasa rolls once the action server's pods are Ready again
            make_ready(kubectl, ns, ACTIONS)
            operator.settle()
        return template_hash(kubectl, ns, "rasa-bot"), template_hash(
            kubectl, ns, "rasa-bot-actions"
        )

    # A Secret no pod reads: nothing rolls.
    assert after_rotating("unrelated", key="u2") == (rasa, actions)
    # spec.env's secretKeyRef: the Rasa pods roll, the action server's do not.
    rasa_2, actions_2 = after_rotating("api-key", key="v2")
    assert rasa_2 != rasa and actions_2 == actions
    # spec.envFrom's Secret, any key of it.
    rasa_3, actions_3 = after_rotating("bulk", A="1", B="changed")
    assert rasa_3 != rasa_2 and actions_3 == actions
    # A Secret volume of spec.volumes.
    rasa_3b, actions_3b = after_rotating("mounted", key="m2")
    assert rasa_3b != rasa_3 and actions_3b == actions
    rasa_3 = rasa_3b
    # The action server's own env: only its pods roll.
    rasa_4, actions_4 = after_rotating("actions-key", key="a2")
    assert rasa_4 == rasa_3 and actions_4 != actions
    # Secret values never reach the template, only the salted hash does.
    text = json.dumps(kubectl.get("deployment", "rasa-bot", ns))
    assert "changed" not in text and "v2" not in text


def test_botenv_own_variables_cannot_be_redefined_in_env(control_plane, kubectl, operator, ns):
    kubectl.apply(
        tag(ns, "t", "m.tar.gz"),
        secret(ns, "lic", license="rasa-pro-license"),
        env(ns, "bot", modelTag="t", license={"secretRef": {"name": "lic"}}),
    )
    before = eventually(lambda: deployment(kubectl, ns, "bot"), message="Deployment")
    # RASA_ENVIRONMENT (another app_id on every broker message): refused at kubectl apply
    # where the server enforces the CRD's CEL rules, else by the operator.
    change = kubectl.run(
        "patch",
        "benv",
        "bot",
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"env": [{"name": "RASA_ENVIRONMENT", "value": "other"}]}}),
        check=False,
    )
    if control_plane.version >= CEL_SINCE:
        assert change.returncode != 0
        assert "spec.env[0]: Invalid value" in change.stderr, change.stderr
        assert "is set by botenv itself" in change.stderr
    else:
        assert change.returncode == 0, change.stderr
        degraded = wait_degraded(kubectl, ns, "bot", "InvalidSpec")
        assert "spec.env[0].name: RASA_ENVIRONMENT is set by botenv itself" in degraded["message"]
        kubectl.patch("benv", "bot", ns, {"spec": {"env": None}})
        eventually(
            lambda: condition(kubectl.get("benv", "bot", ns), "Degraded")["status"] == "False"
        )
    # RASA_PRO_LICENSE, which this spec's license injects by secretKeyRef: a literal would
    # replace it. Only the operator knows what a spec injects.
    kubectl.patch(
        "benv",
        "bot",
        ns,
        {"spec": {"env": [{"name": "RASA_PRO_LICENSE", "value": "a literal"}]}},
    )
    degraded = wait_degraded(kubectl, ns, "bot", "InvalidSpec")
    assert degraded["message"] == (
        "spec.env[0].name: RASA_PRO_LICENSE is set by botenv from spec.license.secretRef; "
        "remove it from spec.env"
    )
    after = deployment(kubectl, ns, "bot")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    container = after["spec"]["template"]["spec"]["containers"][0]
    license_env = next(e for e in container["env"] if e["name"] == "RASA_PRO_LICENSE")
    assert license_env["valueFrom"]["secretKeyRef"] == {"name": "lic", "key": "license"}


def test_a_change_the_server_rejects_leaves_every_child_as_it_was(kubectl, operator, ns):
    kubectl.apply(tag(ns, "t", "m.tar.gz"), env(ns, "bot", modelTag="t"))
    eventually(lambda: deployment(kubectl, ns, "bot"), message="Deployment")
    config_before = kubectl.get("configmap", "rasa-bot-endpoints", ns)
    deploy_before = deployment(kubectl, ns, "bot")
    # A new pull interval changes endpoints.yml (ConfigMap, written before the Service);
    # the Service annotation's key is one the API server refuses.
    kubectl.patch(
        "benv",
        "bot",
        ns,
        {
            "spec": {
                "pullIntervalSeconds": 30,
                "service": {"annotations": {"not a valid/annotation key!": "x"}},
            }
        },
    )
    degraded = wait_degraded(kubectl, ns, "bot", "InvalidSpec")
    assert "the API server rejected Service rasa-bot" in degraded["message"]
    config_after = kubectl.get("configmap", "rasa-bot-endpoints", ns)
    assert config_after["data"] == config_before["data"]
    assert (
        yaml.safe_load(config_after["data"]["endpoints.yml"])["models"]["wait_time_between_pulls"]
        == yaml.safe_load(config_before["data"]["endpoints.yml"])["models"][
            "wait_time_between_pulls"
        ]
    )
    assert (
        deployment(kubectl, ns, "bot")["metadata"]["generation"]
        == (deploy_before["metadata"]["generation"])
    )
    # Fixed, it all goes through.
    kubectl.patch("benv", "bot", ns, {"spec": {"service": {"annotations": None}}})
    eventually(
        lambda: (
            yaml.safe_load(
                kubectl.get("configmap", "rasa-bot-endpoints", ns)["data"]["endpoints.yml"]
            )["models"]["wait_time_between_pulls"]
            == 30
        ),
        message="the pull interval applied once the spec is valid",
    )


def test_an_in_memory_tracker_with_restart_warns_that_conversations_are_lost(kubectl, operator, ns):
    kubectl.apply(tag(ns, "t", "m.tar.gz"), env(ns, "bot", modelTag="t"))
    warning = eventually(
        lambda: condition(kubectl.get("benv", "bot", ns), "Warning") or None,
        message="the Warning condition",
    )
    assert (warning["status"], warning["reason"]) == ("True", "ConversationsLostOnRoll")
    assert "every conversation in progress, with its history, is lost" in warning["message"]
    events = [e for e in kubectl.list("events", ns) if e["reason"] == "ConversationsLostOnRoll"]
    assert len(events) == 1 and events[0]["type"] == "Warning"
    # A persistent tracker store: the warning goes.
    kubectl.patch(
        "benv", "bot", ns, {"spec": {"trackerStore": {"type": "redis", "host": "redis.db"}}}
    )
    eventually(
        lambda: not condition(kubectl.get("benv", "bot", ns), "Warning"),
        message="the warning gone",
    )
