"""Baseline for bench/convergence.py: the barest kopf operator that turns each
BotEnvironment into one Deployment (no ConfigMap, Service, status, secrets or tags)."""

import kopf
import kubernetes

kubernetes.config.load_kube_config()
APPS = kubernetes.client.AppsV1Api()


@kopf.on.create("botenv.dev", "v1alpha1", "botenvironments")
def create(name: str, namespace: str, body: kopf.Body, **_: object) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"rasa-{name}", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "rasa", "image": "rasa/rasa:3.6.21-full"}]},
            },
        },
    }
    kopf.adopt(deployment, owner=body)
    APPS.create_namespaced_deployment(namespace, deployment)
