"""botenv's model server as its own process against the real API server: it serves what
the operator resolved, to the pull tokens the operator provisioned, and nothing else."""

from __future__ import annotations

import base64
import hashlib
import time
import urllib.error
import urllib.request

import pytest

from tests.cluster.test_environments import env, model_file, tag
from tests.support.kubectl import eventually

pytestmark = pytest.mark.cluster


def get(url: str, token: str = "", etag: str = "") -> tuple[int, dict, bytes]:
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if etag:
        headers["If-None-Match"] = etag
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()
    except OSError:
        return 0, {}, b""


@pytest.fixture
def ns(kubectl):
    name = f"ms-{time.monotonic_ns() % 10**8}"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def pull_token(kubectl, ns: str, environment: str) -> str:
    secret = eventually(lambda: kubectl.get("secret", f"rasa-{environment}-pull", ns))
    return base64.b64decode(secret["data"]["token"]).decode()


def test_serves_the_resolved_model_to_the_environments_token(kubectl, operator, model_server, ns):
    model_file("served-1.tar.gz", b"first model bytes")
    model_file("served-2.tar.gz", b"second model bytes, longer")
    kubectl.apply(
        tag(ns, "production", "served-1.tar.gz", create_model=False),
        tag(ns, "other", "served-1.tar.gz", create_model=False),
        env(ns, "production"),
        env(ns, "intruder", modelTag="other"),
    )
    token = pull_token(kubectl, ns, "production")
    url = f"{model_server}/models/{ns}/tags/production"

    status, headers, body = eventually(
        lambda: (r := get(url, token))[0] == 200 and r, message="first pull"
    )
    assert body == b"first model bytes"
    digest = hashlib.md5(body).hexdigest()
    assert headers["ETag"].strip('"') == digest
    assert headers["filename"] == f"served-1@{digest}.tar.gz"
    assert int(headers["Content-Length"]) == len(body)
    # Rasa sends the ETag back verbatim: unchanged model, 304 and no body.
    assert get(url, token, etag=headers["ETag"])[:1] == (304,)

    # No token, or another environment's token: 401.
    assert get(url)[0] == 401
    assert get(url, pull_token(kubectl, ns, "intruder"))[0] == 401
    assert get(f"{model_server}/models/{ns}/tags/other", token)[0] == 401

    # Moving the tag: the next pull with the old ETag gets the new model.
    kubectl.patch("mtag", "production", ns, {"spec": {"model": "served-2.tar.gz"}})
    status, headers, body = eventually(
        lambda: (r := get(url, token, etag=headers["ETag"]))[0] == 200 and r,
        message="new model after the tag moved",
    )
    assert body == b"second model bytes, longer"
    assert headers["filename"] == f"served-2@{hashlib.md5(body).hexdigest()}.tar.gz"

    # Pods of a Restart environment pull a URL pinned to their model's digest: they keep
    # getting that model (from the tag's history) until the roll replaces them.
    first_digest = hashlib.md5(b"first model bytes").hexdigest()
    status, headers, body = get(f"{url}?digest={first_digest}", token)
    assert (status, body, headers["filename"]) == (
        200,
        b"first model bytes",
        f"served-1@{first_digest}.tar.gz",
    )
    assert get(f"{url}?digest={first_digest}", token, etag=f'"{first_digest}"')[0] == 304
    assert get(f"{url}?digest={hashlib.md5(body + b'x').hexdigest()}", token)[0] == 404
