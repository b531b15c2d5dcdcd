"""Pure helpers of the people's CLI (`botenv status/promote/rollback/history`): summaries of
BotEnvironments and ModelTags, text tables, and the choice of a promote source or rollback
target. They take the objects as the API server returns them and do no I/O."""

from __future__ import annotations

import dataclasses
import datetime

# Ready=False reasons of a ModelTag that the operator retries by itself: a wait goes on.
TRANSIENT_TAG_REASONS = frozenset({"StorageUnavailable", "SecretUnreadable"})

# Labels and annotations by which Argo CD and Flux mark the objects they manage.
_GITOPS_MARKS = (
    ("label", "kustomize.toolkit.fluxcd.io/name", "Flux Kustomization"),
    ("label", "helm.toolkit.fluxcd.io/name", "Flux HelmRelease"),
    ("label", "argocd.argoproj.io/instance", "Argo CD Application"),
    ("annotation", "argocd.argoproj.io/tracking-id", "Argo CD Application"),
)

CLI_FIELD_MANAGER = "botenv-cli"


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


def short_digest(digest: str | None, length: int = 12) -> str:
    return (digest or "")[:length] or "-"


def _parse_time(value: str) -> datetime.datetime | None:
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def age(timestamp: str | None, now: datetime.datetime) -> str:
    """How long ago, as kubectl prints it: 45s, 12m, 5h, 3d."""
    then = _parse_time(timestamp or "")
    if then is None:
        return ""
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def when(timestamp: str | None, now: datetime.datetime) -> str:
    if not timestamp:
        return "-"
    ago = age(timestamp, now)
    return f"{timestamp} ({ago} ago)" if ago else timestamp


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns separated by two spaces, like kubectl get."""
    cells = [headers, *rows]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    return "\n".join(lines)


# --- status ------------------------------------------------------------------------------


def environment_summary(body: dict) -> dict:
    """What `botenv status` shows of a BotEnvironment (also its `-o json` row)."""
    meta, spec = body["metadata"], body.get("spec") or {}
    status = body.get("status") or {}
    model = status.get("model") or {}
    ready, progressing, degraded = (condition(body, t) for t in
                                    ("Ready", "Progressing", "Degraded"))
    stale = status.get("observedGeneration", 0) < meta.get("generation", 0)
    if not ready:
        state, reason, message = "Pending", "NotObserved", "the operator has not reported yet"
    elif ready.get("status") == "True":
        state, reason, message = "Ready", ready.get("reason", ""), ready.get("message", "")
    elif degraded.get("status") == "True":
        state, reason, message = "Degraded", degraded.get("reason", ""), degraded.get(
            "message", "")
    elif progressing.get("status") == "True":
        state, reason, message = ("Progressing", progressing.get("reason", ""),
                                  progressing.get("message", ""))
    else:
        state, reason, message = "NotReady", ready.get("reason", ""), ready.get("message", "")
    replicas = spec.get("replicas", 1)
    return {
        "namespace": meta.get("namespace", ""),
        "name": meta["name"],
        "tag": model.get("tag") or spec.get("modelTag") or meta["name"],
        "model": model.get("name", ""),
        "digest": model.get("digest", ""),
        "state": state,
        "reason": reason,
        "message": message,
        "ready": ready.get("status", "Unknown"),
        "progressing": progressing.get("status", "Unknown"),
        "degraded": degraded.get("status", "Unknown"),
        "replicas": replicas,
        "readyReplicas": status.get("readyReplicas", 0),
        "updatedReplicas": status.get("updatedReplicas", 0),
        "observed": not stale,
    }


def tag_summary(body: dict) -> dict:
    """What `botenv status` shows of a ModelTag (also its `-o json` row)."""
    meta, spec = body["metadata"], body.get("spec") or {}
    status = body.get("status") or {}
    ready = condition(body, "Ready")
    return {
        "namespace": meta.get("namespace", ""),
        "name": meta["name"],
        "model": status.get("model", ""),
        "specModel": spec.get("model", ""),
        "digest": status.get("digest", ""),
        "resolvedAt": status.get("resolvedAt", ""),
        "ready": ready.get("status", "Unknown"),
        "reason": ready.get("reason", ""),
        "message": ready.get("message", ""),
        "environments": list(status.get("environments") or []),
        "observed": status.get("observedGeneration", 0) >= meta.get("generation", 0),
    }


def _state(row: dict) -> str:
    if row["state"] == "Ready" or not row["reason"]:
        return row["state"]
    return f"{row['state']} ({row['reason']})"


def _tag_model(row: dict) -> str:
    model = row["model"] or "-"
    if row["specModel"] and row["specModel"] != row["model"]:
        return f"{model} (moving to {row['specModel']})"
    return model


def _tag_ready(row: dict) -> str:
    if row["ready"] == "True" or not row["reason"]:
        return row["ready"]
    return f"{row['ready']} ({row['reason']})"


def training_summary(body: dict) -> dict:
    status = body.get("status") or {}
    return {"namespace": body["metadata"].get("namespace", ""),
            "name": body["metadata"]["name"], "phase": status.get("phase") or "Pending",
            "model": status.get("modelName") or "", "tag": (body.get("spec") or {}).get("tag")
            or "", "moved": bool(status.get("tag")), "reason": status.get("reason") or "",
            "startedAt": status.get("startedAt") or ""}


def trainings_table(trainings: list[dict], *, namespace: str | None,
                    now: datetime.datetime) -> str:
    first = ["NAMESPACE"] if namespace is None else []
    return table([*first, "TRAINING", "PHASE", "MODEL", "TAG", "STARTED"],
                 [[*([r["namespace"]] if namespace is None else []), r["name"],
                   r["phase"] + (f" ({r['reason']})" if r["reason"] else ""), r["model"] or "-",
                   (r["tag"] + (" (moved)" if r["moved"] else "")) or "-",
                   when(r["startedAt"], now)] for r in trainings])


def status_text(environments: list[dict], tags: list[dict], *, namespace: str | None,
                now: datetime.datetime, trainings: list[dict] | None = None) -> str:
    """The `botenv status` view of summaries (environment_summary, tag_summary).
    `namespace` None means all namespaces: a NAMESPACE column is added."""
    where = "in any namespace" if namespace is None else f"in namespace '{namespace}'"
    first: list[str] = ["NAMESPACE"] if namespace is None else []

    def ns(row: dict) -> list[str]:
        return [row["namespace"]] if namespace is None else []

    out: list[str] = []
    if environments:
        out.append(table(
            [*first, "ENVIRONMENT", "TAG", "MODEL", "STATUS", "READY"],
            [[*ns(r), r["name"], r["tag"], r["model"] or "-", _state(r),
              f"{r['readyReplicas']}/{r['replicas']}"] for r in environments]))
    else:
        out.append(f"No BotEnvironments {where}.")
    out.append("")
    if tags:
        out.append(table(
            [*first, "TAG", "MODEL", "DIGEST", "RESOLVED", "READY", "ENVIRONMENTS"],
            [[*ns(r), r["name"], _tag_model(r), short_digest(r["digest"]),
              when(r["resolvedAt"], now), _tag_ready(r), ", ".join(r["environments"]) or "-"]
             for r in tags]))
    else:
        out.append(f"No ModelTags {where}.")
    if trainings:
        out += ["", trainings_table(trainings, namespace=namespace, now=now)]
    problems = problem_lines(environments, tags, all_namespaces=namespace is None)
    if problems:
        out += ["", "Not ready:", *problems]
    return "\n".join(out)


def problem_lines(environments: list[dict], tags: list[dict], *,
                  all_namespaces: bool) -> list[str]:
    """One line per environment that is not Ready and per tag that is not Ready, with the
    message of the condition that says why."""
    def name(kind: str, row: dict) -> str:
        return f"{kind} {row['namespace']}/{row['name']}" if all_namespaces else \
            f"{kind} {row['name']}"

    lines = [f"  {name('environment', r)}: {r['state']} {r['reason']}: {r['message']}"
             for r in environments if r["state"] != "Ready" and r["message"]]
    lines += [f"  {name('tag', r)}: {r['reason']}: {r['message']}"
              for r in tags if r["ready"] != "True" and r["message"]]
    return lines


# --- history, rollback, promote ------------------------------------------------------------


def history_rows(body: dict) -> list[dict]:
    """The tag's current resolution (marked current) followed by status.history, newest
    first."""
    status = body.get("status") or {}
    rows = []
    if status.get("model"):
        rows.append({"model": status["model"], "digest": status.get("digest", ""),
                     "resolvedAt": status.get("resolvedAt", ""), "current": True})
    for entry in status.get("history") or []:
        rows.append({"model": entry.get("model", ""), "digest": entry.get("digest", ""),
                     "resolvedAt": entry.get("resolvedAt", ""), "current": False})
    return rows


def history_text(body: dict, now: datetime.datetime) -> str:
    meta, spec = body["metadata"], body.get("spec") or {}
    rows = history_rows(body)
    where = f"modeltag '{meta['name']}' in namespace '{meta.get('namespace', '')}'"
    if not rows:
        return f"{where} has not resolved a model yet (spec.model {spec.get('model', '-')})."
    out = [table(["", "MODEL", "DIGEST", "RESOLVED AT"],
                 [["*" if r["current"] else "", r["model"], short_digest(r["digest"]),
                   when(r["resolvedAt"], now)] for r in rows])]
    pending = pending_move(body)
    if pending:
        out += ["", pending]
    if len(rows) == 1:
        out += ["", "No earlier model: there is nothing to roll back to yet."]
    return "\n".join(out)


def pending_move(body: dict) -> str:
    """A sentence when spec.model is not (yet) what the tag resolves to, else ''."""
    spec_model = (body.get("spec") or {}).get("model", "")
    current = (body.get("status") or {}).get("model", "")
    if not spec_model or spec_model == current:
        return ""
    ready = condition(body, "Ready")
    why = (f" ({ready.get('reason')}: {ready.get('message')})"
           if ready.get("status") == "False" else "")
    return f"spec.model {spec_model} is not resolved{why}."


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
        return Target(status["model"], f"spec.model {spec['model']} never resolved; going "
                                       f"back to {status['model']}, which the tag still "
                                       "resolves to", status.get("actionServerImage", ""))
    for entry in status.get("history") or []:
        if entry.get("model") and entry["model"] != current:
            resolved = f", resolved at {entry['resolvedAt']}" if entry.get("resolvedAt") else ""
            return Target(entry["model"], f"the previous model in status.history{resolved}",
                          entry.get("actionServerImage", ""))
    raise Refused(f"{where} has no earlier model in status.history to roll back to "
                  f"(it resolves to {current or 'nothing yet'})")


def image_change(current: str, new: str | None) -> str:
    """The action server part of a move, or "" when the image stays."""
    if new is None or new == current:
        return ""
    return (f"action server image: {current or '(each environment its own)'} -> "
            f"{new or '(each environment its own)'}")


def promote_source(body: dict) -> str:
    """The model `botenv promote --from TAG` copies from the tag `body`: what it resolves to
    (status.model, else spec.model). Raises Refused unless the tag is Ready."""
    meta, spec = body["metadata"], body.get("spec") or {}
    status = body.get("status") or {}
    where = f"modeltag '{meta['name']}' in namespace '{meta.get('namespace', '')}'"
    ready = condition(body, "Ready")
    if ready.get("status") != "True":
        why = (f"{ready.get('reason')}: {ready.get('message')}" if ready
               else "the operator has not resolved it yet")
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
        if (entry.get("operation") == "Apply" and "f:model" in fields
                and entry.get("manager") != CLI_FIELD_MANAGER):
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
        return WaitState(False, waiting=f"the operator has not seen generation {generation} "
                                        f"yet (observed {status.get('observedGeneration', 0)}):"
                                        " is the botenv operator running?")
    if ready.get("status") == "False":
        why = f"Ready=False {ready.get('reason')}: {ready.get('message')}"
        if ready.get("reason") in TRANSIENT_TAG_REASONS:
            return WaitState(False, waiting=why)
        return WaitState(False, failed=why)
    return WaitState(False, waiting=f"the tag resolves to {status.get('model') or 'nothing'}")
