"""Channel exposure on a real API server: an environment's Ingress and Gateway API HTTPRoute
(applied, owned, updated, removed), the Service's session affinity, status.url, and bad
input refused or reported with its field while what runs keeps running.

The HTTPRoute test installs the Gateway API's own standard CRDs (sigs.k8s.io/gateway-api from
the Go module proxy, tests/support/gateway_api.py) while the operator runs, so the route is
checked by the CRD's published schema and rules on the API server itself."""

from __future__ import annotations

import copy

import pytest

from botenv.api import SpecError, parse_environment
from tests.cluster.test_environments import _names, deployment, env, tag, wait_degraded
from tests.support import gateway_api
from tests.support.kubectl import CEL_SINCE, condition, eventually
from tests.support.pods import make_ready

pytestmark = pytest.mark.cluster

HTTPROUTES = "httproutes.gateway.networking.k8s.io"
INGRESS = {
    "className": "nginx",
    "host": "chat.example.com",
    "tls": {"secretName": "chat-tls"},
    "annotations": {"nginx.ingress.kubernetes.io/affinity": "cookie"},
}
ROUTE = {
    "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "web"}],
    "hostnames": ["bot.example.com"],
}


@pytest.fixture
def ns(kubectl):
    name = f"expose-{next(_names)}"
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def ingress_of(kubectl, ns, environment):
    return kubectl.get("ingress", f"rasa-{environment}", ns)


def status_of(kubectl, ns, environment):
    return kubectl.get("benv", environment, ns).get("status") or {}


def owned_by(kubectl, ns, environment, child):
    owner = kubectl.get("benv", environment, ns)["metadata"]["uid"]
    ref = child["metadata"]["ownerReferences"][0]
    labels = child["metadata"]["labels"]
    return (
        (ref["kind"], ref["uid"], ref["controller"]) == ("BotEnvironment", owner, True)
        and labels["botenv.dev/environment"] == environment
        and labels["app.kubernetes.io/managed-by"] == "botenv"
    )


def assert_idle(operator, ns):
    """Another resync writes nothing: what was applied is what the server holds."""
    operator.settle()
    before = operator.writes_in(ns)
    operator.resync_now()
    operator.settle()
    assert operator.writes_in(ns) == before


