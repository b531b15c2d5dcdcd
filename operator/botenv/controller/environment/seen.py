"""What gather saw for one BotEnvironment: the inputs plan decides from."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from botenv.api.environment import EnvironmentSpec
from botenv.render.problem import Problem


@dataclasses.dataclass
class Seen:
    namespace: str
    name: str
    body: dict[str, Any] | None  # None: the environment is gone
    pull_token: dict[str, Any] | None = None  # botenv's pull-token Secret, as the watch shows it
    spec: EnvironmentSpec | None = None  # None: the spec is invalid (`invalid` says why)
    invalid: str = ""
    tag: dict[str, Any] | None = None  # the ModelTag the spec names
    # Every environment (rivals for an event queue), with a broker only.
    environments: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    action_server: dict[str, dict[str, Any] | None] = dataclasses.field(default_factory=dict)
    # Secrets the pods use (name -> base64 data, None when absent); not the pull token.
    secrets: dict[str, dict[str, str] | None] = dataclasses.field(default_factory=dict)
    unreadable: Problem | None = None  # a Secret the API server would not give
    new_token: str = ""  # the token of a pull-token Secret yet to be created
    # The Rasa Deployment and its pods as the watches show them (a failed roll's evidence).
    deployment: dict[str, Any] | None = None
    pods: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    now: datetime.datetime = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC)
    )
    # The environment's Ingress and HTTPRoute as the watches show them (kind -> object).
    routes: dict[str, dict[str, Any] | None] = dataclasses.field(default_factory=dict)
    route_api: bool = False  # the cluster serves HTTPRoute (asked only with spec.httpRoute)
    # HorizontalPodAutoscalers and PodDisruptionBudgets, (kind, name) -> as the watch shows it.
    scaling: dict[tuple[str, str], dict[str, Any] | None] = dataclasses.field(default_factory=dict)
    # kind -> the apiVersion botenv writes it in (what the API server serves), "" for none.
    api_versions: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def deleting(self) -> bool:
        return bool(self.body and self.body["metadata"].get("deletionTimestamp"))

    @property
    def replicas(self) -> int:
        """Rasa's desired replicas: under an HPA, the ones its Deployment has now."""
        if ((self.body or {}).get("spec") or {}).get("autoscaling") and self.deployment:
            return int((self.deployment.get("spec") or {}).get("replicas", 1))
        if self.spec is not None:
            return self.spec.replicas
        raw = ((self.body or {}).get("spec") or {}).get("replicas", 1)
        return raw if isinstance(raw, int) else 1

    def __repr__(self) -> str:  # keeps Secret data out of any log or traceback
        return f"Seen({self.namespace}/{self.name})"
