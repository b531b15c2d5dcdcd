"""A small typed facade over the kubernetes client: the few calls botenv makes.

Every call goes through here and is counted (`writes`, `reads`), so tests and metrics can
check that an idle operator writes nothing, and benchmarks how many calls a reconcile makes.
"""

from __future__ import annotations

import base64
import collections
import json
import logging
import os
import threading
import uuid
from typing import Any

import kubernetes
import yaml
from kubernetes.client.exceptions import ApiException

from botenv import FIELD_MANAGER, GROUP, VERSION

log = logging.getLogger(__name__)

_PATHS = {
    ("v1", "ConfigMap"): "/api/v1/namespaces/{ns}/configmaps",
    ("v1", "Service"): "/api/v1/namespaces/{ns}/services",
    ("v1", "Secret"): "/api/v1/namespaces/{ns}/secrets",
    ("v1", "Event"): "/api/v1/namespaces/{ns}/events",
    ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/{ns}/deployments",
    ("coordination.k8s.io/v1", "Lease"): "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
    (f"{GROUP}/{VERSION}", "BotEnvironment"): f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/"
    "botenvironments",
    (f"{GROUP}/{VERSION}", "ModelTag"): f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/modeltags",
    (f"{GROUP}/{VERSION}", "ModelTraining"): f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/"
    "modeltrainings",
    ("batch/v1", "Job"): "/apis/batch/v1/namespaces/{ns}/jobs",
    ("v1", "Pod"): "/api/v1/namespaces/{ns}/pods",
    ("networking.k8s.io/v1", "Ingress"): "/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "/apis/gateway.networking.k8s.io/v1/"
    "namespaces/{ns}/httproutes",
    **{
        (f"autoscaling/{v}", "HorizontalPodAutoscaler"): f"/apis/autoscaling/{v}/namespaces/{{ns}}/"
        "horizontalpodautoscalers"
        for v in ("v2", "v2beta2")
    },
    **{
        (f"policy/{v}", "PodDisruptionBudget"): f"/apis/policy/{v}/namespaces/{{ns}}/"
        "poddisruptionbudgets"
        for v in ("v1", "v1beta1")
    },
}


def _path(api_version: str, kind: str, namespace: str, name: str = "") -> str:
    base = _PATHS[(api_version, kind)].format(ns=namespace)
    return f"{base}/{name}" if name else base


def api_version_of(kind: str) -> str:
    """The apiVersion botenv reads and writes `kind` in."""
    return next(v for v, k in _PATHS if k == kind)


def _all_namespaces_path(api_version: str, kind: str) -> str:
    return _PATHS[(api_version, kind)].replace("/namespaces/{ns}", "")


def api_message(exc: ApiException) -> str:
    """The API server's own message in a failed call (its Status), else the HTTP reason."""
    try:
        return json.loads(exc.body or "{}").get("message") or str(exc.reason)
    except ValueError:
        return str(exc.reason)


