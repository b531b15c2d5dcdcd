"""Pod IPs and Services: loopback addresses, a tiny kube-proxy."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from botenv.local.node.api import Api, KubeletError
from botenv.local.node.constants import SERVICE_REFRESH_SECONDS
from botenv.local.node.state import Pod

SVC_URL = re.compile(
    r"(?<![\w.+-])(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://"
    r"(?P<name>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\.(?P<ns>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)"
    r"\.svc(?:\.cluster\.local)?\.?(?::(?P<port>\d+))?(?![\w.-])"
)
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class LoopbackPool:
    """Unique loopback addresses 127.0.X.Y with X >= 2 (127.0.0.x and Debian's 127.0.1.1 stay
    untouched). Each pool holds whole /24 blocks under an flock, so test processes running
    side by side never share an address; addresses are not reused within a pool."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.gettempdir()) / "botenv-test-kubelet-ips"
        self._dir.mkdir(parents=True, exist_ok=True)
        self._fds: list[int] = []
        self._blocks: list[int] = []
        self._block = 0
        self._next = 255
        self._lock = threading.Lock()

    def take(self) -> str:
        with self._lock:
            if self._next > 254:
                self._claim()
            ip = f"127.0.{self._block}.{self._next}"
            self._next += 1
            return ip

    def _claim(self) -> None:
        for block in range(2, 255):
            if block in self._blocks:
                continue
            fd = os.open(self._dir / f"127.0.{block}.x.lock", os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._fds.append(fd)
            self._blocks.append(block)
            self._block, self._next = block, 1
            return
        raise KubeletError("no free 127.0.X.0/24 block for pod IPs")

    def close(self) -> None:
        with self._lock:
            for fd in self._fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fds.clear()


class ServiceProxy:
    """A tiny kube-proxy: one loopback virtual IP per Service, a listener per Service port
    used, each connection forwarded to a Ready pod chosen when it arrives."""

    def __init__(
        self, pool: LoopbackPool, routes: Callable[[tuple[str, str, int]], list[tuple[str, int]]]
    ) -> None:
        self._pool = pool
        self._routes = routes
        self._vips: dict[tuple[str, str], str] = {}
        self._listeners: dict[tuple[str, str, int], tuple[asyncio.AbstractServer, str, int]] = {}
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="test-kube-proxy", daemon=True
        )
        self._thread.start()

    def keys(self) -> list[tuple[str, str, int]]:
        with self._lock:
            return list(self._listeners)

    def address(self, namespace: str, name: str, port: int) -> str:
        """host:port that reaches Service namespace/name's port `port`."""
        key = (namespace, name, port)
        with self._lock:
            if key not in self._listeners:
                vip = self._vips.get(key[:2]) or self._pool.take()
                self._vips[key[:2]] = vip
                assert self._loop is not None
                server, lport = asyncio.run_coroutine_threadsafe(
                    self._listen(key, vip, port), self._loop
                ).result(10)
                self._listeners[key] = (server, vip, lport)
            _, vip, lport = self._listeners[key]
        return f"{vip}:{lport}"

    async def _listen(
        self, key: tuple[str, str, int], vip: str, port: int
    ) -> tuple[asyncio.AbstractServer, int]:
        def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Any:
            return self._handle(key, reader, writer)

        try:
            server = await asyncio.start_server(handler, vip, port)
        except OSError:  # a privileged or taken port: any port on the VIP will do
            server = await asyncio.start_server(handler, vip, 0)
        return server, server.sockets[0].getsockname()[1]

    async def _handle(
        self, key: tuple[str, str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        targets = self._routes(key)
        if not targets:  # no ready endpoint: refuse, as kube-proxy's REJECT rule does
            writer.transport.abort()
            return
        host, port = targets[next(self._counter) % len(targets)]
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        except (TimeoutError, OSError):
            writer.transport.abort()
            return
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            writer.transport.abort()

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return

        async def close_all() -> None:
            for server, _, _ in self._listeners.values():
                server.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close_all(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        with contextlib.suppress(Exception):
            loop.close()


class Services:
    """Where a pod's processes reach a Service: service_hosts (outside the cluster) or
    a virtual IP of the proxy, forwarding to a ready pod that the Service selects."""

    def __init__(self, pool: LoopbackPool, service_hosts: dict[str, str]) -> None:
        self.service_hosts = service_hosts
        self._proxy = ServiceProxy(pool, self._route)
        self._routes: dict[tuple[str, str, int], list[tuple[str, int]]] = {}
        self._services: dict[tuple[str, str], dict] = {}
        self._services_at = 0.0

    def start(self) -> None:
        self._proxy.start()

    def stop(self) -> None:
        self._proxy.stop()

    def service_address(self, namespace: str, name: str, port: int) -> str:
        """host:port where this kubelet's processes reach Service namespace/name:port."""
        for key in (f"{name}.{namespace}:{port}", f"{name}.{namespace}"):
            target = self.service_hosts.get(key)
            if target:
                return target if ":" in target else f"{target}:{port}"
        return self._proxy.address(namespace, name, port)

    def rewrite_urls(self, text: str) -> str:
        """Every ``scheme://<svc>.<ns>.svc[.cluster.local][:port]`` in text pointed at an
        address this machine can reach (see service_address)."""

        def replace(m: re.Match[str]) -> str:
            scheme = m.group("scheme")
            port = int(m.group("port")) if m.group("port") else _DEFAULT_PORTS.get(scheme.lower())
            if port is None:
                return m.group(0)
            return f"{scheme}://{self.service_address(m.group('ns'), m.group('name'), port)}"

        return SVC_URL.sub(replace, text)

    def _route(self, key: tuple[str, str, int]) -> list[tuple[str, int]]:
        return self._routes.get(key, [])

    def refresh(self, api: Api, pods: Sequence[Pod]) -> None:
        """Which ready pods each Service port used reaches now."""
        keys = self._proxy.keys()
        if not keys:
            return
        now = time.monotonic()
        if now >= self._services_at:
            services: dict[tuple[str, str], dict] = {}
            # Only namespaces where this kubelet runs pods can have endpoints.
            running = {rt.namespace for rt in pods}
            for ns in sorted({k[0] for k in keys} & running):
                for svc in api("GET", f"/api/v1/namespaces/{ns}/services")["items"]:
                    services[(ns, svc["metadata"]["name"])] = svc
            self._services = services
            self._services_at = now + SERVICE_REFRESH_SECONDS
        routes: dict[tuple[str, str, int], list[tuple[str, int]]] = {}
        for key in keys:
            ns, name, port = key
            svc = self._services.get((ns, name))
            targets: list[tuple[str, int]] = []
            spec = (svc or {}).get("spec") or {}
            selector = spec.get("selector") or {}
            entry = next(
                (p for p in spec.get("ports") or [] if int(p.get("port", 0)) == port), None
            )
            if selector and entry is not None:
                target = entry.get("targetPort", port)
                for rt in pods:
                    if (
                        rt.namespace != ns
                        or rt.term_deadline is not None
                        or not rt.ready
                        or rt.pod["metadata"].get("deletionTimestamp")
                        or any(rt.labels.get(k) != v for k, v in selector.items())
                    ):
                        continue
                    number = (
                        int(target)
                        if isinstance(target, int) or str(target).isdigit()
                        else rt.named_port(str(target))
                    )
                    if number:
                        targets.append((rt.ip, number))
            routes[key] = sorted(targets)
        self._routes = routes
