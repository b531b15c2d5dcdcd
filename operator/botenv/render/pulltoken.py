"""The environment's pull-token Secret: its credential for botenv's model server.

The token is made once, when the Secret is created, and never rendered again: applying
the Secret later only sets its labels (which tag the token opens), so a reconcile never
rotates it by accident."""

from __future__ import annotations

import base64
import secrets

from botenv.render import names
from botenv.render.secretenv import PULL_TOKEN_KEY


def new_token() -> str:
    return secrets.token_urlsafe(32)


def labels(environment: str, tag: str) -> dict[str, str]:
    return {**names.labels(environment, tag), names.PULL_TOKEN_LABEL: "true",
            "app.kubernetes.io/component": "pull-token"}


def metadata(*, environment: str, namespace: str, tag: str, uid: str) -> dict:
    return {"name": names.pull_token_secret_name(environment), "namespace": namespace,
            "labels": labels(environment, tag),
            "ownerReferences": [names.owner_reference(environment, uid)]}


def secret(*, environment: str, namespace: str, tag: str, uid: str, token: str) -> dict:
    """The Secret as first created (with its token)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": metadata(environment=environment, namespace=namespace, tag=tag,
                                 uid=uid),
            "data": {PULL_TOKEN_KEY: base64.b64encode(token.encode()).decode()}}


def labels_only(*, environment: str, namespace: str, tag: str, uid: str) -> dict:
    """What later applies carry: metadata only, never the token."""
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": metadata(environment=environment, namespace=namespace, tag=tag,
                                 uid=uid)}
