"""Loading the Kubernetes client's configuration: in-cluster, else $KUBECONFIG."""

from __future__ import annotations

import os

import kubernetes
import urllib3


def load_kubernetes_config() -> None:
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        # The client reads $KUBECONFIG once at import; read it now, when it is used.
        kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    if not kubernetes.client.Configuration.get_default_copy().verify_ssl:
        # The kubeconfig asked for insecure-skip-tls-verify; one warning per request
        # would drown the log.
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
