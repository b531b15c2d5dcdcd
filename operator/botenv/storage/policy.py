"""Where models may come from: the cluster admin's rule, applied before any store is read.

A ModelTag's storage location is chosen by whoever may write the tag, but the operator (when
it resolves the tag) and the model server (when it downloads the model) read it with their
own identity. Without a rule, a tenant could point a tag at a file in the reader's container
(`local` with path /var/run/secrets/...), a cluster-internal service or a cloud metadata
endpoint (`http`, or a custom `endpoint`). The rule:

- `local` paths must lie under one of the roots the admin lists (none by default: the
  provider is off until a directory is mounted for it). Symbolic links are resolved first.
- `http` URLs and custom `endpoint`s must start with one of the admin's prefixes, when any
  are listed.
- Whatever the prefixes, a host must not resolve to a loopback, link-local (this includes
  169.254.169.254), unspecified, multicast or reserved address, nor to a known metadata
  address, unless the admin exempts that network. The check is on resolved addresses, and
  the http backend connects only to an address it checked (no DNS rebinding in between).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from botenv.api.tag import StorageSpec
from botenv.storage.base import StorageError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Metadata services that do not live in a link-local range (EC2's IPv6 one, Alibaba's).
METADATA_NETWORKS: tuple[Network, ...] = (
    ipaddress.ip_network("fd00:ec2::254/128"),
    ipaddress.ip_network("100.100.100.200/32"),
)


class LocationNotAllowed(StorageError):
    """The storage location is outside what the cluster admin allows. `field` is the spec
    field at fault (spec.storage.path, spec.storage.url or spec.storage.endpoint)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def forbidden_reason(address: Address) -> str | None:
    """Why an address is refused by default, or None for an ordinary unicast address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in net for net in METADATA_NETWORKS if net.version == address.version):
        return "a cloud metadata address"
    for flag, what in (
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address (cloud metadata lives there)"),
        ("is_unspecified", "the unspecified address"),
        ("is_multicast", "a multicast address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(address, flag):
            return what
    return None


def _under(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


@dataclasses.dataclass(frozen=True)
class StoragePolicy:
    local_roots: tuple[str, ...] = ()
    url_prefixes: tuple[str, ...] = ()  # empty: any URL whose host passes the address check
    allowed_networks: tuple[Network, ...] = ()  # exempt from the default refusals
    # Steps that run in a tenant's own pod (a training Job) read with the tenant's identity:
    # nothing to protect there, so they use UNRESTRICTED.
    enforced: bool = True

    @classmethod
    def parse(
        cls,
        local_roots: Iterable[str],
        url_prefixes: Iterable[str],
        allowed_networks: Iterable[str],
    ) -> StoragePolicy:
        """From settings; ValueError names the setting's bad entry."""
        roots = []
        for root in local_roots:
            if not os.path.isabs(root):
                raise ValueError(f"local storage root {root!r} is not an absolute path")
            roots.append(os.path.realpath(root))
        prefixes = []
        for prefix in url_prefixes:
            parts = urlsplit(prefix)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"storage URL prefix {prefix!r} is not an http(s) URL")
            # A prefix without a path must not match a longer host name (example.com.evil).
            prefixes.append(prefix if parts.path else prefix + "/")
        try:
            networks = tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks)
        except ValueError as exc:
            raise ValueError(f"storage allowed network: {exc}") from None
        return cls(
            local_roots=tuple(roots), url_prefixes=tuple(prefixes), allowed_networks=networks
        )

    def describe(self) -> str:
        """What is allowed, for error messages (no secrets here: settings only)."""
        roots = ", ".join(self.local_roots) or "none"
        prefixes = ", ".join(self.url_prefixes) or "any http(s) URL"
        return (
            f"allowed local roots: {roots}; allowed URL prefixes: {prefixes}; "
            "hosts must not resolve to loopback, link-local or metadata addresses"
        )

    def check(self, spec: StorageSpec, where: str = "spec.storage") -> None:
        """Raise LocationNotAllowed unless spec's location is allowed; `where` is the storage
        block's field path, for the message. Resolves host names."""
        if not self.enforced:
            return
        if spec.provider == "local":
            self._check_local(f"{where}.path", spec.path)
        elif spec.provider == "http":
            self._check_url(f"{where}.url", spec.url)
        elif spec.endpoint:
            self._check_url(f"{where}.endpoint", spec.endpoint)

    def _check_local(self, field: str, path: str) -> None:
        real = os.path.realpath(path)
        if not any(_under(real, root) for root in self.local_roots):
            where = (
                f"the allowed roots are {', '.join(self.local_roots)}"
                if self.local_roots
                else "no local storage roots are allowed in this cluster (the admin lists "
                "them in BOTENV_STORAGE_LOCAL_ROOTS, chart value storage.localRoots)"
            )
            raise LocationNotAllowed(field, f"{path!r} is outside the local storage roots: {where}")

    def _check_url(self, field: str, url: str) -> None:
        if self.url_prefixes and not any(url.startswith(p) for p in self.url_prefixes):
            raise LocationNotAllowed(
                field,
                f"{url!r} does not start with an allowed prefix ({', '.join(self.url_prefixes)})",
            )
        parts = urlsplit(url)
        host = parts.hostname
        if not host:
            raise LocationNotAllowed(field, f"{url!r} names no host")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self.addresses(field, host, port)

    def check_address(self, field: str, host: str, address: Address) -> None:
        if not self.enforced:
            return
        reason = forbidden_reason(address)
        if reason and not any(
            address in net for net in self.allowed_networks if net.version == address.version
        ):
            raise LocationNotAllowed(
                field,
                f"host {host} resolves to {address}, {reason}, "
                "which model storage may not use (an admin can "
                "exempt a network with "
                "BOTENV_STORAGE_ALLOWED_NETWORKS)",
            )

    def addresses(self, field: str, host: str, port: int) -> list[tuple]:
        """getaddrinfo() results for host, each checked; LocationNotAllowed if any address
        is refused (a name that resolves to a good and a bad address is refused whole)."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            return []  # unresolvable: the backend reports it as unreachable
        for info in infos:
            self.check_address(field, host, ipaddress.ip_address(info[4][0].split("%")[0]))
        return infos


UNRESTRICTED = StoragePolicy(enforced=False)
