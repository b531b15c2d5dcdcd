"""Names, labels and URLs derived from an environment; one place so every child agrees."""

from __future__ import annotations

from typing import Any

from botenv.api import API_VERSION
from botenv.labels import (
    COMPONENT,
    COMPONENT_LABEL,
    ENVIRONMENT_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    TAG_LABEL,
    label_value,
)

# The digest a Restart pod pins its model pulls to (see model_url).
MODEL_DIGEST_VAR = "BOTENV_MODEL_DIGEST"
ACTION_SERVER_PATH = "/webhook"


def rasa_name(environment: str) -> str:
    """Name of the environment's Deployment and Service."""
    return f"rasa-{environment}"


def action_server_name(environment: str) -> str:
    """Name of the environment's action server Deployment and Service."""
    return f"rasa-{environment}-actions"


def action_server_url(environment: str, namespace: str, port: int) -> str:
    """What Rasa calls (endpoints.yml action_endpoint.url)."""
    return f"http://{action_server_name(environment)}.{namespace}.svc:{port}{ACTION_SERVER_PATH}"


def endpoints_configmap_name(environment: str) -> str:
    return f"rasa-{environment}-endpoints"


def pull_token_secret_name(environment: str) -> str:
    """The Secret holding the environment's own credential for the model server."""
    return f"rasa-{environment}-pull"


def selector_labels(environment: str, component: str = COMPONENT) -> dict[str, str]:
    """Immutable Deployment selector: never include anything that may change (like the tag).
    The component keeps the Rasa Service from selecting action server pods."""
    return {
        "app.kubernetes.io/name": "rasa",
        COMPONENT_LABEL: component,
        ENVIRONMENT_LABEL: environment,
    }


def labels(environment: str, tag: str, component: str = COMPONENT) -> dict[str, str]:
    return {
        **selector_labels(environment, component),
        "app.kubernetes.io/instance": environment,
        "app.kubernetes.io/part-of": "botenv",
        MANAGED_BY_LABEL: MANAGED_BY,
        TAG_LABEL: label_value(tag),
    }


def owner_reference(environment: str, uid: str) -> dict[str, Any]:
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


def derived_exchange(namespace: str, environment: str) -> str:
    # Rasa binds its queues to a fanout exchange: two environments on Rasa's default
    # "rasa-exchange" would each receive the other's events in their own queue.
    return f"rasa_{namespace}_{environment}_exchange"


def model_url(base_url: str, namespace: str, tag: str, pinned: bool = False) -> str:
    """The tag's pull URL. `pinned`: the pods ask for the model of the digest they were
    started with (${BOTENV_MODEL_DIGEST}, which Rasa expands from the pod's env): a tag move
    then changes only the pod template, and running pods never swap models on their own."""
    url = f"{base_url.rstrip('/')}/models/{namespace}/tags/{tag}"
    return f"{url}?digest=${{{MODEL_DIGEST_VAR}}}" if pinned else url


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
