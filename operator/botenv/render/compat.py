"""Can a Rasa server load a model? Rasa's own rule, before any pod tries.

Rasa 3 loads a model only if the Rasa version that trained it (the archive's metadata) is
at least the server's MINIMUM_COMPATIBLE_VERSION (`rasa/constants.py`; the check is
`ModelMetadata.__post_init__` in `rasa/engine/storage/storage.py`, which raises
UnsupportedModelVersionError). A Rasa 2 archive is refused the same way. Rasa does not
refuse a model trained by a NEWER version, so neither does botenv.

The server's Rasa version comes from the environment's `spec.rasaVersion`, else from the
tag of an official Rasa image (`rasa/rasa:3.6.21-full` -> 3.6.21). The minimum each
version accepts is in MINIMUM_COMPATIBLE below, read from `rasa/constants.py` of the
released wheels. A version not in the table, or an image whose version is unknown, is not
gated: botenv does not guess."""

from __future__ import annotations

import dataclasses
import re

from botenv.api.versions import version_key

# (first version, minimum compatible model version) in ascending order: a Rasa version uses
# the entry of the greatest first version <= it. From `rasa/constants.py` of the wheels on
# PyPI: 3.0.0, 3.1.0, 3.1.7, 3.2.0, 3.2.13, 3.3.0, 3.3.12, 3.4.0 and 3.4.18 say 3.0.0;
# 3.5.0, 3.5.17, 3.6.0 and 3.6.20 say 3.5.0; 3.6.21 (a security release that made every
# older model be retrained) says 3.6.21.
MINIMUM_COMPATIBLE: tuple[tuple[str, str], ...] = (
    ("3.0.0", "3.0.0"),
    ("3.5.0", "3.5.0"),
    ("3.6.21", "3.6.21"),
)
# The newest Rasa version the table is known to hold for (later ones are not gated).
KNOWN_UP_TO = "3.6.21"

# Official Rasa images: rasa/rasa (Open Source) and the Rasa Pro / Plus images.
_RASA_REPOSITORY = re.compile(r"(^|/)rasa(-pro|-plus)?$")
_IMAGE_VERSION = re.compile(r"^(\d+\.\d+\.\d+)(?:$|[-_].*)")


def image_rasa_version(image: str) -> str:
    """The Rasa version of an official Rasa image from its tag, else ""."""
    name = image.split("@", 1)[0]
    repository, _, tag = name.rpartition(":")
    if not repository or "/" in tag:
        return ""  # no tag (a registry port is not one)
    match = _IMAGE_VERSION.match(tag)
    if not _RASA_REPOSITORY.search(repository) or match is None:
        return ""
    return match[1]


def minimum_compatible(rasa_version: str) -> str:
    """The oldest model version `rasa_version` loads, "" when the table does not know."""
    key = version_key(rasa_version)
    if key is None or key > _key(KNOWN_UP_TO + ".post999999") or key < _key("3.0.0.dev0"):
        return ""
    found = ""
    for first, minimum in MINIMUM_COMPATIBLE:
        if key >= _key(first):
            found = minimum
    return found


def _key(version: str) -> tuple[object, ...]:
    key = version_key(version)
    assert key is not None
    return key


@dataclasses.dataclass(frozen=True)
class Server:
    """What botenv knows of an environment's Rasa server."""

    rasa_version: str  # "" unknown
    source: str  # "spec.rasaVersion" or "image <image>"


def server_of(image: str, rasa_version: str = "") -> Server:
    if rasa_version:
        return Server(rasa_version, "spec.rasaVersion")
    return Server(image_rasa_version(image), f"image {image}")


def refusal(model_version: str, server: Server) -> str:
    """Why `server` cannot load a model trained by `model_version`, or "" when it can (or
    when either version, or the server's minimum, is unknown)."""
    if not model_version or not server.rasa_version:
        return ""
    minimum = minimum_compatible(server.rasa_version)
    model_key = version_key(model_version)
    if not minimum or model_key is None or model_key >= _key(minimum):
        return ""
    return (
        f"trained with Rasa {model_version}, but Rasa {server.rasa_version} ({server.source}) "
        f"loads only models trained with Rasa {minimum} or later"
    )
