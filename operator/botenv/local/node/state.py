"""What the local node knows of its pods and their containers."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def utc_now() -> str:
    """Now, as a Kubernetes timestamp."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- runtime state --------------------------------------------------------------------------


class ConfigError(Exception):
    """CreateContainerConfigError: a Secret, ConfigMap or key the env needs is missing."""


class MountError(Exception):
    """A volume cannot be set up (the container stays ContainerCreating)."""


@dataclasses.dataclass
class Probe:
    kind: str  # startup, readiness, liveness
    spec: dict
    next_at: float = 0.0
    successes: int = 0
    failures: int = 0
    future: concurrent.futures.Future[tuple[bool, str]] | None = None

    def period(self) -> float:
        return float(self.spec.get("periodSeconds") or 10)

    def delay(self) -> float:
        return float(self.spec.get("initialDelaySeconds") or 0)


@dataclasses.dataclass
class Container:
    spec: dict
    name: str
    image: str
    init: bool = False  # an init container: runs to completion before the containers
    state: str = "waiting"  # waiting, running, terminated
    reason: str = "ContainerCreating"
    message: str = ""
    proc: subprocess.Popen[bytes] | None = None
    started_at: str = ""
    started_mono: float = 0.0
    terminated: dict | None = None  # the state when terminated for good
    last_terminated: dict | None = None
    restart_count: int = 0
    crashes: int = 0
    next_start: float = 0.0
    ready: bool = False
    started: bool = False
    killing: bool = False
    kill_deadline: float = 0.0
    image_id: str = ""
    container_id: str = ""
    argv: list[str] = dataclasses.field(default_factory=list)
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    cwd: str = ""
    log_offset: int = 0  # where this run's output starts in the (appended) log file
    termination_log: Path | None = None  # this run's terminationMessagePath, remapped
    rewrite_path: Callable[[str], str] = lambda s: s
    programs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    probes: dict[str, Probe] = dataclasses.field(default_factory=dict)
    warned: str = ""  # the last error an event was posted for
    user: int | str | None = None  # the user it would run as (runAsUser, else the image's)
    # security.RootFilesystem, with readOnlyRootFilesystem: its read-only places
    rootfs: Any = None
    root_writes: tuple[str, ...] = ()  # what it wrote there (reported once each)

    def mark_started(self, now: float) -> None:
        """Started (its startup probe passed, or it has none): the other probes begin."""
        self.started = True
        for kind in ("readiness", "liveness"):
            probe = self.probes.get(kind)
            if probe is not None:
                probe.next_at = max(now, self.started_mono + probe.delay())
        if "readiness" not in self.probes:
            self.ready = True

    def ports(self) -> dict[str, int]:
        return {
            p["name"]: int(p["containerPort"])
            for p in self.spec.get("ports") or []
            if p.get("name")
        }

    @property
    def field_path(self) -> str:
        """The container's fieldPath in events."""
        return f"spec.{'initContainers' if self.init else 'containers'}{{{self.name}}}"

    @property
    def succeeded(self) -> bool:
        return self.terminated is not None and self.terminated.get("exitCode") == 0


@dataclasses.dataclass
class Pod:
    uid: str
    namespace: str
    name: str
    ip: str
    dir: Path
    pod: dict  # the latest object seen
    containers: list[Container]
    start_time: str
    init_containers: list[Container] = dataclasses.field(default_factory=list)
    transitions: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    last_status: dict | None = None
    term_deadline: float | None = None

    @property
    def labels(self) -> dict[str, str]:
        return self.pod["metadata"].get("labels") or {}

    @property
    def restart_policy(self) -> str:
        return self.pod["spec"].get("restartPolicy") or "Always"

    @property
    def ready(self) -> bool:
        return all(c.ready for c in self.containers)

    @property
    def all_containers(self) -> list[Container]:
        return [*self.init_containers, *self.containers]

    def named_port(self, name: str) -> int | None:
        for c in self.containers:
            if name in c.ports():
                return c.ports()[name]
        return None

    def all_ports(self) -> set[int]:
        return {
            int(p["containerPort"]) for c in self.all_containers for p in c.spec.get("ports") or []
        }


@dataclasses.dataclass(frozen=True)
class ProcessInfo:
    """One running container process, as ``TestKubelet.processes()`` reports it."""

    namespace: str
    pod: str
    container: str
    pid: int
    pod_ip: str
    ports: tuple[int, ...]
    restart_count: int
    ready: bool
    argv: tuple[str, ...]
    cwd: str
    user: int | str | None = None  # the user it would run as (the node runs it as its own)
    read_only_root: bool = False
    root_writes: tuple[str, ...] = ()  # written to its read-only root filesystem
    home: str = ""  # its $HOME and $TMPDIR, as local directories
    tmpdir: str = ""
