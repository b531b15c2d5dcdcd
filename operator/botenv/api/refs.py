"""References to Secrets and their keys."""

from __future__ import annotations

import dataclasses
import re

from botenv.api.reader import Reader

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


@dataclasses.dataclass(frozen=True)
class SecretKeyRef:
    """One key of one Secret, in the environment's namespace. `field` is where it was named."""

    name: str
    key: str
    field: str


def secret_name(reader: Reader, key: str = "name") -> str:
    name = reader.text(key)
    if not name:
        reader.fail(f"{reader.path}.{key}", "is required: the name of a Secret in this namespace")
    elif not _DNS_SUBDOMAIN.match(name) or len(name) > 253:
        reader.fail(f"{reader.path}.{key}", f"must be a valid Secret name, got {name!r}")
    return name


def secret_key(reader: Reader, key: str, default: str) -> SecretKeyRef:
    """A `{name, <key>}` pair such as `tokenSecretRef: {name, key}`."""
    value = reader.text(key, default) or default
    if not _SECRET_KEY.match(value):
        reader.fail(f"{reader.path}.{key}", f"must be a Secret data key, got {value!r}")
    return SecretKeyRef(secret_name(reader), value, f"{reader.path}.{key}")
