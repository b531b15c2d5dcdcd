"""Leader election on a coordination.k8s.io Lease, the way Kubernetes' own controllers do it.

Several operator replicas may run (a rolling update, or replicas > 1 for a fast fail-over);
only the holder of the Lease reconciles. The others wait in `acquire()` and take the Lease
over when its holder stops renewing it. A holder that cannot renew before the deadline stops
at once (the process exits), so two replicas never write at the same time: the deadline is
shorter than the Lease's duration, which is how long a standby waits before taking over.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
from collections.abc import Callable

from kubernetes.client.exceptions import ApiException

from botenv.kube.client import Kube

log = logging.getLogger(__name__)

LEASE_API = "coordination.k8s.io/v1"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _micro_time(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclasses.dataclass
class LeaderElector:
    kube: Kube
    namespace: str
    identity: str
    name: str = "botenv-operator"
    lease_seconds: int = 15
    renew_deadline: float = 10.0
    retry_seconds: float = 2.0
    clock: Callable[[], datetime.datetime] = _now
    leading: bool = False

    def __post_init__(self) -> None:
        if self.renew_deadline >= self.lease_seconds:
            raise ValueError("renew_deadline must be shorter than lease_seconds")

    def _held_by_other(self, lease: dict) -> bool:
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        if not holder or holder == self.identity:
            return False
        renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
        duration = spec.get("leaseDurationSeconds") or self.lease_seconds
        if renewed is None:
            return False
        return self.clock() < renewed + datetime.timedelta(seconds=duration)

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this process holds the Lease afterwards."""
        now = _micro_time(self.clock())
        lease = self.kube.get(LEASE_API, "Lease", self.namespace, self.name)
        if lease is None:
            created = self.kube.create(
                {
                    "apiVersion": LEASE_API,
                    "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": {
                        "holderIdentity": self.identity,
                        "leaseDurationSeconds": self.lease_seconds,
                        "acquireTime": now,
                        "renewTime": now,
                        "leaseTransitions": 0,
                    },
                },
                field_manager="botenv-leader-election",
            )
            return created is not None
        if self._held_by_other(lease):
            return False
        spec = dict(lease.get("spec") or {})
        if spec.get("holderIdentity") != self.identity:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        spec.update(
            holderIdentity=self.identity, leaseDurationSeconds=self.lease_seconds, renewTime=now
        )
        try:
            self.kube.replace({**lease, "spec": spec})
        except ApiException as exc:
            if exc.status == 409:  # another replica wrote first
                return False
            raise
        return True

    def holder(self) -> str:
        lease = self.kube.get(LEASE_API, "Lease", self.namespace, self.name)
        return ((lease or {}).get("spec") or {}).get("holderIdentity") or ""

    def acquire(self, stop: threading.Event) -> bool:
        """Block until this process leads (True) or `stop` is set (False)."""
        waiting_logged = False
        while not stop.is_set():
            try:
                if self.try_acquire_or_renew():
                    self.leading = True
                    log.info(
                        "leader election: %s leads (lease %s/%s)",
                        self.identity,
                        self.namespace,
                        self.name,
                    )
                    return True
            except ApiException as exc:
                log.warning(
                    "leader election: cannot read or write lease %s/%s: %s",
                    self.namespace,
                    self.name,
                    exc.reason,
                )
            if not waiting_logged:
                log.info(
                    "leader election: standing by; lease %s/%s is held by another replica",
                    self.namespace,
                    self.name,
                )
                waiting_logged = True
            stop.wait(self.retry_seconds)
        return False

    def keep(self, stop: threading.Event, on_lost: Callable[[], None]) -> None:
        """Renew until `stop`; call `on_lost` when the Lease could not be renewed within
        the deadline (or another replica holds it)."""
        last_renewed = self.clock()
        while not stop.wait(self.retry_seconds):
            try:
                if self.try_acquire_or_renew():
                    last_renewed = self.clock()
                    continue
                log.error("leader election: lease %s/%s was taken over", self.namespace, self.name)
            except Exception as exc:  # noqa: BLE001 - any failure counts against the deadline
                log.warning("leader election: renewing failed: %s", exc)
                if (self.clock() - last_renewed).total_seconds() < self.renew_deadline:
                    continue
                log.error("leader election: not renewed for %.0fs", self.renew_deadline)
            self.leading = False
            on_lost()
            return

    def release(self) -> None:
        """Give the Lease up on a clean stop so a standby takes over at once."""
        if not self.leading:
            return
        self.leading = False
        try:
            lease = self.kube.get(LEASE_API, "Lease", self.namespace, self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                spec = {**lease["spec"], "holderIdentity": None, "leaseDurationSeconds": 1}
                self.kube.replace({**lease, "spec": spec})
        except ApiException as exc:
            log.warning("leader election: could not release the lease: %s", exc.reason)
