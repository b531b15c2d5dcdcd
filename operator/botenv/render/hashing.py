"""Content hashes that go into pod-template annotations to roll pods on change."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

# On a pod template: the salted hash of the Secret keys its pods read (a rotation rolls them).
SECRETS_HASH_ANNOTATION = "botenv.dev/secrets-hash"


def stable_hash(data: object, length: int = 16) -> str:
    encoded = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:length]


def secrets_hash(salt: str, values: Iterable[tuple[str, str, bytes]]) -> str:
    """Hash of (secret, key, raw value) triples; salted with the owner's UID so equal
    secrets in two environments give unrelated hashes. Values never leave this function."""
    digest = hashlib.sha256(salt.encode())
    for name, key, value in sorted(values):
        for part in (name.encode(), key.encode(), value):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()[:16]
