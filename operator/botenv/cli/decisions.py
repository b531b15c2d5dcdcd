"""The choices of the people's CLI (`botenv promote/rollback`, `--wait`): the model a
rollback goes back to, the model a promotion copies, whether a tag has moved, and who else
declares a tag. They take the objects as the API server returns them and do no I/O."""

from __future__ import annotations

import dataclasses

from botenv.cli.shared import CLI_FIELD_MANAGER

# Ready=False reasons of a ModelTag that the operator retries by itself: a wait goes on.
TRANSIENT_TAG_REASONS = frozenset({"StorageUnavailable", "SecretUnreadable"})

# Labels and annotations by which Argo CD and Flux mark the objects they manage.
_GITOPS_MARKS = (
    ("label", "kustomize.toolkit.fluxcd.io/name", "Flux Kustomization"),
    ("label", "helm.toolkit.fluxcd.io/name", "Flux HelmRelease"),
    ("label", "argocd.argoproj.io/instance", "Argo CD Application"),
    ("annotation", "argocd.argoproj.io/tracking-id", "Argo CD Application"),
)


class Refused(Exception):
    """The operation cannot be done as asked; the message says why."""


@dataclasses.dataclass(frozen=True)
class Move:
    """A change of a tag's spec.model: what promote and rollback write."""

    namespace: str
    tag: str
    old: str
    new: str
    note: str = ""
    image_change: str = ""  # the action server image that moves with the model, if any

    @property
    def changes(self) -> bool:
        return self.old != self.new or bool(self.image_change)

    def describe(self) -> str:
        where = f"modeltag '{self.tag}' in namespace '{self.namespace}'"
        if not self.changes:
            return f"{where} already points to {self.new}: nothing to change"
        return f"{where}: spec.model {self.old or '(none)'} -> {self.new}"


def condition(obj: dict | None, type_: str) -> dict:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return {}


@dataclasses.dataclass(frozen=True)
class Target:
    """What a rollback moves a tag to: the model, why that one, and the action server image
    that was in force with it ("" for none)."""

    model: str
    why: str
    action_server_image: str = ""


def rollback_target(body: dict) -> Target:
    """The model `botenv rollback` moves the tag to.

    Normally the newest entry of status.history whose model differs from the model the tag
    resolves to now (status.model). When spec.model was moved but never resolved (a missing
    model, or a move still under way), the model still in force (status.model) is the one to
    go back to: environments keep serving it, nothing rolls. Raises Refused when there is
    nothing to go back to."""
    meta, spec = body["metadata"], body.get("spec") or {}
    status = body.get("status") or {}
    where = f"modeltag '{meta['name']}' in namespace '{meta.get('namespace', '')}'"
    current = status.get("model") or spec.get("model", "")
    if status.get("model") and spec.get("model") and spec["model"] != status["model"]:
        return Target(
            status["model"],
            f"spec.model {spec['model']} never resolved; going "
            f"back to {status['model']}, which the tag still "
            "resolves to",
            status.get("actionServerImage", ""),
        )
    for entry in status.get("history") or []:
        if entry.get("model") and entry["model"] != current:
            resolved = f", resolved at {entry['resolvedAt']}" if entry.get("resolvedAt") else ""
            return Target(
                entry["model"],
                f"the previous model in status.history{resolved}",
                entry.get("actionServerImage", ""),
            )
    raise Refused(
        f"{where} has no earlier model in status.history to roll back to "
        f"(it resolves to {current or 'nothing yet'})"
    )


def image_change(current: str, new: str | None) -> str:
    """The action server part of a move, or "" when the image stays."""
    if new is None or new == current:
        return ""
    return (
        f"action server image: {current or '(each environment its own)'} -> "
        f"{new or '(each environment its own)'}"
    )


