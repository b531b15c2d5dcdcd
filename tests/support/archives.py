"""Model archives made to order: shaped as Rasa 3 writes them (components/ first, then
metadata.json), or a real model with another Rasa version in its metadata."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path


def archive(members: dict[str, bytes]) -> bytes:
    """A gzip-compressed tar holding `members`, in this order."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


def metadata_json(version: str = "3.6.21", key: str = "rasa_open_source_version") -> bytes:
    return json.dumps(
        {"model_id": "abc123", "trained_at": "2026-01-02T03:04:05", key: version, "domain": {}}
    ).encode()


def rasa_like(version: str, payload: bytes = b"weights") -> bytes:
    """A small archive with a Rasa 3 model's layout, trained (it says) by `version`."""
    return archive(
        {"components/train_Policy0/weights.bin": payload, "metadata.json": metadata_json(version)}
    )


def with_rasa_version(model: Path, version: str, out: Path) -> Path:
    """A copy of the real model archive `model` whose metadata.json says `version`: the
    same components, in the same order, as if another Rasa had trained them."""
    with tarfile.open(model, "r:gz") as source, tarfile.open(out, "w:gz") as target:
        for member in source:
            data = source.extractfile(member) if member.isfile() else None
            if member.name.lstrip("./") == "metadata.json" and data is not None:
                document = json.loads(data.read())
                document["rasa_open_source_version"] = version
                body = json.dumps(document).encode()
                member.size = len(body)
                target.addfile(member, io.BytesIO(body))
            else:
                target.addfile(member, data)
    return out
