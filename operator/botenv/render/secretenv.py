"""Which Secret keys become which environment variables (and files) in a Rasa pod.

This is the single list both the Deployment renderer and the secret reader use, so what is
hashed, what is checked for existence and what is injected never drift apart. Values are
only ever referenced (`secretKeyRef`, Secret volumes), never copied.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator
from typing import Any

from botenv.api.environment import CredentialRef, EnvironmentSpec
from botenv.api.errors import SpecError
from botenv.api.podsettings import PodSettings
from botenv.api.tag import StorageSpec
from botenv.render import names

# Variables botenv defines for endpoints.yml's ${VAR} references and for rasa's flags.
AUTH_TOKEN = "BOTENV_AUTH_TOKEN"
JWT_SECRET = "BOTENV_JWT_SECRET"
TRACKER_USERNAME = "BOTENV_TRACKER_STORE_USERNAME"
TRACKER_PASSWORD = "BOTENV_TRACKER_STORE_PASSWORD"
LOCK_PASSWORD = "BOTENV_LOCK_STORE_PASSWORD"
BROKER_USERNAME = "BOTENV_EVENT_BROKER_USERNAME"
BROKER_PASSWORD = "BOTENV_EVENT_BROKER_PASSWORD"
PULL_TOKEN = "BOTENV_PULL_TOKEN"
PULL_TOKEN_KEY = "token"
# Rasa Pro reads its license from this variable.
RASA_PRO_LICENSE = "RASA_PRO_LICENSE"

CREDENTIALS_FILE = "/etc/botenv/credentials/credentials.yml"
GCS_KEY_FILE = "credentials.json"
GCS_KEY_PATH = f"/etc/botenv/gcs/{GCS_KEY_FILE}"


@dataclasses.dataclass(frozen=True)
class SecretUse:
    """One Secret key a pod needs. `group` ties optional keys: at least one of a group must
    exist (a store may use a password without a username, or the other way round)."""

    var: str  # environment variable, or "" when mounted as a file instead
    secret: str
    key: str
    field: str  # the spec field that named it, for error messages
    optional: bool = False
    group: str = ""
    mount: str = ""  # the file path it is mounted at, for keys Rasa reads as files


def _credential_uses(
    ref: CredentialRef | None, username_var: str, password_var: str, *, both_required: bool = False
) -> list[SecretUse]:
    """A username/password Secret. Unless both are required, either key may be absent
    (a Redis password without a user, a database user with no password)."""
    if ref is None:
        return []
    group = "" if both_required or not username_var else ref.field
    uses = [
        SecretUse(
            password_var,
            ref.name,
            ref.password_key,
            f"{ref.field}.passwordKey",
            optional=bool(group),
            group=group,
        )
    ]
    if username_var:
        uses.insert(
            0,
            SecretUse(
                username_var,
                ref.name,
                ref.username_key,
                f"{ref.field}.usernameKey",
                optional=bool(group),
                group=group,
            ),
        )
    return uses


def storage_uses(storage: StorageSpec, field: str) -> list[SecretUse]:
    """Credentials Rasa itself reads for `--remote-storage` (names Rasa's persistors read)."""
    if not storage.secret_name:
        return []
    name = storage.secret_name
    if storage.provider == "s3":
        return [
            SecretUse(v, name, v, field) for v in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        ]
    if storage.provider == "azure":
        return [SecretUse(v, name, v, field) for v in ("AZURE_ACCOUNT_NAME", "AZURE_ACCOUNT_KEY")]
    if storage.provider == "gcs":
        return [SecretUse("", name, GCS_KEY_FILE, field, mount=GCS_KEY_PATH)]
    return []


def secret_uses(spec: EnvironmentSpec, storage: StorageSpec | None) -> list[SecretUse]:
    uses: list[SecretUse] = []
    if spec.auth_token:
        uses.append(
            SecretUse(AUTH_TOKEN, spec.auth_token.name, spec.auth_token.key, spec.auth_token.field)
        )
    if spec.jwt_secret:
        uses.append(
            SecretUse(JWT_SECRET, spec.jwt_secret.name, spec.jwt_secret.key, spec.jwt_secret.field)
        )
    if spec.license:
        uses.append(
            SecretUse(RASA_PRO_LICENSE, spec.license.name, spec.license.key, spec.license.field)
        )
    tracker = spec.tracker_store
    if tracker.type == "dynamo":
        # boto3 reads the standard AWS variables; the secret's two keys hold them.
        uses += _credential_uses(tracker.credentials, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    else:
        uses += _credential_uses(tracker.credentials, TRACKER_USERNAME, TRACKER_PASSWORD)
    uses += _credential_uses(spec.lock_store.credentials, "", LOCK_PASSWORD)
    if spec.event_broker:
        # Rasa's pika broker takes username and password as required arguments.
        uses += _credential_uses(
            spec.event_broker.credentials, BROKER_USERNAME, BROKER_PASSWORD, both_required=True
        )
    if spec.credentials:
        uses.append(
            SecretUse(
                "",
                spec.credentials.name,
                spec.credentials.key,
                spec.credentials.field,
                mount=CREDENTIALS_FILE,
            )
        )
    if spec.delivery == "remoteStorage" and storage is not None:
        uses += storage_uses(storage, f"ModelTag {spec.model_tag} spec.storage.secretRef")
    if spec.delivery == "pull":
        # The environment's own model-server credential, a Secret botenv provisions.
        uses.append(
            SecretUse(
                PULL_TOKEN,
                names.pull_token_secret_name(spec.name),
                PULL_TOKEN_KEY,
                "the pull token botenv provisions",
            )
        )
    seen: dict[str, SecretUse] = {}
    for use in uses:
        other = seen.setdefault(use.var, use) if use.var else use
        if other is not use and (other.secret, other.key) != (use.secret, use.key):
            raise SpecError(
                [
                    f"{use.field}: sets {use.var}, which {other.field} sets from "
                    f"another Secret; use one Secret for both"
                ]
            )
    return uses


@dataclasses.dataclass(frozen=True)
class SecretRef:
    """A Secret the user's own settings reference (env, envFrom): hashed into the pod
    template so that rotating it rolls the pods that read it. botenv neither injects nor
    requires it (the reference may be optional)."""

    secret: str
    key: str  # "" for the whole Secret (envFrom)
    field: str


def _env_refs(
    env: tuple[dict[str, Any], ...], env_from: tuple[dict[str, Any], ...], path: str
) -> Iterator[SecretRef]:
    for i, item in enumerate(env):
        ref = (item.get("valueFrom") or {}).get("secretKeyRef") or {}
        if isinstance(ref, dict) and ref.get("name"):
            yield SecretRef(str(ref["name"]), str(ref.get("key") or ""), f"{path}.env[{i}]")
    for i, item in enumerate(env_from):
        ref = item.get("secretRef") or {}
        if isinstance(ref, dict) and ref.get("name"):
            yield SecretRef(str(ref["name"]), "", f"{path}.envFrom[{i}]")


def _secret_source_refs(source: dict[str, Any], name_key: str, path: str) -> Iterator[SecretRef]:
    """A secret volume (name_key secretName) or a projected volume's secret source (name)."""
    name = source.get(name_key)
    if not name:
        return
    items = [i for i in source.get("items") or [] if isinstance(i, dict) and i.get("key")]
    for key in [str(i["key"]) for i in items] or [""]:
        yield SecretRef(str(name), key, path)


def _pod_refs(pod: PodSettings, path: str) -> Iterator[SecretRef]:
    """Secret volumes (and projected volumes' secret sources), and the env and envFrom of
    the user's init containers and sidecars."""
    for i, volume in enumerate(pod.volumes):
        yield from _secret_source_refs(
            volume.get("secret") or {}, "secretName", f"{path}.volumes[{i}]"
        )
        for source in (volume.get("projected") or {}).get("sources") or []:
            if isinstance(source, dict):
                yield from _secret_source_refs(
                    source.get("secret") or {}, "name", f"{path}.volumes[{i}]"
                )
    for kind, containers in (("initContainers", pod.init_containers), ("sidecars", pod.sidecars)):
        for i, container in enumerate(containers):
            yield from _env_refs(
                tuple(container.get("env") or ()),
                tuple(container.get("envFrom") or ()),
                f"{path}.{kind}[{i}]",
            )


def user_secret_refs(spec: EnvironmentSpec) -> list[SecretRef]:
    """The Secrets the Rasa pods read through the user's settings: spec.env, spec.envFrom,
    spec.volumes, and the init containers' and sidecars' env and envFrom."""
    return [*_env_refs(spec.env, spec.env_from, "spec"), *_pod_refs(spec.pod, "spec")]


def action_server_secret_refs(spec: EnvironmentSpec) -> list[SecretRef]:
    """The Secrets the action server's pods read through the same settings of its own."""
    server = spec.action_server
    if server is None:
        return []
    path = "spec.actionServer"
    return [*_env_refs(server.env, server.env_from, path), *_pod_refs(server.pod, path)]


def hashed_values(
    refs: list[SecretRef], data: dict[str, dict[str, str] | None]
) -> list[tuple[str, str, bytes]]:
    """(secret, key, raw value) of what `refs` read from `data` (Secret name -> its base64
    data, None when it does not exist): a key or Secret that is absent is left out, so its
    appearance changes the hash too."""
    out: set[tuple[str, str, bytes]] = set()
    for ref in refs:
        values = data.get(ref.secret) or {}
        keys = [ref.key] if ref.key else sorted(values)
        out.update((ref.secret, k, base64.b64decode(values[k])) for k in keys if k in values)
    return sorted(out)


def ref_field(field: str) -> str:
    """spec.x.secretRef.passwordKey -> spec.x.secretRef: where the Secret itself was named."""
    head, _, last = field.rpartition(".")
    return head if head and last in ("key", "usernameKey", "passwordKey") else field


def missing_keys(uses: list[SecretUse], present: dict[str, frozenset[str] | None]) -> list[str]:
    """Problems a user can act on: a missing Secret, or a missing key in one.
    `present` maps a Secret name to its keys, or None when the Secret does not exist."""
    problems: list[str] = []
    groups: dict[str, list[SecretUse]] = {}
    for use in uses:
        keys = present.get(use.secret)
        if keys is None:
            problem = f"Secret {use.secret!r} not found (named by {ref_field(use.field)})"
            if problem not in problems:
                problems.append(problem)
        elif use.group:
            groups.setdefault(use.group, []).append(use)
        elif use.key not in keys:
            problems.append(f"Secret {use.secret!r} has no key {use.key!r} (named by {use.field})")
    for group in groups.values():
        keys = present.get(group[0].secret) or frozenset()
        if not any(u.key in keys for u in group):
            wanted = " or ".join(repr(u.key) for u in group)
            problems.append(
                f"Secret {group[0].secret!r} has neither key {wanted} (named by {group[0].group})"
            )
    return problems


def usable(uses: list[SecretUse], present: dict[str, frozenset[str] | None]) -> list[SecretUse]:
    """The uses whose keys exist (optional keys that are absent are left out)."""
    return [u for u in uses if u.key in (present.get(u.secret) or frozenset())]
