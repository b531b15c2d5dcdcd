"""How an environment is reached from outside the cluster: spec.ingress, spec.httpRoute and
the Service's session affinity. The checks are those the API server makes on an Ingress, an
HTTPRoute and a Service, so a spec that parses is one the server accepts."""

from __future__ import annotations

import dataclasses
import ipaddress
import re

from botenv.api.reader import Reader
from botenv.api.refs import secret_name

PATH_TYPES = ("Prefix", "Exact", "ImplementationSpecific")
SESSION_AFFINITIES = ("None", "ClientIP")
# Kubernetes' default for sessionAffinityConfig.clientIP.timeoutSeconds (3 hours).
DEFAULT_AFFINITY_SECONDS = 10800
MAX_HOSTNAMES = 16  # HTTPRoute spec.hostnames
MAX_PARENT_REFS = 32  # HTTPRoute spec.parentRefs

_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_DNS_SUBDOMAIN = re.compile(f"^{_SUBDOMAIN}$")
# An Ingress host or HTTPRoute hostname: a DNS subdomain, or one with "*." in front.
_HOST = re.compile(rf"^(\*\.)?{_SUBDOMAIN}$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
# What the API server refuses in an Exact or Prefix path (it would not match what it says).
_BAD_PATH_PARTS = ("//", "/./", "/../", "%2f", "%2F", "#")


@dataclasses.dataclass(frozen=True)
class IngressSpec:
    host: str
    path: str = "/"
    path_type: str = "Prefix"
    class_name: str = ""
    tls: bool = False  # https: TLS at the ingress controller
    tls_secret: str = ""  # "" with tls: the controller's default certificate
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ParentRef:
    """A Gateway (or a listener of one, sectionName) the route attaches to."""

    name: str
    namespace: str = ""  # "" : the environment's namespace
    section_name: str = ""


@dataclasses.dataclass(frozen=True)
class HTTPRouteSpec:
    parent_refs: tuple[ParentRef, ...]
    hostnames: tuple[str, ...] = ()
    path: str = "/"


def _host(reader: Reader, value: str, field: str) -> None:
    if len(value) > 253 or not _HOST.match(value):
        reader.fail(
            field,
            "must be a DNS name of lower-case letters, digits, '-' and '.' (a wildcard "
            f"'*.' only in front, as in *.example.com), got {value!r}",
        )
        return
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return
    reader.fail(field, f"must be a DNS name, not an IP address, got {value!r}")


def _path(reader: Reader, key: str, exact_or_prefix: bool) -> str:
    value = reader.text(key, "/") or "/"
    field = f"{reader.path}.{key}"
    if not value.startswith("/") or len(value) > 1024:
        reader.fail(field, f"must be an absolute path starting with '/', got {value!r}")
    elif exact_or_prefix and (
        any(part in value for part in _BAD_PATH_PARTS) or value.endswith(("/..", "/."))
    ):
        reader.fail(
            field,
            "must not contain '//', '/./', '/../', '%2f' or '#', nor end in '/.' or "
            f"'/..', got {value!r}",
        )
    return value


def _annotations(reader: Reader) -> dict[str, str]:
    values = reader.text_map("annotations")
    for key in values:
        prefix, _, name = key.rpartition("/")
        if (
            not name
            or len(name) > 63
            or not _NAME_PART.match(name)
            or (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)))
            or ("/" in key and not prefix)
        ):
            reader.fail(
                f"{reader.path}.annotations",
                f"key {key!r} must be an annotation name: an optional DNS prefix and '/', "
                "then up to 63 letters, digits, '-', '_' or '.'",
            )
    return values


