"""The environment's rasa-sdk action server: a Deployment and a Service Rasa calls.

Its image comes from the ModelTag when the tag names one (the actions that match the model's
domain move with the model), else from the environment's spec.actionServer.image.
"""

from __future__ import annotations

from typing import Any

from botenv.api.environment import ActionServerSpec, EnvironmentSpec
from botenv.api.podsettings import ACTION_SERVER_CONTAINER
from botenv.labels import ACTION_SERVER_COMPONENT
from botenv.render import names, podsecurity, podsettings
from botenv.render.hashing import SECRETS_HASH_ANNOTATION

COMPONENT = ACTION_SERVER_COMPONENT


def image(spec: EnvironmentSpec, tag_image: str) -> str:
    """The tag's image (its actions match its model) over the environment's own; one of
    the two is set (api.check_tag_fits)."""
    assert spec.action_server is not None
    return tag_image or spec.action_server.image


def _container(server: ActionServerSpec, image: str) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": ACTION_SERVER_CONTAINER,
        "image": image,
        "ports": [{"name": "http", "containerPort": server.port, "protocol": "TCP"}],
        # rasa-sdk answers /health as soon as its actions are imported.
        "readinessProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "initialDelaySeconds": 10,
            "periodSeconds": 15,
            "timeoutSeconds": 5,
            "failureThreshold": 4,
        },
    }
    if server.args:
        container["args"] = list(server.args)
    if server.env:
        container["env"] = list({e["name"]: dict(e) for e in server.env}.values())
    if server.env_from:
        container["envFrom"] = [dict(e) for e in server.env_from]
    if server.resources:
        container["resources"] = server.resources
    if server.image_pull_policy:
        container["imagePullPolicy"] = server.image_pull_policy
    return container


def deployment(
    spec: EnvironmentSpec, *, image: str, tag: str, uid: str, secrets_hash: str = ""
) -> dict[str, Any]:
    """`secrets_hash`: of the Secrets its env and envFrom read ("" for none), so a rotation
    rolls the action server."""
    server = spec.action_server
    assert server is not None
    container = _container(server, image)
    # rasa-sdk writes nothing of its own (traced); /tmp is there for the actions' code.
    tmp, tmp_mount = podsettings.tmp_volume()
    container["volumeMounts"] = [tmp_mount]
    pod_spec: dict[str, Any] = {"containers": [container], "volumes": [tmp]}
    if spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in spec.image_pull_secrets]
    if server.node_selector:
        pod_spec["nodeSelector"] = dict(server.node_selector)
    if server.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in server.tolerations]
    if server.affinity:
        pod_spec["affinity"] = server.affinity
    pod_spec = podsettings.pod_spec(
        pod_spec,
        server.pod,
        user=podsecurity.RASA_USER,
        service_account=server.service_account_name,
    )
    template_meta: dict[str, Any] = {"labels": names.labels(spec.name, tag, COMPONENT)}
    annotations = dict(server.pod_annotations)
    if secrets_hash:
        annotations[SECRETS_HASH_ANNOTATION] = secrets_hash
    if annotations:
        template_meta["annotations"] = annotations
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": names.action_server_name(spec.name),
            "namespace": spec.namespace,
            "labels": names.labels(spec.name, tag, COMPONENT),
            "ownerReferences": [names.owner_reference(spec.name, uid)],
        },
        "spec": {
            "replicas": server.replicas,
            "selector": {"matchLabels": names.selector_labels(spec.name, COMPONENT)},
            # Never fewer ready action servers than asked for during a roll.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "revisionHistoryLimit": 5,
            "template": {"metadata": template_meta, "spec": pod_spec},
        },
    }


def service(spec: EnvironmentSpec, *, tag: str, uid: str) -> dict[str, Any]:
    server = spec.action_server
    assert server is not None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": names.action_server_name(spec.name),
            "namespace": spec.namespace,
            "labels": names.labels(spec.name, tag, COMPONENT),
            "ownerReferences": [names.owner_reference(spec.name, uid)],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": names.selector_labels(spec.name, COMPONENT),
            "ports": [
                {"name": "http", "port": server.port, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }
