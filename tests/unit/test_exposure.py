"""Channel exposure: spec.ingress, spec.httpRoute and the Service's session affinity, from
parsing (errors that name the field) to the objects rendered and one reconcile's writes."""

from __future__ import annotations

import asyncio

import pytest

from botenv.api import SpecError, parse_environment
from botenv.controller import environment
from botenv.render import conditions as cond
from botenv.render import ingress as routes
from botenv.render.service import service
from tests.unit.builders import DEFAULT_IMAGE, UID, spec
from tests.unit.builders import environment as environment_body
from tests.unit.reconcile_fakes import FakeKube, state
from tests.unit.test_reconcile_environment import resolved

INGRESS = {
    "className": "nginx",
    "host": "chat.example.com",
    "tls": {"secretName": "chat-tls"},
    "annotations": {"nginx.ingress.kubernetes.io/affinity": "cookie"},
}
ROUTE = {
    "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
    "hostnames": ["bot.example.com"],
}


def problems(**fields: object) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_environment(environment_body(**fields), DEFAULT_IMAGE)
    return info.value.problems


def test_an_ingress_routes_its_host_to_the_rasa_service_port():
    parsed = spec(ingress=INGRESS, service={"port": 8080})
    body = routes.ingress(parsed, tag="production", uid=UID)
    assert body["apiVersion"] == "networking.k8s.io/v1" and body["kind"] == "Ingress"
    meta = body["metadata"]
    assert (meta["name"], meta["namespace"]) == ("rasa-production", "bots")
    assert meta["ownerReferences"][0]["uid"] == UID
    assert meta["labels"]["botenv.dev/environment"] == "production"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "botenv"
    assert meta["annotations"] == {"nginx.ingress.kubernetes.io/affinity": "cookie"}
    assert body["spec"] == {
        "ingressClassName": "nginx",
        "rules": [
            {
                "host": "chat.example.com",
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {
                                "service": {"name": "rasa-production", "port": {"number": 8080}}
                            },
                        }
                    ]
                },
            }
        ],
        "tls": [{"hosts": ["chat.example.com"], "secretName": "chat-tls"}],
    }


def test_an_http_route_attaches_to_its_gateways_and_routes_to_the_service():
    parsed = spec(httpRoute={**ROUTE, "path": "/bot"})
    body = routes.http_route(parsed, tag="production", uid=UID)
    assert body["apiVersion"] == "gateway.networking.k8s.io/v1" and body["kind"] == "HTTPRoute"
    assert body["metadata"]["name"] == "rasa-production"
    assert body["spec"] == {
        "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
        "hostnames": ["bot.example.com"],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/bot"}}],
                "backendRefs": [{"name": "rasa-production", "port": 5005}],
            }
        ],
    }


@pytest.mark.parametrize(
    ("fields", "route_applied", "url"),
    [
        ({"ingress": INGRESS}, False, "https://chat.example.com/"),
        (
            {"ingress": {"host": "chat.example.com", "path": "/rasa"}},
            False,
            "http://chat.example.com/rasa",
        ),
        ({"ingress": {"host": "*.example.com"}}, False, None),
        ({"httpRoute": ROUTE}, True, "http://bot.example.com/"),
        ({"httpRoute": ROUTE}, False, None),  # the cluster has no HTTPRoute API
        ({"httpRoute": {"parentRefs": [{"name": "public"}]}}, True, None),
        ({"ingress": INGRESS, "httpRoute": ROUTE}, True, "https://chat.example.com/"),
        ({}, False, None),
    ],
)
def test_the_external_url(fields, route_applied, url):
    assert routes.url(spec(**fields), route_applied=route_applied) == url


