"""The file name a model is served under, which carries its content's identity.

Rasa names a pulled model after the model server's `filename` header and reports that name
as `model_file` in `GET /status`. The model server sends `<name>@<digest>.tar.gz`
(`m1.tar.gz` of digest `d41d8...` becomes `m1@d41d8....tar.gz`), so what a pod reports
says which content it loaded: a model uploaded again under the same name is a different
file name. A digest that is not safe in a file name (an HTTP origin's ETag may hold any
character) is replaced by `sha256-` and the start of its SHA-256."""

from __future__ import annotations

import hashlib
import re

SUFFIX = ".tar.gz"
_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SERVED = re.compile(r"^(?P<name>.*)@(?P<token>[A-Za-z0-9_-]{1,64})\.tar\.gz$")
MAX_FILE_NAME = 255  # bytes, on the file systems Rasa writes its temporary files to


def digest_token(digest: str) -> str:
    """The digest as it appears in a served file name."""
    if _SAFE.match(digest):
        return digest
    return "sha256-" + hashlib.sha256(digest.encode()).hexdigest()[:32]


def base_name(model: str) -> str:
    """A model's file name as Rasa sees it: the last part of a name under folders."""
    return model.rsplit("/", 1)[-1]


def served_file_name(model: str, digest: str) -> str:
    """The `filename` header for `model` of `digest` (Rasa loads only `*.tar.gz` files)."""
    name = base_name(model)
    stem = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
    tail = f"@{digest_token(digest)}{SUFFIX}"
    room = MAX_FILE_NAME - len(tail.encode())
    while len(stem.encode()) > room:  # a very long name: shortened, the digest kept
        stem = stem[:-1]
    return stem + tail


def parse_served(file_name: str) -> tuple[str, str]:
    """(model file name, digest token) of what a pod reports; the token is "" for a name
    without one (a model server before this naming, or a model loaded from remote
    storage, which Rasa names after its key)."""
    name = base_name(file_name)
    match = _SERVED.match(name)
    if match is None:
        return name, ""
    return match["name"] + SUFFIX, match["token"]


def serves(file_name: str, model: str, digest: str) -> bool:
    """Whether a pod that reports `file_name` serves `model` of `digest`: the digest
    decides when the name carries one, else (remote storage) only the name can."""
    name, token = parse_served(file_name)
    if token:
        return token == digest_token(digest) and (
            name == base_name(model) or served_file_name(model, digest) == base_name(file_name)
        )
    return name == base_name(model)
