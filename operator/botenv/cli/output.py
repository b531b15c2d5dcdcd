"""Pure formatting for the people's CLI (`botenv status/history`): summaries of
BotEnvironments, ModelTags and ModelTrainings, times and digests as people read them, and
text tables. They take the objects as the API server returns them and do no I/O."""

from __future__ import annotations

import copy
import datetime
import json

import yaml

from botenv import API_VERSION, GROUP
from botenv.cli.decisions import condition


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


def duration(seconds: float) -> str:
    """A span in its two largest units: 45s, 2m13s, 1h2m, 1d1h."""
    left = max(0, int(seconds))
    for unit, size, smaller, small in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if left >= size:
            return f"{left // size}{unit}{left % size // small}{smaller}"
    return f"{left // 60}m{left % 60}s" if left >= 60 else f"{left}s"


def between(start: str | None, end: str | None) -> int | None:
    """Whole seconds from `start` to `end` (timestamps), None when either is missing."""
    first, last = _parse_time(start or ""), _parse_time(end or "")
    if first is None or last is None:
        return None
    return max(0, int((last - first).total_seconds()))


def promotion(
    seconds: int | None, *, current: bool, environments: list[str], refused: list[str]
) -> str:
    """How long a move took until every environment on the tag served it; for the move in
    force without that time: "refused" (an environment will not load it), "rolling" (its
    environments do not all serve it yet) or "-" (no environment uses the tag)."""
    if seconds is not None:
        return duration(seconds)
    if not current or not environments:
        return "-"
    return "refused" if refused else "rolling"


def when(timestamp: str | None, now: datetime.datetime) -> str:
    if not timestamp:
        return "-"
    ago = age(timestamp, now)
    return f"{timestamp} ({ago} ago)" if ago else timestamp


def table(headers: list[str], rows: list[list[str]], *, no_headers: bool = False) -> str:
    """Left-aligned columns separated by two spaces, like kubectl get (`no_headers`: the
    rows alone, like its --no-headers)."""
    if no_headers and not rows:
        return ""
    cells = [headers, *rows]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        for row in (rows if no_headers else cells)
    ]
    return "\n".join(lines)


# --- status ------------------------------------------------------------------------------


def environment_summary(body: dict) -> dict:
    """What `botenv status` shows of a BotEnvironment (also its `-o json` row)."""
    meta, spec = body["metadata"], body.get("spec") or {}
    status = body.get("status") or {}
    model = status.get("model") or {}
    ready, progressing, degraded = (
        condition(body, t) for t in ("Ready", "Progressing", "Degraded")
    )
    stale = status.get("observedGeneration", 0) < meta.get("generation", 0)
    if not ready:
        state, reason, message = "Pending", "NotObserved", "the operator has not reported yet"
    elif degraded.get("status") == "True":
        # Before Ready: a rolled-back environment serves (Ready) but not its tag's model.
        state, reason, message = "Degraded", degraded.get("reason", ""), degraded.get("message", "")
    elif ready.get("status") == "True":
        state, reason, message = "Ready", ready.get("reason", ""), ready.get("message", "")
    elif progressing.get("status") == "True":
        state, reason, message = (
            "Progressing",
            progressing.get("reason", ""),
            progressing.get("message", ""),
        )
    else:
        state, reason, message = "NotReady", ready.get("reason", ""), ready.get("message", "")
    # Under spec.autoscaling the HPA decides: the pods its Deployment runs, not spec.replicas.
    replicas = status.get("replicas", 0) if spec.get("autoscaling") else spec.get("replicas", 1)
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
        # What the spec will lose without failing (the Warning condition), "" for nothing.
        "warning": ": ".join(
            filter(None, (condition(body, "Warning").get(k, "") for k in ("reason", "message")))
        )
        if condition(body, "Warning").get("status") == "True"
        else "",
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
        # When every environment on the tag first served the resolution: the move's time.
        "servedAt": status.get("servedAt", ""),
        "promotionSeconds": between(status.get("resolvedAt"), status.get("servedAt")),
        "ready": ready.get("status", "Unknown"),
        "reason": ready.get("reason", ""),
        "message": ready.get("message", ""),
        "environments": list(status.get("environments") or []),
        "rasaVersion": status.get("rasaVersion", ""),
        "refusedBy": [r.get("environment", "") for r in status.get("refusedBy") or []],
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


def _tag_users(row: dict) -> str:
    # An environment whose Rasa cannot load the tag's model stays on its own: marked.
    refused = set(row.get("refusedBy") or ())
    return ", ".join(f"{e} (refused)" if e in refused else e for e in row["environments"]) or "-"