@pytest.mark.compat
def test_ingress_applied_owned_updated_and_removed(kubectl, operator, ns):
    kubectl.apply(tag(ns, "t", "m.tar.gz"), env(ns, "web", modelTag="t", ingress=INGRESS))
    ingress = eventually(lambda: ingress_of(kubectl, ns, "web"), message="Ingress applied")
    assert owned_by(kubectl, ns, "web", ingress)
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["chat.example.com"], "secretName": "chat-tls"}]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "chat.example.com"
    assert rule["http"]["paths"] == [
        {
            "path": "/",
            "pathType": "Prefix",
            "backend": {"service": {"name": "rasa-web", "port": {"number": 5005}}},
        }
    ]
    status = eventually(
        lambda: (
            (s := status_of(kubectl, ns, "web")).get("url") == "https://chat.example.com/" and s
        ),
        message="status.url from the Ingress",
    )
    assert condition({"status": status}, "Exposed")["status"] == "True"
    wide = kubectl.run("get", "benv", "web", "-n", ns, "-o", "wide").stdout
    assert "URL" in wide.splitlines()[0] and "https://chat.example.com/" in wide
    assert_idle(operator, ns)

    # Updated: another host and path, no TLS; the Service's port follows.
    kubectl.patch(
        "benv",
        "web",
        ns,
        {
            "spec": {
                "ingress": {"host": "support.example.com", "path": "/rasa", "tls": None},
                "service": {"port": 8080},
            }
        },
    )
    ingress = eventually(
        lambda: (
            (i := ingress_of(kubectl, ns, "web"))["spec"]["rules"][0]["host"]
            == "support.example.com"
            and i
        ),
        message="Ingress updated",
    )
    assert "tls" not in ingress["spec"]
    path = ingress["spec"]["rules"][0]["http"]["paths"][0]
    assert path["path"] == "/rasa"
    assert path["backend"]["service"]["port"] == {"number": 8080}
    eventually(
        lambda: status_of(kubectl, ns, "web").get("url") == "http://support.example.com/rasa",
        message="status.url follows",
    )

    # A deleted Ingress is drift: restored.
    kubectl.delete("ingress", "rasa-web", ns)
    eventually(
        lambda: (
            (i := ingress_of(kubectl, ns, "web")) and not i["metadata"].get("deletionTimestamp")
        ),
        message="Ingress restored",
    )

    # Removed from the spec: the Ingress, status.url and the Exposed condition go.
    kubectl.patch("benv", "web", ns, {"spec": {"ingress": None}})
    eventually(lambda: ingress_of(kubectl, ns, "web") is None, message="Ingress deleted")
    eventually(
        lambda: (
            "url" not in (s := status_of(kubectl, ns, "web"))
            and not condition({"status": s}, "Exposed")
        ),
        message="status.url and Exposed removed",
    )
    assert deployment(kubectl, ns, "web") is not None

    # Deleting the environment garbage-collects its Ingress.
    kubectl.patch("benv", "web", ns, {"spec": {"ingress": {"host": "chat.example.com"}}})
    eventually(lambda: ingress_of(kubectl, ns, "web"), message="Ingress applied again")
    kubectl.delete("benv", "web", ns)
    eventually(
        lambda: ingress_of(kubectl, ns, "web") is None,
        timeout=60,
        message="Ingress garbage-collected with its environment",
    )