def promote_source(body: dict) -> str:
    """The model `botenv promote --from TAG` copies from the tag `body`: what it resolves to
    (status.model, else spec.model). Raises Refused unless the tag is Ready."""
    meta, spec = body["metadata"], body.get("spec") or {}
    status = body.get("status") or {}
    where = f"modeltag '{meta['name']}' in namespace '{meta.get('namespace', '')}'"
    ready = condition(body, "Ready")
    if ready.get("status") != "True":
        why = (
            f"{ready.get('reason')}: {ready.get('message')}"
            if ready
            else "the operator has not resolved it yet"
        )
        raise Refused(f"{where} is not Ready ({why}); refusing to promote from it")
    model = status.get("model") or spec.get("model", "")
    if not model:
        raise Refused(f"{where} has no model")
    return model


def source_action_image(body: dict) -> str:
    """The action server image in force with the model a --from tag resolves to."""
    status = body.get("status") or {}
    if status.get("model"):
        return status.get("actionServerImage", "")
    return (body.get("spec") or {}).get("actionServerImage", "")


def gitops_owner(body: dict) -> str:
    """Who declares this tag besides botenv-cli, when that is a GitOps tool or a server-side
    applier of spec.model (whose next sync or apply sets spec.model back), else ''."""
    meta = body.get("metadata") or {}
    marks = {"label": meta.get("labels") or {}, "annotation": meta.get("annotations") or {}}
    for where, key, tool in _GITOPS_MARKS:
        if key in marks[where]:
            return f"{tool} ({key}={marks[where][key]})"
    for entry in meta.get("managedFields") or []:
        fields = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        if (
            entry.get("operation") == "Apply"
            and "f:model" in fields
            and entry.get("manager") != CLI_FIELD_MANAGER
        ):
            return f"field manager '{entry.get('manager')}' (server-side apply of spec.model)"
    return ""


@dataclasses.dataclass(frozen=True)
class WaitState:
    done: bool
    failed: str = ""
    waiting: str = ""


def wait_state(body: dict, model: str, generation: int) -> WaitState:
    """Whether a tag moved to `model` (written at metadata.generation `generation`) has
    resolved it, failed for a reason the operator does not retry, or is still under way."""
    status = body.get("status") or {}
    ready = condition(body, "Ready")
    observed = status.get("observedGeneration", 0) >= generation
    if status.get("model") == model and observed:
        return WaitState(done=True)
    if not observed:
        return WaitState(
            False,
            waiting=f"the operator has not seen generation {generation} "
            f"yet (observed {status.get('observedGeneration', 0)}):"
            " is the botenv operator running?",
        )
    if ready.get("status") == "False":
        why = f"Ready=False {ready.get('reason')}: {ready.get('message')}"
        if ready.get("reason") in TRANSIENT_TAG_REASONS:
            return WaitState(False, waiting=why)
        return WaitState(False, failed=why)
    return WaitState(False, waiting=f"the tag resolves to {status.get('model') or 'nothing'}")


def refusals(tag: dict) -> dict[str, str]:
    """Environment -> why its Rasa cannot load the tag's model (status.refusedBy)."""
    return {
        str(r.get("environment")): str(r.get("message") or "")
        for r in (tag.get("status") or {}).get("refusedBy") or []
    }


def serving(environment: dict) -> bool:
    """Whether an environment is Ready and done rolling: its pods serve its model."""
    return (
        condition(environment, "Ready").get("status") == "True"
        and condition(environment, "Progressing").get("status") != "True"
    )


def environment_wait(environment: dict, model: str) -> str:
    """'' once every replica of the environment serves `model`, else where it is."""
    status = environment.get("status") or {}
    current = (status.get("model") or {}).get("name") or "nothing"
    served = status.get("servedModels")
    others = [m for m in served or [] if m.get("name") != model]
    if current == model and serving(environment) and not others:
        return ""
    ready = condition(environment, "Ready")
    progressing = condition(environment, "Progressing")
    if progressing.get("status") == "True":
        return str(progressing.get("message") or f"rolling ({progressing.get('reason')})")
    if current != model:
        return f"on {current} ({ready.get('reason') or 'no status yet'})"
    return f"{ready.get('reason') or 'no status yet'}: {ready.get('message') or ''}".rstrip(": ")