def _tag_promoted(row: dict) -> str:
    return promotion(
        row["promotionSeconds"],
        current=bool(row["model"]),
        environments=row["environments"],
        refused=row["refusedBy"],
    )


def _tag_ready(row: dict) -> str:
    if row["ready"] == "True" or not row["reason"]:
        return row["ready"]
    return f"{row['ready']} ({row['reason']})"


def training_summary(body: dict) -> dict:
    status = body.get("status") or {}
    return {
        "namespace": body["metadata"].get("namespace", ""),
        "name": body["metadata"]["name"],
        "phase": status.get("phase") or "Pending",
        "model": status.get("modelName") or "",
        "tag": (body.get("spec") or {}).get("tag") or "",
        "moved": bool(status.get("tag")),
        "reason": status.get("reason") or "",
        "startedAt": status.get("startedAt") or "",
    }


def trainings_table(
    trainings: list[dict],
    *,
    namespace: str | None,
    now: datetime.datetime,
    no_headers: bool = False,
) -> str:
    first = ["NAMESPACE"] if namespace is None else []
    return table(
        [*first, "TRAINING", "PHASE", "MODEL", "TAG", "STARTED"],
        [
            [
                *([r["namespace"]] if namespace is None else []),
                r["name"],
                r["phase"] + (f" ({r['reason']})" if r["reason"] else ""),
                r["model"] or "-",
                (r["tag"] + (" (moved)" if r["moved"] else "")) or "-",
                when(r["startedAt"], now),
            ]
            for r in trainings
        ],
        no_headers=no_headers,
    )


def status_text(
    environments: list[dict],
    tags: list[dict],
    *,
    namespace: str | None,
    now: datetime.datetime,
    trainings: list[dict] | None = None,
    wide: bool = False,
    no_headers: bool = False,
) -> str:
    """The `botenv status` view of summaries (environment_summary, tag_summary).
    `namespace` None means all namespaces: a NAMESPACE column is added. `wide` adds
    columns (full digests, up-to-date replicas, the tag's spec.model); `no_headers` prints
    the tables' rows alone, without headers, empty-namespace lines or the Not ready list."""
    where = "in any namespace" if namespace is None else f"in namespace '{namespace}'"
    first: list[str] = ["NAMESPACE"] if namespace is None else []

    def ns(row: dict) -> list[str]:
        return [row["namespace"]] if namespace is None else []

    def digest(value: str) -> str:
        return (value or "-") if wide else short_digest(value)

    sections: list[str] = []
    if environments:
        sections.append(
            table(
                [
                    *first,
                    "ENVIRONMENT",
                    "TAG",
                    "MODEL",
                    "STATUS",
                    "READY",
                    *(["UP-TO-DATE", "DIGEST"] if wide else []),
                ],
                [
                    [
                        *ns(r),
                        r["name"],
                        r["tag"],
                        r["model"] or "-",
                        _state(r),
                        f"{r['readyReplicas']}/{r['replicas']}",
                        *([str(r["updatedReplicas"]), digest(r["digest"])] if wide else []),
                    ]
                    for r in environments
                ],
                no_headers=no_headers,
            )
        )
    elif not no_headers:
        sections.append(f"No BotEnvironments {where}.")
    if tags:
        sections.append(
            table(
                [
                    *first,
                    "TAG",
                    "MODEL",
                    "DIGEST",
                    "RESOLVED",
                    "PROMOTED",
                    "READY",
                    "ENVIRONMENTS",
                    *(["SPEC MODEL", "RASA"] if wide else []),
                ],
                [
                    [
                        *ns(r),
                        r["name"],
                        _tag_model(r),
                        digest(r["digest"]),
                        when(r["resolvedAt"], now),
                        _tag_promoted(r),
                        _tag_ready(r),
                        _tag_users(r),
                        *([r["specModel"] or "-", r["rasaVersion"] or "-"] if wide else []),
                    ]
                    for r in tags
                ],
                no_headers=no_headers,
            )
        )
    elif not no_headers:
        sections.append(f"No ModelTags {where}.")
    if trainings:
        sections.append(
            trainings_table(trainings, namespace=namespace, now=now, no_headers=no_headers)
        )
    problems = problem_lines(environments, tags, all_namespaces=namespace is None)
    if problems and not no_headers:
        sections.append("\n".join(["Not ready, or warned:", *problems]))
    return "\n\n".join(sections)


