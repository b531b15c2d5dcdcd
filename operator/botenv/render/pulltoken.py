"""The environment's pull-token Secret: its credential for botenv's model server.

The token is made once, when the Secret is created, and never rendered again: applying
the Secret later only sets its labels, so a reconcile never rotates it by accident.

The model server does not read these Secrets (it may not list Secrets at all): the
environment's status carries the token's SHA-256 and the exact tag it opens
(`status.pullToken`), written by the operator from the Secret it watches. A token opens a
tag only while its environment exists and names it; the hash of a 256-bit random token
gives nothing away."""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from typing import Any

from botenv.labels import COMPONENT_LABEL, PULL_TOKEN_LABEL
from botenv.render import names
from botenv.render.secretenv import PULL_TOKEN_KEY

# Shorter tokens (a hand-edited Secret) are refused: they could be guessed.
MIN_TOKEN_BYTES = 32


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_of(secret: dict[str, Any] | None) -> str | None:
    """The usable token in a pull-token Secret, or None (missing, not base64, not UTF-8,
    blank, or shorter than MIN_TOKEN_BYTES)."""
    raw = ((secret or {}).get("data") or {}).get(PULL_TOKEN_KEY)
    if not isinstance(raw, str):
        return None
    try:
        token = base64.b64decode(raw, validate=True).decode("utf-8").strip()
    except (binascii.Error, ValueError):
        return None
    return token if len(token.encode()) >= MIN_TOKEN_BYTES else None


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def status(*, environment: str, tag: str, token: str, pin: str = "") -> dict[str, Any]:
    """`status.pullToken`: what the model server authorizes the token for; `pin`, a digest
    of the tag's model or history the model server serves to this token instead of the
    tag's current model (an environment whose Rasa refused that model)."""
    out = {
        "secret": names.pull_token_secret_name(environment),
        "tag": tag,
        "sha256": sha256(token),
    }
    if pin:
        out["digest"] = pin
    return out


def labels(environment: str, tag: str) -> dict[str, str]:
    return {
        **names.labels(environment, tag),
        PULL_TOKEN_LABEL: "true",
        COMPONENT_LABEL: "pull-token",
    }


def metadata(*, environment: str, namespace: str, tag: str, uid: str) -> dict[str, Any]:
    return {
        "name": names.pull_token_secret_name(environment),
        "namespace": namespace,
        "labels": labels(environment, tag),
        "ownerReferences": [names.owner_reference(environment, uid)],
    }


def secret(*, environment: str, namespace: str, tag: str, uid: str, token: str) -> dict[str, Any]:
    """The Secret as first created (with its token)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(environment=environment, namespace=namespace, tag=tag, uid=uid),
        "data": {PULL_TOKEN_KEY: base64.b64encode(token.encode()).decode()},
    }


def labels_only(*, environment: str, namespace: str, tag: str, uid: str) -> dict[str, Any]:
    """What later applies carry: metadata only, never the token."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(environment=environment, namespace=namespace, tag=tag, uid=uid),
    }
