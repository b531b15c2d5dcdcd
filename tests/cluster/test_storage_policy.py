"""A tenant who may write ModelTags and ModelTrainings tries to make the operator and the model
server read what is not theirs: files of the readers' own containers, a cloud metadata
endpoint, a loopback service. The operator and the model server run with the tests' storage
policy (tests/cluster/conftest.py: the MODELS directory, and the storage emulators on
127.0.0.1/32); a loopback origin on 127.0.0.2 counts every request that reaches it."""

from __future__ import annotations

import hashlib
import http.server
import itertools
import threading
from collections.abc import Iterator

import pytest

from tests.cluster.conftest import MODELS
from tests.cluster.test_environments import env, model_file, tag
from tests.cluster.test_model_server import get, pull_token
from tests.support.kubectl import condition, eventually

pytestmark = pytest.mark.cluster


class _Counting(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        body = b"a model that must never be read"
        self.send_response(200)
        self.send_header("ETag", f'"{hashlib.md5(body).hexdigest()}"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    do_GET = do_HEAD = _answer  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def loopback_origin() -> Iterator[http.server.HTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), _Counting)
    server.hits = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


_names = itertools.count()


@pytest.fixture
def ns(kubectl) -> str:
    name = f"policy-{next(_names)}"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def http_tag(ns: str, name: str, url: str, model: str = "m.tar.gz") -> dict:
    return {
        "apiVersion": "botenv.dev/v1alpha1",
        "kind": "ModelTag",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"model": model, "storage": {"provider": "http", "url": url}},
    }


def refused(kubectl, ns: str, name: str) -> dict:
    """The tag's Ready condition once it says StorageNotAllowed."""
    return eventually(
        lambda: (
            (c := condition(kubectl.get("mtag", name, ns), "Ready")).get("reason")
            == "StorageNotAllowed"
            and c
        ),
        message=f"tag {name} refused",
    )


def test_tags_outside_the_allowed_places_are_refused_and_never_read(
    kubectl, operator, ns, loopback_origin
) -> None:
    port = loopback_origin.server_address[1]
    kubectl.apply(
        # The reader's own files: its service account token, the node's /etc.
        {
            **tag(ns, "own-files", "token", create_model=False),
            "spec": {
                "model": "token",
                "storage": {
                    "provider": "local",
                    "path": "/var/run/secrets/kubernetes.io/serviceaccount",
                },
            },
        },
        {
            **tag(ns, "etc", "passwd", create_model=False),
            "spec": {"model": "passwd", "storage": {"provider": "local", "path": "/etc"}},
        },
        http_tag(ns, "metadata", "http://169.254.169.254/latest/meta-data/iam/"),
        http_tag(ns, "loopback", f"http://127.0.0.2:{port}/models"),
        {
            **tag(ns, "endpoint", "m.tar.gz", create_model=False),
            "spec": {
                "model": "m.tar.gz",
                "storage": {
                    "provider": "s3",
                    "bucket": "b",
                    "endpoint": f"http://127.0.0.2:{port}",
                },
            },
        },
        env(ns, "victim", modelTag="loopback"),
    )

    for name, field in (
        ("own-files", "spec.storage.path"),
        ("etc", "spec.storage.path"),
        ("metadata", "spec.storage.url"),
        ("loopback", "spec.storage.url"),
        ("endpoint", "spec.storage.endpoint"),
    ):
        ready = refused(kubectl, ns, name)
        assert ready["status"] == "False"
        assert ready["message"].startswith(f"{field}: "), ready["message"]
        # It says what is allowed, so the tag's owner can fix it.
        assert f"allowed local roots: {MODELS}" in ready["message"]
        assert "digest" not in kubectl.get("mtag", name, ns)["status"]
    assert "169.254.169.254, a link-local address" in refused(kubectl, ns, "metadata")["message"]
    assert "127.0.0.2, a loopback address" in refused(kubectl, ns, "loopback")["message"]
    # Nothing rolls out for an environment on a refused tag.
    assert condition(kubectl.get("benv", "victim", ns), "Ready")["reason"] == "WaitingForTag"
    assert kubectl.get("deployment", "rasa-victim", ns) is None
    operator.resync_now()
    operator.settle()
    assert loopback_origin.hits == []


def test_the_model_server_refuses_a_tag_moved_to_a_refused_place(
    kubectl, operator, model_server, ns, loopback_origin
) -> None:
    """The operator keeps a tag's last good resolution when its storage changes to a place
    it refuses; the model server must not then fetch that model from the new place."""
    model_file("policy-m1.tar.gz", b"the good model")
    kubectl.apply(tag(ns, "shop", "policy-m1.tar.gz"), env(ns, "shop"))
    token = pull_token(kubectl, ns, "shop")
    eventually(lambda: kubectl.get("mtag", "shop", ns)["status"].get("digest"))
    port = loopback_origin.server_address[1]
    kubectl.patch(
        "mtag",
        "shop",
        ns,
        {
            "spec": {
                "storage": {
                    "provider": "http",
                    "url": f"http://127.0.0.2:{port}/models",
                    "path": None,
                }
            }
        },
    )
    assert refused(kubectl, ns, "shop")["message"].startswith("spec.storage.url: ")
    assert kubectl.get("mtag", "shop", ns)["status"]["model"] == "policy-m1.tar.gz"

    url = f"{model_server}/models/{ns}/tags/shop"
    status, _, body = eventually(
        lambda: (r := get(url, token))[0] == 403 and r,
        message="the model server refuses the tag's new place",
    )
    assert b"not allowed" in body
    assert loopback_origin.hits == []


def test_a_training_cannot_store_where_the_operator_may_not_read(kubectl, operator, ns) -> None:
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "project", "namespace": ns},
            "data": {"config.yml": "language: en\n", "domain.yml": "version: '3.1'\n"},
        },
        {
            "apiVersion": "botenv.dev/v1alpha1",
            "kind": "ModelTraining",
            "metadata": {"name": "t", "namespace": ns},
            "spec": {
                "source": {"configMap": {"name": "project"}},
                "output": {"storage": {"provider": "local", "path": "/etc"}},
                "tag": "t",
            },
        },
    )
    training = eventually(
        lambda: (
            (t := kubectl.get("mtrain", "t", ns))
            and (t.get("status") or {}).get("phase") == "Failed"
            and t
        ),
        message="training refused",
    )
    assert training["status"]["reason"] == "StorageNotAllowed"
    assert training["status"]["message"].startswith("spec.output.storage.path: ")
    assert kubectl.get("job", "train-t", ns) is None
    assert kubectl.get("mtag", "t", ns) is None
