"""A Kube that records the writes a reconcile asks for, and a State on plain-dict indexes."""

from __future__ import annotations

import copy
import itertools

from kubernetes.client.exceptions import ApiException

from botenv.controller.state import State
from botenv.settings import Settings

KINDS = (
    "ConfigMap",
    "Service",
    "Secret",
    "Deployment",
    "Job",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
)
# What the fake API server serves: a current one (a 1.20 server serves autoscaling/v2beta2
# and policy/v1beta1 only).
SERVED = ("autoscaling/v2", "autoscaling/v1", "policy/v1")


class FakeKube:
    """Answers like the API server; every write is recorded in `writes` as
    (verb, kind, namespace, name, body)."""

    def __init__(
        self, secrets: dict[str, dict[str, str]] | None = None, served: tuple[str, ...] = SERVED
    ) -> None:
        self.secrets = secrets or {}  # name -> base64 data, in the environment's namespace
        self.served = served
        self.fail: dict[tuple[str, str], int] = {}  # (verb, kind) -> HTTP status to fail with
        self.writes: list[tuple[str, str, str, str, dict]] = []
        self._rv = itertools.count(100)

    def _check(self, verb: str, kind: str) -> None:
        if (verb, kind) in self.fail:
            raise ApiException(status=self.fail[(verb, kind)], reason="Injected")

    def _stored(self, obj: dict) -> dict:
        out = copy.deepcopy(obj)
        out["metadata"]["resourceVersion"] = str(next(self._rv))
        return out

    def get_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        self._check("get", "Secret")
        return self.secrets.get(name)

    def served_version(self, api_versions: tuple[str, ...]) -> str:
        return next((v for v in api_versions if v in self.served), "")

    def apply(self, obj: dict, *, dry_run: bool = False, field_manager: str = "botenv") -> dict:
        self._check("apply", obj["kind"])
        if not dry_run:
            meta = obj["metadata"]
            verb = "apply" if field_manager == "botenv" else f"apply as {field_manager}"
            self.writes.append((verb, obj["kind"], meta["namespace"], meta["name"], obj))
        return self._stored(obj)

    def create(self, obj: dict, field_manager: str) -> dict | None:
        self._check("create", obj["kind"])
        meta = obj["metadata"]
        self.writes.append(("create", obj["kind"], meta["namespace"], meta["name"], obj))
        return self._stored(obj)

    def delete(
        self, api_version: str, kind: str, namespace: str, name: str, uid: str | None = None
    ) -> None:
        self._check("delete", kind)
        self.writes.append(("delete", kind, namespace, name, {}))

    def patch_status(self, kind: str, namespace: str, name: str, status: dict) -> dict:
        self._check("status", kind)
        self.writes.append(("status", kind, namespace, name, status))
        return {
            "kind": kind,
            "metadata": {
                "name": name,
                "namespace": namespace,
                "resourceVersion": str(next(self._rv)),
            },
            "status": status,
        }

    def event(self, involved: dict, type_: str, reason: str, message: str, timestamp: str) -> None:
        meta = involved["metadata"]
        self.writes.append(
            (
                "event",
                involved["kind"],
                meta["namespace"],
                meta["name"],
                {"type": type_, "reason": reason, "message": message},
            )
        )

    # what a test asserts on
    def written(self, verb: str, kind: str = "") -> list[dict]:
        return [body for v, k, _, _, body in self.writes if v == verb and (not kind or k == kind)]

    def events(self) -> list[tuple[str, str]]:
        return [(e["type"], e["reason"]) for e in self.written("event")]


def index(*objects: dict) -> dict:
    """A kopf index as plain dicts: (namespace, name) -> [object]."""
    return {(o["metadata"]["namespace"], o["metadata"]["name"]): [o] for o in objects}


def state(
    kube: FakeKube,
    *,
    environments: tuple[dict, ...] = (),
    tags: tuple[dict, ...] = (),
    children: tuple[dict, ...] = (),
) -> State:
    settings = Settings(verify_models=False, check_dependencies=False)
    return State(
        kube=kube,
        settings=settings,  # type: ignore[arg-type]
        environments=index(*environments),
        tags=index(*tags),
        children={kind: index(*(c for c in children if c["kind"] == kind)) for kind in KINDS},
    )