def parse_ingress(spec: Reader) -> IngressSpec | None:
    ingress = spec.child("ingress")
    if ingress is None:
        return None
    host = ingress.text("host")
    if not host:
        ingress.fail(
            f"{ingress.path}.host",
            "is required: the DNS name clients reach the environment at, e.g. chat.example.com",
        )
    else:
        _host(ingress, host, f"{ingress.path}.host")
    path_type = ingress.enum("pathType", PATH_TYPES, "Prefix")
    class_name = ingress.text("className")
    if class_name and (len(class_name) > 253 or not _DNS_SUBDOMAIN.match(class_name)):
        ingress.fail(
            f"{ingress.path}.className", f"must be the name of an IngressClass, got {class_name!r}"
        )
    tls = ingress.child("tls")
    return IngressSpec(
        host=host,
        path=_path(ingress, "path", path_type != "ImplementationSpecific"),
        path_type=path_type,
        class_name=class_name,
        tls=tls is not None,
        tls_secret=secret_name(tls, "secretName") if tls and "secretName" in tls.data else "",
        annotations=_annotations(ingress),
    )


def _parent_ref(route: Reader, i: int, item: object) -> ParentRef | None:
    ref = Reader(item, f"{route.path}.parentRefs[{i}]", route.problems)
    if not isinstance(item, dict):
        return None
    name, namespace, section = ref.text("name"), ref.text("namespace"), ref.text("sectionName")
    if not name:
        ref.fail(f"{ref.path}.name", "is required: the name of a Gateway")
    elif len(name) > 253:
        ref.fail(f"{ref.path}.name", f"must be at most 253 characters, got {len(name)}")
    if namespace and (len(namespace) > 63 or not _DNS_LABEL.match(namespace)):
        ref.fail(f"{ref.path}.namespace", f"must be a namespace name, got {namespace!r}")
    if section and (len(section) > 253 or not _DNS_SUBDOMAIN.match(section)):
        ref.fail(
            f"{ref.path}.sectionName", f"must be the name of a Gateway listener, got {section!r}"
        )
    return ParentRef(name, namespace, section)


def parse_http_route(spec: Reader) -> HTTPRouteSpec | None:
    route = spec.child("httpRoute")
    if route is None:
        return None
    items = route.items("parentRefs")
    if not items:
        route.fail(
            f"{route.path}.parentRefs",
            "is required: at least one Gateway the route attaches to, e.g. [{name: public}]",
        )
    elif len(items) > MAX_PARENT_REFS:
        route.fail(f"{route.path}.parentRefs", f"must have at most {MAX_PARENT_REFS} entries")
    parents = tuple(p for i, item in enumerate(items) if (p := _parent_ref(route, i, item)))
    hostnames = route.items("hostnames")
    if len(hostnames) > MAX_HOSTNAMES:
        route.fail(f"{route.path}.hostnames", f"must have at most {MAX_HOSTNAMES} entries")
    for i, hostname in enumerate(hostnames):
        if not isinstance(hostname, str):
            route.fail(f"{route.path}.hostnames[{i}]", "must be a string")
        else:
            _host(route, hostname, f"{route.path}.hostnames[{i}]")
    return HTTPRouteSpec(
        parent_refs=parents,
        hostnames=tuple(h for h in hostnames if isinstance(h, str)),
        path=_path(route, "path", exact_or_prefix=True),
    )


def parse_session_affinity(service: Reader) -> tuple[str, int | None]:
    """(spec.service.sessionAffinity or "", its ClientIP timeout in seconds or None)."""
    affinity = service.text("sessionAffinity")
    if affinity and affinity not in SESSION_AFFINITIES:
        service.fail(
            f"{service.path}.sessionAffinity",
            f"must be one of {', '.join(SESSION_AFFINITIES)}; got {affinity!r}",
        )
        affinity = ""
    config = service.child("sessionAffinityConfig")
    if config is None:
        return affinity, None
    client_ip = config.child("clientIP") or Reader({}, f"{config.path}.clientIP", config.problems)
    timeout = client_ip.integer("timeoutSeconds", minimum=1, maximum=86400)
    if affinity != "ClientIP":
        service.fail(
            f"{service.path}.sessionAffinityConfig",
            "must be empty unless spec.service.sessionAffinity is ClientIP",
        )
    return affinity, timeout