def test_session_affinity_on_the_service():
    sticky = service(
        spec(
            service={
                "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
            }
        ),
        tag="t",
        uid=UID,
    )["spec"]
    assert sticky["sessionAffinity"] == "ClientIP"
    assert sticky["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 600}}
    # The timeout is always written with ClientIP, so removing the affinity removes it too.
    default = service(spec(service={"sessionAffinity": "ClientIP"}), tag="t", uid=UID)["spec"]
    assert default["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    off = service(spec(service={"sessionAffinity": "None"}), tag="t", uid=UID)["spec"]
    assert off["sessionAffinity"] == "None" and "sessionAffinityConfig" not in off
    assert "sessionAffinity" not in service(spec(), tag="t", uid=UID)["spec"]


BAD = {
    "ingress-without-host": (
        {"ingress": {"className": "nginx"}},
        "spec.ingress.host",
        "is required",
    ),
    "ingress-host-with-capitals": (
        {"ingress": {"host": "Chat.Example.com"}},
        "spec.ingress.host",
        "must be a DNS name",
    ),
    "ingress-host-an-ip": (
        {"ingress": {"host": "10.1.2.3"}},
        "spec.ingress.host",
        "not an IP address",
    ),
    "ingress-wildcard-inside": (
        {"ingress": {"host": "chat.*.example.com"}},
        "spec.ingress.host",
        "wildcard",
    ),
    "ingress-bad-path-type": (
        {"ingress": {"host": "a.example.com", "pathType": "Regex"}},
        "spec.ingress.pathType",
        "must be one of Prefix, Exact, ImplementationSpecific",
    ),
    "ingress-relative-path": (
        {"ingress": {"host": "a.example.com", "path": "bot"}},
        "spec.ingress.path",
        "starting with '/'",
    ),
    "ingress-path-with-dots": (
        {"ingress": {"host": "a.example.com", "path": "/a/../b"}},
        "spec.ingress.path",
        "must not contain",
    ),
    "ingress-bad-annotation": (
        {"ingress": {"host": "a.example.com", "annotations": {"no spaces": "x"}}},
        "spec.ingress.annotations",
        "'no spaces'",
    ),
    "ingress-bad-tls-secret": (
        {"ingress": {"host": "a.example.com", "tls": {"secretName": "Bad_Name"}}},
        "spec.ingress.tls.secretName",
        "valid Secret name",
    ),
    "route-without-parent-refs": (
        {"httpRoute": {"hostnames": ["a.example.com"]}},
        "spec.httpRoute.parentRefs",
        "is required",
    ),
    "route-empty-parent-refs": (
        {"httpRoute": {"parentRefs": []}},
        "spec.httpRoute.parentRefs",
        "is required",
    ),
    "route-parent-without-name": (
        {"httpRoute": {"parentRefs": [{"namespace": "gw"}]}},
        "spec.httpRoute.parentRefs[0].name",
        "is required",
    ),
    "route-bad-hostname": (
        {
            "httpRoute": {
                "parentRefs": [{"name": "gw"}],
                "hostnames": ["ok.example.com", "bad_host"],
            }
        },
        "spec.httpRoute.hostnames[1]",
        "must be a DNS name",
    ),
    "unknown-session-affinity": (
        {"service": {"sessionAffinity": "Cookie"}},
        "spec.service.sessionAffinity",
        "must be one of None, ClientIP",
    ),
    "affinity-config-without-client-ip": (
        {"service": {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 5}}}},
        "spec.service.sessionAffinityConfig",
        "unless spec.service.sessionAffinity is ClientIP",
    ),
    "affinity-timeout-too-long": (
        {
            "service": {
                "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86401}},
            }
        },
        "spec.service.sessionAffinityConfig.clientIP.timeoutSeconds",
        "at most 86400",
    ),
}


@pytest.mark.parametrize(("fields", "field", "expected"), BAD.values(), ids=BAD.keys())
def test_bad_input_names_the_field(fields, field, expected):
    found = [p for p in problems(**fields) if p.startswith(f"{field}: ")]
    assert found and expected in found[0], problems(**fields)