def problem_lines(environments: list[dict], tags: list[dict], *, all_namespaces: bool) -> list[str]:
    """One line per environment that is not Ready and per tag that is not Ready, with the
    message of the condition that says why."""

    def name(kind: str, row: dict) -> str:
        return (
            f"{kind} {row['namespace']}/{row['name']}"
            if all_namespaces
            else f"{kind} {row['name']}"
        )

    lines = [
        f"  {name('environment', r)}: {r['state']} {r['reason']}: {r['message']}"
        for r in environments
        if r["state"] != "Ready" and r["message"]
    ]
    lines += [
        f"  {name('environment', r)}: Warning {r['warning']}"
        for r in environments
        if r.get("warning")
    ]
    lines += [
        f"  {name('tag', r)}: {r['reason']}: {r['message']}"
        for r in tags
        if r["ready"] != "True" and r["message"]
    ]
    return lines


# --- history ------------------------------------------------------------------------------


def history_rows(body: dict) -> list[dict]:
    """The tag's current resolution (marked current) followed by status.history, newest
    first."""
    status = body.get("status") or {}
    rows = []
    if status.get("model"):
        rows.append(
            {
                "model": status["model"],
                "digest": status.get("digest", ""),
                "resolvedAt": status.get("resolvedAt", ""),
                "servedAt": status.get("servedAt", ""),
                "actionServerImage": status.get("actionServerImage", ""),
                "current": True,
            }
        )
    for entry in status.get("history") or []:
        rows.append(
            {
                "model": entry.get("model", ""),
                "digest": entry.get("digest", ""),
                "resolvedAt": entry.get("resolvedAt", ""),
                "servedAt": entry.get("servedAt", ""),
                "actionServerImage": entry.get("actionServerImage", ""),
                "current": False,
            }
        )
    return rows


def history_text(
    body: dict, now: datetime.datetime, *, wide: bool = False, no_headers: bool = False
) -> str:
    """`wide` adds the full digest and the action server image; `no_headers` prints the
    rows alone (the current model marked *, as in the table). PROMOTED is each move's
    promotion time (`promotion`)."""
    meta, spec = body["metadata"], body.get("spec") or {}
    status = body.get("status") or {}
    rows = history_rows(body)
    where = f"modeltag '{meta['name']}' in namespace '{meta.get('namespace', '')}'"
    if not rows:
        if no_headers:
            return ""
        return f"{where} has not resolved a model yet (spec.model {spec.get('model', '-')})."
    rendered = table(
        ["", "MODEL", "DIGEST", "RESOLVED AT", "PROMOTED", *(["ACTION SERVER"] if wide else [])],
        [
            [
                "*" if r["current"] else "",
                r["model"],
                (r["digest"] or "-") if wide else short_digest(r["digest"]),
                when(r["resolvedAt"], now) if not no_headers else r["resolvedAt"] or "-",
                promotion(
                    between(r["resolvedAt"], r["servedAt"]),
                    current=r["current"],
                    environments=list(status.get("environments") or []),
                    refused=[x.get("environment", "") for x in status.get("refusedBy") or []],
                ),
                *([r["actionServerImage"] or "-"] if wide else []),
            ]
            for r in rows
        ],
        no_headers=no_headers,
    )
    if no_headers:
        return rendered
    out = [rendered]
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
    why = (
        f" ({ready.get('reason')}: {ready.get('message')})"
        if ready.get("status") == "False"
        else ""
    )
    return f"spec.model {spec_model} is not resolved{why}."


# --- kubectl's -o yaml|json|name ----------------------------------------------------------


def _as_object(kind: str, body: dict) -> dict:
    """An object as `kubectl get -o yaml` shows it: kind and apiVersion set (a LIST's items
    lack them), managedFields left out."""
    obj = {"apiVersion": API_VERSION, "kind": kind, **copy.deepcopy(body)}
    (obj.get("metadata") or {}).pop("managedFields", None)
    return obj


def documents(objects: list[tuple[str, dict]]) -> dict:
    """What -o yaml/json prints for (kind, object) pairs: the object for one, else a List,
    as kubectl does."""
    items = [_as_object(kind, body) for kind, body in objects]
    if len(items) == 1:
        return items[0]
    return {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}}


def render_document(document: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(document, indent=4)
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False).rstrip("\n")


def names(objects: list[tuple[str, dict]]) -> str:
    """-o name: kind.group/name per line, as kubectl prints them."""
    return "\n".join(f"{kind.lower()}.{GROUP}/{body['metadata']['name']}" for kind, body in objects)
