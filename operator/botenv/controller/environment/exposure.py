"""The environment's Ingress and HTTPRoute, in the reconcile's own steps: what gather reads
for them (the live ones from the watches; whether the cluster serves HTTPRoute, from API
discovery) and what plan makes of it (the routes to apply or remove, status.url and the
Exposed condition). An HTTPRoute the cluster cannot take is reported, never an error: the
rest of the environment is applied as usual."""

from __future__ import annotations

import dataclasses
from typing import Any

from botenv.api.environment import EnvironmentSpec
from botenv.controller.environment.seen import Seen
from botenv.controller.state import State
from botenv.render import ingress, names

KINDS = ("Ingress", "HTTPRoute")


@dataclasses.dataclass
class Exposure:
    children: list[dict[str, Any]]
    remove: list[tuple[str, str, str]]
    url: str | None
    condition: dict[str, Any] | None


def gather(state: State, seen: Seen) -> None:
    assert seen.spec is not None
    name = names.rasa_name(seen.name)
    seen.routes = {kind: state.child(kind, seen.namespace, name) for kind in KINDS}
    if seen.spec.http_route is not None:
        seen.route_api = state.discovery.serves(ingress.GATEWAY_API, ingress.HTTP_ROUTES)


def plan(seen: Seen, spec: EnvironmentSpec, uid: str, generation: int) -> Exposure:
    route_api = seen.route_api and spec.http_route is not None
    children = []
    if spec.ingress is not None:
        children.append(ingress.ingress(spec, tag=spec.model_tag, uid=uid))
    if route_api:
        children.append(ingress.http_route(spec, tag=spec.model_tag, uid=uid))
    wanted = {c["kind"] for c in children}
    remove = [
        (kind, seen.namespace, live["metadata"]["name"])
        for kind, live in seen.routes.items()
        if live is not None and kind not in wanted
    ]
    return Exposure(
        children=children,
        remove=remove,
        url=ingress.url(spec, route_applied=route_api),
        condition=ingress.exposed(spec, route_api=route_api, generation=generation),
    )