@pytest.mark.compat
def test_session_affinity_on_the_service(kubectl, operator, ns):
    sticky = {
        "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
    }
    kubectl.apply(tag(ns, "t", "m.tar.gz"), env(ns, "sock", modelTag="t", service=sticky))
    svc = eventually(lambda: kubectl.get("service", "rasa-sock", ns), message="Service")
    assert svc["spec"]["sessionAffinity"] == "ClientIP"
    assert svc["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 600}}
    # Back to None: the server refuses a sessionAffinityConfig with None, so botenv removes it.
    kubectl.patch(
        "benv",
        "sock",
        ns,
        {"spec": {"service": {"sessionAffinity": "None", "sessionAffinityConfig": None}}},
    )
    svc = eventually(
        lambda: (
            (s := kubectl.get("service", "rasa-sock", ns))["spec"]["sessionAffinity"] == "None"
            and s
        ),
        message="affinity None",
    )
    assert "sessionAffinityConfig" not in svc["spec"]
    assert condition(kubectl.get("benv", "sock", ns), "Degraded")["status"] == "False"


def _operator_problems(obj: dict) -> str:
    try:
        parse_environment(copy.deepcopy(obj), "rasa/rasa:3.6.21-full")
    except SpecError as exc:
        return str(exc)
    return ""


# (spec, the field the API server's error names, and the operator's own check too)
REFUSED = {
    "ingress-without-host": ({"ingress": {"className": "nginx"}}, "spec.ingress.host"),
    "ingress-host-not-dns": ({"ingress": {"host": "Chat_Bot"}}, "spec.ingress.host"),
    "ingress-bad-path-type": (
        {"ingress": {"host": "a.example.com", "pathType": "Regex"}},
        "spec.ingress.pathType",
    ),
    "route-without-parent-refs": (
        {"httpRoute": {"hostnames": ["a.example.com"]}},
        "spec.httpRoute.parentRefs",
    ),
    "route-with-no-parent-refs": ({"httpRoute": {"parentRefs": []}}, "spec.httpRoute.parentRefs"),
    "unknown-session-affinity": (
        {"service": {"sessionAffinity": "Cookie"}},
        "spec.service.sessionAffinity",
    ),
}


@pytest.mark.compat
@pytest.mark.parametrize(("spec", "field"), REFUSED.values(), ids=REFUSED.keys())
def test_bad_input_is_refused_naming_the_field(kubectl, ns, spec, field):
    obj = env(ns, "bad", **spec)
    proc = kubectl.apply(obj, check=False, server_validation_only=True)
    assert proc.returncode != 0, f"the API server accepted {spec}"
    assert field in proc.stderr, proc.stderr
    assert kubectl.get("benv", "bad", ns) is None
    assert f"{field}: " in _operator_problems(obj)


@pytest.mark.compat
def test_a_running_environment_keeps_running_on_bad_input(control_plane, kubectl, operator, ns):
    kubectl.apply(
        tag(ns, "t", "m.tar.gz"),
        env(ns, "live", modelTag="t", ingress={"host": "chat.example.com"}),
    )
    before = eventually(lambda: ingress_of(kubectl, ns, "live"), message="Ingress applied")
    running = eventually(lambda: deployment(kubectl, ns, "live"), message="Deployment")
    eventually(
        lambda: status_of(kubectl, ns, "live").get("url") == "http://chat.example.com/",
        message="status.url",
    )

    # The CRD's schema admits an IP address as host; an Ingress does not: the operator says so.
    kubectl.patch("benv", "live", ns, {"spec": {"replicas": 0, "ingress": {"host": "10.1.2.3"}}})
    degraded = wait_degraded(kubectl, ns, "live", "InvalidSpec")
    assert "spec.ingress.host: must be a DNS name, not an IP address" in degraded["message"]

    # sessionAffinityConfig without ClientIP: the CRD's CEL rule refuses it (1.25+); an older
    # server stores it, and the operator reports it.
    change = kubectl.run(
        "patch",
        "benv",
        "live",
        "-n",
        ns,
        "--type=merge",
        "-p",
        '{"spec": {"service": {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 5}}}}}',
        check=False,
    )
    if control_plane.version >= CEL_SINCE:
        assert change.returncode != 0
        assert "spec.service.sessionAffinityConfig: " in change.stderr, change.stderr
        assert "unless spec.service.sessionAffinity is ClientIP" in change.stderr
    else:
        assert change.returncode == 0, change.stderr
        eventually(
            lambda: (
                "spec.service.sessionAffinityConfig: must be empty unless"
                in condition(kubectl.get("benv", "live", ns), "Degraded").get("message", "")
            ),
            message="the operator names spec.service.sessionAffinityConfig",
        )

    # What runs was left as it was: the Deployment (not scaled to 0) and the Ingress.
    operator.settle()
    after = deployment(kubectl, ns, "live")
    assert after["metadata"]["generation"] == running["metadata"]["generation"]
    assert after["spec"]["replicas"] == 1
    ingress = ingress_of(kubectl, ns, "live")
    assert ingress["metadata"]["generation"] == before["metadata"]["generation"]
    assert ingress["spec"]["rules"][0]["host"] == "chat.example.com"
    assert status_of(kubectl, ns, "live")["url"] == "http://chat.example.com/"

    # Fixed: applied again.
    kubectl.patch(
        "benv",
        "live",
        ns,
        {
            "spec": {
                "ingress": {"host": "fixed.example.com"},
                "service": {"sessionAffinityConfig": None},
            }
        },
    )
    eventually(
        lambda: ingress_of(kubectl, ns, "live")["spec"]["rules"][0]["host"] == "fixed.example.com",
        message="the fixed spec is applied",
    )
    eventually(lambda: deployment(kubectl, ns, "live")["spec"]["replicas"] == 0)
    eventually(lambda: condition(kubectl.get("benv", "live", ns), "Degraded")["status"] == "False")


def _serves_http_routes(kubectl) -> bool:
    proc = kubectl.run("get", "--raw", "/apis/gateway.networking.k8s.io/v1", check=False)
    return proc.returncode == 0 and '"httproutes"' in proc.stdout


def test_http_route_waits_for_the_gateway_api_then_is_applied_updated_and_removed(
    kubectl, operator, ns
):
    # The session's fresh API server has no Gateway API; this test installs it midway.
    assert not _serves_http_routes(kubectl)
    kubectl.apply(tag(ns, "t", "m.tar.gz"), env(ns, "chat", modelTag="t", httpRoute=ROUTE))

    # Without the API: a condition says what is missing; everything else runs and is Ready.
    exposed = eventually(
        lambda: (
            (c := condition(kubectl.get("benv", "chat", ns), "Exposed"))
            and c["reason"] == "HTTPRouteAPIMissing"
            and c
        ),
        message="Exposed=False HTTPRouteAPIMissing",
    )
    assert exposed["status"] == "False"
    assert "spec.httpRoute" in exposed["message"] and "Gateway API CRDs" in exposed["message"]
    eventually(
        lambda: make_ready(kubectl, ns, "botenv.dev/environment=chat") == 1,
        message="pod created and marked ready",
    )
    kubectl.run("wait", "--for=condition=Ready", "benv/chat", "-n", ns, "--timeout=30s")
    benv = kubectl.get("benv", "chat", ns)
    assert condition(benv, "Degraded")["status"] == "False"
    assert "url" not in benv["status"]  # no route applied, so no URL known
    assert kubectl.get("service", "rasa-chat", ns) is not None
    warnings = [
        e
        for e in kubectl.list("events", ns)
        if e["reason"] == "HTTPRouteAPIMissing" and e["involvedObject"]["name"] == "chat"
    ]
    assert len(warnings) == 1 and warnings[0]["type"] == "Warning"

    # The Gateway API's standard CRDs installed while the operator runs: the next resync
    # finds them (API discovery again) and applies the route.
    for crd in gateway_api.standard_crds():
        kubectl.run("apply", "--server-side", "-f", str(crd))
    kubectl.run(
        "wait",
        "--for=condition=Established",
        *(f"crd/{name}" for name in gateway_api.CRDS),
        "--timeout=60s",
    )
    operator.resync_now()
    route = eventually(lambda: kubectl.get(HTTPROUTES, "rasa-chat", ns), message="HTTPRoute")
    assert owned_by(kubectl, ns, "chat", route)
    assert route["spec"]["hostnames"] == ["bot.example.com"]
    (parent,) = route["spec"]["parentRefs"]
    assert {k: parent[k] for k in ("name", "namespace", "sectionName")} == {
        "name": "public",
        "namespace": "gateways",
        "sectionName": "web",
    }
    (rule,) = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    (backend,) = rule["backendRefs"]
    assert (backend["name"], backend["port"]) == ("rasa-chat", 5005)
    eventually(
        lambda: (
            (s := status_of(kubectl, ns, "chat")).get("url") == "http://bot.example.com/"
            and condition({"status": s}, "Exposed")["status"] == "True"
        ),
        message="status.url from the route, Exposed=True",
    )
    assert_idle(operator, ns)  # the server's defaults in the route are no drift

    # Updated, then removed from the spec.
    kubectl.patch("benv", "chat", ns, {"spec": {"httpRoute": {"hostnames": ["help.example.com"]}}})
    eventually(
        lambda: (
            kubectl.get(HTTPROUTES, "rasa-chat", ns)["spec"]["hostnames"] == ["help.example.com"]
        ),
        message="HTTPRoute updated",
    )
    kubectl.patch("benv", "chat", ns, {"spec": {"httpRoute": None}})
    eventually(
        lambda: kubectl.get(HTTPROUTES, "rasa-chat", ns) is None, message="HTTPRoute deleted"
    )
    eventually(lambda: "url" not in status_of(kubectl, ns, "chat"), message="status.url removed")
