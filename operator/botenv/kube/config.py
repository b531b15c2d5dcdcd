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


class ClusterUnreachable(Exception):
    """No configuration to reach a cluster with, or the API server does not answer."""


def check_cluster(timeout: float = 5.0) -> str:
    """Load the configuration (as load_kubernetes_config) and GET /version once, with a short
    timeout and one retry; return the API server's address. Any HTTP answer, even an error
    status, means the server is there. Raises ClusterUnreachable with a one-line message."""
    import yaml
    from kubernetes.client.exceptions import ApiException

    try:
        load_kubernetes_config()
    except (kubernetes.config.ConfigException, yaml.YAMLError, OSError) as exc:
        raise ClusterUnreachable(f"no usable cluster configuration: {_one_line(exc)}") from None
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        where = os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise ClusterUnreachable(
            f"kubeconfig {where!r} is not a valid kubeconfig: {_one_line(exc)}"
        ) from None
    config = kubernetes.client.Configuration.get_default_copy()
    config.retries = 1
    api = kubernetes.client.VersionApi(kubernetes.client.ApiClient(config))
    try:
        api.get_code(_request_timeout=timeout)
    except ApiException:
        pass
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ClusterUnreachable(
            f"cannot reach the cluster at {config.host}: {_one_line(reason)}"
        ) from None
    return str(config.host)


def _one_line(exc: object) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
