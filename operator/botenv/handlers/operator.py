"""Moved: the kopf handlers are in botenv.runtime.operator, the loading of the client's
configuration in botenv.kube.config (importable from here for older imports)."""

from botenv.kube.config import load_kubernetes_config

__all__ = ["load_kubernetes_config"]