def test_good_input_parses():
    parsed = spec(
        ingress={
            "host": "*.example.com",
            "pathType": "ImplementationSpecific",
            "path": "/a/../b",
            "tls": {},
        },
        httpRoute={"parentRefs": [{"name": "public"}], "hostnames": ["*.example.com"]},
    )
    assert parsed.ingress is not None and parsed.ingress.tls and not parsed.ingress.tls_secret
    assert parsed.http_route is not None and parsed.http_route.path == "/"


# One reconcile on a fake API server that does or does not serve HTTPRoute.
class Cluster(FakeKube):
    def __init__(self, *, gateway_api: bool) -> None:
        super().__init__()
        self.gateway_api = gateway_api
        self.discoveries = 0

    def served_resources(self, group_version: str) -> set[str]:
        self.discoveries += 1
        if group_version == "gateway.networking.k8s.io/v1" and self.gateway_api:
            return {"httproutes", "gateways", "gatewayclasses"}
        return set()


def reconcile(kube: FakeKube, body: dict, children: tuple[dict, ...] = ()) -> dict:
    world = state(kube, environments=(body,), tags=(resolved(),), children=children)
    world.children = {**world.children, "Ingress": {}, "HTTPRoute": {}}
    for child in children:
        meta = child["metadata"]
        world.children[child["kind"]] = {(meta["namespace"], meta["name"]): [child]}
    asyncio.run(environment.reconcile(world, "bots", "production"))
    return kube.written("status")[-1]


def test_without_the_gateway_api_everything_else_is_applied_and_a_condition_says_why():
    kube = Cluster(gateway_api=False)
    status = reconcile(kube, environment_body(ingress=INGRESS, httpRoute=ROUTE))
    applied = [kind for verb, kind, *_ in kube.writes if verb == "apply"]
    assert applied == ["ConfigMap", "Service", "Deployment", "Ingress"]
    exposed = cond.get(status["conditions"], "Exposed")
    assert (exposed["status"], exposed["reason"]) == ("False", "HTTPRouteAPIMissing")
    assert "spec.httpRoute" in exposed["message"] and "Gateway API CRDs" in exposed["message"]
    assert cond.get(status["conditions"], "Degraded")["status"] == "False"
    assert status["url"] == "https://chat.example.com/"
    assert ("Warning", "HTTPRouteAPIMissing") in kube.events()


def test_with_the_gateway_api_the_route_is_applied():
    kube = Cluster(gateway_api=True)
    status = reconcile(kube, environment_body(httpRoute=ROUTE))
    route = kube.written("apply", "HTTPRoute")[0]
    assert route["spec"]["parentRefs"] == ROUTE["parentRefs"]
    exposed = cond.get(status["conditions"], "Exposed")
    assert (exposed["status"], exposed["reason"]) == ("True", "Applied")
    assert status["url"] == "http://bot.example.com/"


def test_routes_no_longer_in_the_spec_are_deleted():
    kube = Cluster(gateway_api=True)
    live = [
        routes.ingress(spec(ingress=INGRESS), tag="production", uid=UID),
        routes.http_route(spec(httpRoute=ROUTE), tag="production", uid=UID),
    ]
    status = reconcile(
        kube, environment_body(status={"url": "https://chat.example.com/"}), tuple(live)
    )
    deleted = [(kind, name) for verb, kind, _, name, _ in kube.writes if verb == "delete"]
    assert deleted == [("Ingress", "rasa-production"), ("HTTPRoute", "rasa-production")]
    assert status["url"] is None  # removed from the status
    assert not cond.get(status["conditions"], "Exposed")
    assert kube.discoveries == 0  # no spec.httpRoute: discovery is not asked


def test_a_bad_ingress_is_reported_and_nothing_is_written_to_children():
    kube = Cluster(gateway_api=False)
    status = reconcile(kube, environment_body(ingress={"host": "10.0.0.1"}))
    assert not [w for w in kube.writes if w[0] in ("apply", "delete")]
    degraded = cond.get(status["conditions"], "Degraded")
    assert degraded["reason"] == "InvalidSpec" and "spec.ingress.host: " in degraded["message"]
