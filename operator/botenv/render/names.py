"""Names, labels and URLs derived from an environment; one place so every child agrees."""

from __future__ import annotations

import hashlib
import re

from botenv import API_VERSION

MANAGED_BY = "botenv"
ENVIRONMENT_LABEL = "botenv.dev/environment"
TAG_LABEL = "botenv.dev/tag"
# Marks pull-token Secrets; the model server watches only these (server-side selector).
PULL_TOKEN_LABEL = "botenv.dev/pull-token"
COMPONENT = "rasa-server"
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def rasa_name(environment: str) -> str:
    """Name of the environment's Deployment and Service."""
    return f"rasa-{environment}"


def endpoints_configmap_name(environment: str) -> str:
    return f"rasa-{environment}-endpoints"


def pull_token_secret_name(environment: str) -> str:
    """The Secret holding the environment's own credential for the model server."""
    return f"rasa-{environment}-pull"


def label_value(value: str) -> str:
    """A valid label value for any name: long names keep a readable head and a hash tail."""
    if len(value) <= 63 and _LABEL_VALUE.match(value):
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    head = re.sub(r"[^-A-Za-z0-9_.]", "-", value)[:52].rstrip("-_.")
    return f"{head}-{digest}" if head else digest


def selector_labels(environment: str) -> dict[str, str]:
    """Immutable Deployment selector: never include anything that may change (like the tag)."""
    return {
        "app.kubernetes.io/name": "rasa",
        "app.kubernetes.io/component": COMPONENT,
        ENVIRONMENT_LABEL: environment,
    }


def labels(environment: str, tag: str) -> dict[str, str]:
    return {
        **selector_labels(environment),
        "app.kubernetes.io/instance": environment,
        "app.kubernetes.io/part-of": "botenv",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        TAG_LABEL: label_value(tag),
    }


def owner_reference(environment: str, uid: str) -> dict:
    return {
        "apiVersion": API_VERSION,
        "kind": "BotEnvironment",
        "name": environment,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def derived_queue(namespace: str, environment: str) -> str:
    # '_' cannot occur in Kubernetes names, so this is unique per (namespace, environment).
    return f"rasa_{namespace}_{environment}_events"


def model_url(base_url: str, namespace: str, tag: str) -> str:
    return f"{base_url.rstrip('/')}/models/{namespace}/tags/{tag}"


def service_endpoint(environment: str, namespace: str, port: int) -> str:
    return f"http://{rasa_name(environment)}.{namespace}.svc:{port}"


def broker_identity(host: str, port: int, namespace: str) -> str:
    """One broker, however its host is spelled from inside a namespace."""
    host = host.lower().rstrip(".")
    for suffix in (".svc.cluster.local", ".svc"):
        if host.endswith(suffix):
            host = host[: -len(suffix)]
    if "." not in host and host != "localhost":
        host = f"{host}.{namespace}"  # a bare Service name resolves in the pod's namespace
    return f"{host}:{port}"
