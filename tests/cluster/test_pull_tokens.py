"""Pull tokens, attacked: a tag name that collides with another's label form, a token whose
environment is gone, a token Secret overwritten with garbage or with a short token, a
hand-made token Secret. The model server (its own process, the chart's RBAC: it cannot list
a single Secret) authorizes from what the operator publishes in each BotEnvironment's
status.pullToken."""

from __future__ import annotations

import base64
import hashlib
import itertools

import pytest

from botenv.labels import label_value
from tests.cluster.test_environments import env, tag
from tests.cluster.test_model_server import get, pull_token
from tests.support.kubectl import condition, eventually

pytestmark = pytest.mark.cluster

_names = itertools.count()


@pytest.fixture
def ns(kubectl) -> str:
    name = f"tokens-{next(_names)}"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def pulls(url: str, token: str) -> bool:
    return get(url, token)[0] == 200


def test_a_colliding_tag_name_opens_only_its_own_tag(kubectl, operator, model_server, ns) -> None:
    victim = "production-" + "x" * 60  # longer than a label value: shortened in labels
    collider = label_value(victim)  # a valid tag name of its own, equal to that label form
    assert len(collider) == 63 and collider != victim
    kubectl.apply(
        tag(ns, victim, "victim.tar.gz"),
        tag(ns, collider, "collider.tar.gz"),
        env(ns, "victim", modelTag=victim),
        env(ns, "attacker", modelTag=collider),
    )
    victim_url = f"{model_server}/models/{ns}/tags/{victim}"
    own_url = f"{model_server}/models/{ns}/tags/{collider}"
    victim_token = pull_token(kubectl, ns, "victim")
    attacker_token = pull_token(kubectl, ns, "attacker")
    eventually(
        lambda: pulls(victim_url, victim_token) and pulls(own_url, attacker_token),
        message="each environment pulls its own tag",
    )
    status, _, body = get(victim_url, attacker_token)
    assert status == 401, body
    assert get(own_url, victim_token)[0] == 401


def test_a_token_dies_with_its_environment_and_the_operator_removes_it(
    kubectl, operator, model_server, ns
) -> None:
    kubectl.apply(tag(ns, "shop", "orphan.tar.gz"), env(ns, "shop"))
    token = pull_token(kubectl, ns, "shop")
    url = f"{model_server}/models/{ns}/tags/shop"
    eventually(lambda: pulls(url, token), message="the environment's token pulls")

    # Deleted with its children left in place: the pods would keep the token.
    kubectl.run("delete", "benv", "shop", "-n", ns, "--cascade=orphan")
    eventually(
        lambda: get(url, token)[0] == 401, timeout=15, message="the orphaned token is refused"
    )
    eventually(
        lambda: kubectl.get("secret", "rasa-shop-pull", ns) is None,
        timeout=30,
        message="the operator deletes its orphaned token Secret",
    )
    assert kubectl.get("deployment", "rasa-shop", ns) is not None  # orphaned, as asked


def _overwrite_token(kubectl, ns: str, environment: str, raw: bytes) -> None:
    kubectl.patch(
        "secret",
        f"rasa-{environment}-pull",
        ns,
        {"data": {"token": base64.b64encode(raw).decode()}},
    )


@pytest.mark.parametrize(
    "raw, what",
    [
        (b"\xff\xfe not UTF-8 at all \x80" * 3, "bytes that are not UTF-8"),
        (b"a", "a one-character token"),
        (b"x" * 31, "a token of 31 bytes"),
    ],
)
def test_an_unusable_token_secret_revokes_the_token(
    kubectl, operator, model_server, ns, raw: bytes, what: str
) -> None:
    kubectl.apply(tag(ns, "shop", "garbled.tar.gz"), env(ns, "shop"))
    old = pull_token(kubectl, ns, "shop")
    url = f"{model_server}/models/{ns}/tags/shop"
    eventually(lambda: pulls(url, old), message="the environment's token pulls")

    _overwrite_token(kubectl, ns, "shop", raw)
    eventually(
        lambda: get(url, old)[0] == 401,
        timeout=15,
        message=f"the old token is revoked after {what}",
    )
    if raw.isascii():
        assert get(url, raw.decode())[0] == 401
    degraded = eventually(
        lambda: (
            (c := condition(kubectl.get("benv", "shop", ns), "Degraded")).get("status") == "True"
            and c
        )
    )
    assert degraded["reason"] == "PullTokenInvalid"
    assert "rasa-shop-pull" in degraded["message"] and "delete the Secret" in degraded["message"]
    assert "pullToken" not in kubectl.get("benv", "shop", ns)["status"]

    # The way out the message gives: delete it, botenv makes a new token.
    kubectl.delete("secret", "rasa-shop-pull", ns)
    eventually(
        lambda: (
            (s := kubectl.get("secret", "rasa-shop-pull", ns))
            and base64.b64decode(s["data"]["token"]) not in (raw, old.encode())
        ),
        message="a new token",
    )
    new = pull_token(kubectl, ns, "shop")
    eventually(lambda: pulls(url, new), message="the new token pulls")
    assert get(url, old)[0] == 401


def test_a_hand_made_token_secret_opens_nothing(kubectl, operator, model_server, ns) -> None:
    kubectl.apply(tag(ns, "shop", "handmade.tar.gz"), env(ns, "shop"))
    url = f"{model_server}/models/{ns}/tags/shop"
    eventually(lambda: pulls(url, pull_token(kubectl, ns, "shop")))
    for token in ("a", "y" * 64):
        kubectl.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": f"made-{hashlib.md5(token.encode()).hexdigest()}",
                    "namespace": ns,
                    "labels": {
                        "botenv.dev/pull-token": "true",
                        "botenv.dev/tag": "shop",
                        "app.kubernetes.io/managed-by": "botenv",
                    },
                },
                "stringData": {"token": token},
            }
        )
    for token in ("a", "y" * 64):
        assert get(url, token)[0] == 401
    # The status names the hash and the tag; never the token.
    status = kubectl.get("benv", "shop", ns)["status"]["pullToken"]
    token = pull_token(kubectl, ns, "shop")
    assert status == {
        "secret": "rasa-shop-pull",
        "tag": "shop",
        "sha256": hashlib.sha256(token.encode()).hexdigest(),
    }
    assert token not in str(kubectl.get("benv", "shop", ns))