class Kube:
    def __init__(self, api_client: kubernetes.client.ApiClient | None = None) -> None:
        self.api = api_client or kubernetes.client.ApiClient()
        # (what, namespace, name) -> count of write calls made
        self.writes: collections.Counter[tuple[str, str, str]] = collections.Counter()
        # (what, namespace, name) -> count of calls that change nothing: GET, LIST,
        # discovery, the service proxy and dry runs
        self.reads: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self._lock = threading.Lock()
        self._served: dict[str, frozenset[str]] = {}  # API group -> versions served

    def _count(self, what: str, namespace: str, name: str) -> None:
        with self._lock:
            self.writes[(what, namespace, name)] += 1

    def _count_read(self, what: str, namespace: str = "", name: str = "") -> None:
        with self._lock:
            self.reads[(what, namespace, name)] += 1

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "",
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        request = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*request, _request_timeout=30)
        data = response.read()
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response)
        return json.loads(data) if data else {}

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        self._count_read(f"get {kind}", namespace, name)
        try:
            return self._call("GET", _path(api_version, kind, namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def served_resources(self, group_version: str) -> set[str]:
        """The resources the server serves in `group_version` (API discovery, which every
        authenticated client may read): empty when it does not serve that group version."""
        self._count_read("get discovery", "", group_version)
        try:
            found = self._call("GET", f"/apis/{group_version}")
        except ApiException as exc:
            if exc.status == 404:
                return set()
            raise
        return {r["name"] for r in found.get("resources") or [] if "name" in r}

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        """PUT `obj`; its metadata.resourceVersion makes this a compare-and-swap (409 when
        someone else wrote first)."""
        meta = obj["metadata"]
        self._count(f"replace {obj['kind']}", meta["namespace"], meta["name"])
        return self._call(
            "PUT", _path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"]), body=obj
        )

    def delete(
        self, api_version: str, kind: str, namespace: str, name: str, uid: str | None = None
    ) -> None:
        """Delete a child botenv made and no longer wants (its own children too, in the
        background); gone already is fine. With `uid`, only that very object (one made
        again under the same name since is left alone)."""
        self._count(f"delete {kind}", namespace, name)
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self._call("DELETE", _path(api_version, kind, namespace, name), body=body)
        except ApiException as exc:
            if exc.status != 404 and not (uid and exc.status == 409):
                raise

    def get_object(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """GET one object; raises ApiException (404 when it or its kind does not exist)."""
        self._count_read(f"get {kind}", namespace, name)
        return self._call("GET", _path(api_version, kind, namespace, name))

    def list_objects(
        self, api_version: str, kind: str, namespace: str = "", label_selector: str = ""
    ) -> list[dict[str, Any]]:
        """LIST the objects of a kind in a namespace, or in all namespaces when it is ""."""
        path = (
            _path(api_version, kind, namespace)
            if namespace
            else _all_namespaces_path(api_version, kind)
        )
        query = [("labelSelector", label_selector)] if label_selector else None
        self._count_read(f"list {kind}", namespace)
        return list(self._call("GET", path, query=query).get("items") or [])

    def service_proxy_post(
        self, namespace: str, service: str, port: int, path: str, body: object
    ) -> Any:
        """POST JSON to a Service's port through the API server's proxy (what `kubectl
        proxy` users reach); the answer's JSON. Needs `create` on services/proxy."""
        self._count_read("proxy Service", namespace, service)
        return self._call(
            "POST",
            f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy/{path.lstrip('/')}",
            body=body,
            content_type="application/json",
        )

    def merge_patch(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        patch: dict[str, Any],
        *,
        field_manager: str,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """A JSON merge patch (an Update, not an apply): it writes only the fields in
        `patch`, needs no force and makes `field_manager` no applier of them. A dry run is
        checked by the server (validation, admission, RBAC) and writes nothing."""
        query = [("fieldManager", field_manager)]
        if dry_run:
            query.append(("dryRun", "All"))
            self._count_read(f"dry-run {kind}", namespace, name)
        else:
            self._count(f"patch {kind}", namespace, name)
        return self._call(
            "PATCH",
            _path(api_version, kind, namespace, name),
            body=patch,
            query=query,
            content_type="application/merge-patch+json",
        )

    def get_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's base64 data, or None when it does not exist. Callers hash it."""
        secret = self.get("v1", "Secret", namespace, name)
        return None if secret is None else dict(secret.get("data") or {})

    def get_secret_text(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's values decoded to text (credentials a client library takes), or
        None when it does not exist."""
        data = self.get_secret_data(namespace, name)
        if data is None:
            return None
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def served_version(self, api_versions: tuple[str, ...]) -> str:
        """The first of `api_versions` (of one API group, e.g. autoscaling/v2 then
        autoscaling/v2beta2) that the API server serves, "" for none. Discovery asks the
        server once per group; the answer is kept."""
        group = api_versions[0].split("/")[0]
        if group not in self._served:
            self._count_read("get discovery", "", group)
            try:
                found = self._call("GET", f"/apis/{group}").get("versions") or []
            except ApiException as exc:
                if exc.status != 404:
                    raise
                found = []
            self._served[group] = frozenset(v.get("groupVersion", "") for v in found)
        return next((v for v in api_versions if v in self._served[group]), "")

    def apply(
        self, obj: dict[str, Any], *, dry_run: bool = False, field_manager: str = FIELD_MANAGER
    ) -> dict[str, Any]:
        """Server-side apply as botenv's field manager (or `field_manager`); force, since
        botenv owns these fields of its children (a hand edit of them is drift to repair).
        A dry run checks the object with the server's validation and admission, writing
        nothing."""
        meta = obj["metadata"]
        path = _path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        query = [("fieldManager", field_manager), ("force", "true")]
        if dry_run:
            query.append(("dryRun", "All"))
            self._count_read(f"dry-run {obj['kind']}", meta["namespace"], meta["name"])
        else:
            as_ = "" if field_manager == FIELD_MANAGER else f" as {field_manager}"
            self._count(f"apply {obj['kind']}{as_}", meta["namespace"], meta["name"])
        return self._call(
            "PATCH",
            path,
            # Compact: the server parses it as YAML, byte by byte.
            body=json.dumps(obj, separators=(",", ":")),
            query=query,
            content_type="application/apply-patch+yaml",
        )

    def create(self, obj: dict[str, Any], field_manager: str) -> dict[str, Any] | None:
        """Create `obj`; None when it exists already. For objects whose content botenv
        makes once (a pull token) and must not re-apply."""
        meta = obj["metadata"]
        self._count(f"create {obj['kind']}", meta["namespace"], meta["name"])
        try:
            return self._call(
                "POST",
                _path(obj["apiVersion"], obj["kind"], meta["namespace"]),
                body=obj,
                query=[("fieldManager", field_manager)],
            )
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise

    def patch_status(
        self, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        self._count(f"status {kind}", namespace, name)
        path = _path(f"{GROUP}/{VERSION}", kind, namespace, name) + "/status"
        # Named, so managedFields show botenv (not the client library) as status's writer.
        return self._call(
            "PATCH",
            path,
            body={"status": status},
            query=[("fieldManager", FIELD_MANAGER)],
            content_type="application/merge-patch+json",
        )

    def event(
        self, involved: dict[str, Any], type_: str, reason: str, message: str, timestamp: str
    ) -> None:
        meta = involved["metadata"]
        self._count("create Event", meta["namespace"], meta["name"])
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{uuid.uuid4().hex[:12]}",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "apiVersion": involved["apiVersion"],
                "kind": involved["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid", ""),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "firstTimestamp": timestamp,
            "lastTimestamp": timestamp,
            "count": 1,
        }
        try:
            self._call(
                "POST",
                _path("v1", "Event", meta["namespace"]),
                body=body,
                query=[("fieldManager", FIELD_MANAGER)],
            )
        except ApiException as exc:  # events are best effort: never fail a reconcile on one
            log.warning("could not post event %s for %s: %s", reason, meta["name"], exc.reason)


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (YAML errors span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


class NoKubeconfig(Exception):
    """No usable kubeconfig (or in-cluster service account) to reach a cluster with."""


def connect(kubeconfig: str = "", context: str = "") -> tuple[Kube, str]:
    """A Kube for a person at a terminal, and the namespace of the kubeconfig context (else
    "default"). The kubeconfig is `kubeconfig`, else $KUBECONFIG (a path list, as kubectl
    reads it), else ~/.kube/config; in a pod without any, the pod's service account."""
    import urllib3

    path = kubeconfig or os.environ.get("KUBECONFIG", "")
    if not path:
        home = os.path.expanduser("~/.kube/config")
        if os.path.exists(home):
            path = home
        elif os.environ.get("KUBERNETES_SERVICE_HOST") and not context:
            config = kubernetes.client.Configuration()
            kubernetes.config.load_incluster_config(client_configuration=config)
            try:
                with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
                    namespace = f.read().strip() or "default"
            except OSError:
                namespace = "default"
            return Kube(kubernetes.client.ApiClient(config)), namespace
        else:
            raise NoKubeconfig(
                "no kubeconfig: set KUBECONFIG, pass --kubeconfig, or create ~/.kube/config"
            )
    files = [os.path.expanduser(p) for p in path.split(os.pathsep) if p]
    if not any(os.path.exists(p) for p in files):
        raise NoKubeconfig(f"kubeconfig {path!r} not found")
    try:
        contexts, current = kubernetes.config.list_kube_config_contexts(path)
        chosen = (
            next((c for c in contexts if c.get("name") == context), None) if context else current
        )
        if chosen is None:
            names = ", ".join(c.get("name", "") for c in contexts) or "none"
            raise NoKubeconfig(
                f"context {context!r} not found in kubeconfig {path!r} (contexts: {names})"
            )
        config = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(
            config_file=path,
            context=context or None,
            client_configuration=config,
            persist_config=False,
        )
    except kubernetes.config.ConfigException as exc:
        raise NoKubeconfig(f"kubeconfig {path!r}: {one_line(exc)}") from exc
    except (yaml.YAMLError, TypeError, ValueError, AttributeError, KeyError) as exc:
        # Not YAML, or YAML that is not a kubeconfig: the client library fails inside.
        raise NoKubeconfig(
            f"kubeconfig {path!r} is not a valid kubeconfig: {one_line(exc)}"
        ) from exc
    # A person waits at the terminal: one retry, not urllib3's three, on a dead address.
    config.retries = 1
    if not config.verify_ssl:  # insecure-skip-tls-verify: one warning per call is noise
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    namespace = (chosen.get("context") or {}).get("namespace") or "default"
    return Kube(kubernetes.client.ApiClient(config)), namespace
