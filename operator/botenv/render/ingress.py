"""How clients outside the cluster reach the environment's Service: an Ingress
(spec.ingress), a Gateway API HTTPRoute (spec.httpRoute), the external URL they give
(status.url) and the Exposed condition that says whether they are applied."""

from __future__ import annotations

from typing import Any

from botenv.api.environment import EnvironmentSpec
from botenv.render import conditions as cond
from botenv.render import names

INGRESS_API = "networking.k8s.io/v1"
GATEWAY_API = "gateway.networking.k8s.io/v1"
HTTP_ROUTES = "httproutes"  # the resource discovery lists under GATEWAY_API

EXPOSED = "Exposed"
HTTP_ROUTE_API_MISSING = "HTTPRouteAPIMissing"


def _metadata(spec: EnvironmentSpec, tag: str, uid: str) -> dict[str, Any]:
    return {
        "name": names.rasa_name(spec.name),
        "namespace": spec.namespace,
        "labels": names.labels(spec.name, tag),
        "ownerReferences": [names.owner_reference(spec.name, uid)],
    }


def ingress(spec: EnvironmentSpec, *, tag: str, uid: str) -> dict[str, Any]:
    """An Ingress for spec.ingress, to the Rasa Service's port."""
    wanted = spec.ingress
    assert wanted is not None
    metadata = _metadata(spec, tag, uid)
    if wanted.annotations:
        metadata["annotations"] = dict(wanted.annotations)
    body: dict[str, Any] = {
        "rules": [
            {
                "host": wanted.host,
                "http": {
                    "paths": [
                        {
                            "path": wanted.path,
                            "pathType": wanted.path_type,
                            "backend": {
                                "service": {
                                    "name": names.rasa_name(spec.name),
                                    "port": {"number": spec.service.port},
                                }
                            },
                        }
                    ]
                },
            }
        ]
    }
    if wanted.class_name:
        body["ingressClassName"] = wanted.class_name
    if wanted.tls:
        tls: dict[str, Any] = {"hosts": [wanted.host]}
        if wanted.tls_secret:
            tls["secretName"] = wanted.tls_secret
        body["tls"] = [tls]
    return {"apiVersion": INGRESS_API, "kind": "Ingress", "metadata": metadata, "spec": body}


def http_route(spec: EnvironmentSpec, *, tag: str, uid: str) -> dict[str, Any]:
    """An HTTPRoute for spec.httpRoute, to the Rasa Service's port."""
    wanted = spec.http_route
    assert wanted is not None
    parents = []
    for ref in wanted.parent_refs:
        parent = {"name": ref.name}
        if ref.namespace:
            parent["namespace"] = ref.namespace
        if ref.section_name:
            parent["sectionName"] = ref.section_name
        parents.append(parent)
    body: dict[str, Any] = {
        "parentRefs": parents,
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": wanted.path}}],
                "backendRefs": [{"name": names.rasa_name(spec.name), "port": spec.service.port}],
            }
        ],
    }
    if wanted.hostnames:
        body["hostnames"] = list(wanted.hostnames)
    return {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": _metadata(spec, tag, uid),
        "spec": body,
    }


def url(spec: EnvironmentSpec, *, route_applied: bool) -> str | None:
    """The external URL: the Ingress's host (https with tls), else the HTTPRoute's first
    hostname. None while it is not known: no concrete host name (a wildcard only), or no
    route applied."""
    if spec.ingress is not None and not spec.ingress.host.startswith("*"):
        scheme = "https" if spec.ingress.tls else "http"
        return f"{scheme}://{spec.ingress.host}{spec.ingress.path}"
    if spec.http_route is not None and route_applied:
        # The scheme is the Gateway listener's, which botenv does not read: http, as the
        # route itself says nothing about TLS.
        host = next((h for h in spec.http_route.hostnames if not h.startswith("*")), "")
        if host:
            return f"http://{host}{spec.http_route.path}"
    return None


def exposed(spec: EnvironmentSpec, *, route_api: bool, generation: int) -> dict[str, Any] | None:
    """The Exposed condition: None without spec.ingress and spec.httpRoute."""
    if spec.ingress is None and spec.http_route is None:
        return None
    name = names.rasa_name(spec.name)
    if spec.http_route is not None and not route_api:
        return cond.condition(
            EXPOSED,
            False,
            HTTP_ROUTE_API_MISSING,
            f"spec.httpRoute: this cluster does not serve HTTPRoute ({GATEWAY_API}), so "
            "no HTTPRoute is applied: install the Gateway API CRDs (standard channel, "
            "v1.0 or newer) and a Gateway controller; botenv applies the route at its next "
            "resync. Everything else of the environment runs"
            + (f"; Ingress {name} is applied" if spec.ingress is not None else ""),
            generation,
        )
    applied = [
        kind
        for kind, wanted in (("Ingress", spec.ingress), ("HTTPRoute", spec.http_route))
        if wanted is not None
    ]
    return cond.condition(
        EXPOSED,
        True,
        "Applied",
        f"{' and '.join(applied)} {name} {'route' if len(applied) > 1 else 'routes'} to "
        f"Service {name} port {spec.service.port}",
        generation,
    )


def with_exposed(
    status: dict[str, Any],
    previous: dict[str, Any],
    exposed: dict[str, Any] | None,
    *,
    applied: bool,
    timestamp: str,
) -> dict[str, Any]:
    """`status` with the Exposed condition: the planned one when the plan was applied, else
    the previous one (what runs was left as it was)."""
    wanted = exposed if applied else (cond.get(previous.get("conditions"), EXPOSED) or None)
    if wanted is not None:
        merged = cond.merge(previous.get("conditions"), [wanted], timestamp)
        status["conditions"] = [*status.get("conditions", []), *merged]
    return status


def events(previous: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, str, str]]:
    """A Warning when the routes stop being (or are not) applied, for a new reason."""
    old, new = (cond.get(s.get("conditions"), EXPOSED) for s in (previous, current))
    if new.get("status") == "False" and (
        old.get("status") != "False" or old.get("reason") != new.get("reason")
    ):
        return [("Warning", new["reason"], new.get("message", ""))]
    return []
