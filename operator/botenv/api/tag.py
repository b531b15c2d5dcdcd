"""ModelTag: a movable name for one trained model in storage."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from botenv.api.errors import SpecError
from botenv.api.reader import Reader
from botenv.api.refs import secret_name

PROVIDERS = ("s3", "gcs", "azure", "http", "local")
_URL = re.compile(r"^https?://\S+$")


@dataclasses.dataclass(frozen=True)
class StorageSpec:
    provider: str
    bucket: str = ""
    prefix: str = ""
    endpoint: str = ""
    region: str = ""
    url: str = ""
    path: str = ""
    secret_name: str = ""

    def block(self, *, with_secret: bool = True) -> dict[str, Any]:
        """The spec's `storage` block again (the fields that are set): what a ModelTag or
        `botenv upload --storage-json` is given."""
        fields = (
            ("provider", self.provider),
            ("bucket", self.bucket),
            ("prefix", self.prefix),
            ("endpoint", self.endpoint),
            ("region", self.region),
            ("url", self.url),
            ("path", self.path),
        )
        block: dict[str, Any] = {k: v for k, v in fields if v}
        if with_secret and self.secret_name:
            block["secretRef"] = {"name": self.secret_name}
        return block

    def object_key(self, model: str) -> str:
        """The model's full key inside the bucket (Rasa 3.6 ignores REMOTE_STORAGE_PATH)."""
        prefix = self.prefix.strip("/")
        return f"{prefix}/{model}" if prefix else model


@dataclasses.dataclass(frozen=True)
class TagSpec:
    model: str
    storage: StorageSpec
    # The rasa-sdk image whose actions match this model's domain ("" = the environment's).
    action_server_image: str = ""


def parse_storage(storage: Reader) -> StorageSpec:
    """A `storage` block (a ModelTag's, or a ModelTraining's output); problems are added to
    the reader's list with their field paths."""
    path = storage.path
    provider = storage.enum("provider", PROVIDERS, "s3")
    if "provider" not in storage.data:
        storage.fail(f"{path}.provider", f"is required: one of {', '.join(PROVIDERS)}")
    ref = storage.child("secretRef")
    parsed = StorageSpec(
        provider=provider,
        bucket=storage.text("bucket"),
        prefix=storage.text("prefix"),
        endpoint=storage.text("endpoint"),
        region=storage.text("region"),
        url=storage.text("url"),
        path=storage.text("path"),
        secret_name=secret_name(ref) if ref is not None else "",
    )
    if provider in ("s3", "gcs", "azure") and not parsed.bucket:
        storage.fail(
            f"{path}.bucket",
            f"is required for provider {provider} (the bucket, or the Azure container)",
        )
    if provider == "http" and not _URL.match(parsed.url):
        storage.fail(f"{path}.url", "is required for provider http: an http(s):// base URL")
    if provider == "local" and not parsed.path.startswith("/"):
        storage.fail(f"{path}.path", "is required for provider local: an absolute directory")
    if parsed.endpoint and not _URL.match(parsed.endpoint):
        storage.fail(f"{path}.endpoint", f"must be an http(s):// URL, got {parsed.endpoint!r}")
    return parsed


def parse_tag(body: dict[str, Any]) -> TagSpec:
    problems: list[str] = []
    spec = Reader(body.get("spec") or {}, "spec", problems)
    model = spec.text("model")
    if not model:
        spec.fail("spec.model", "is required: the model's object name, e.g. 20190506-100418.tar.gz")
    elif model.startswith("/") or ".." in model.split("/") or any(c.isspace() for c in model):
        spec.fail(
            "spec.model",
            f"must be an object name without '..', spaces or a leading '/', got {model!r}",
        )

    storage = spec.child("storage")
    if storage is None:
        spec.fail("spec.storage", "is required: where the model is stored")
        storage = Reader({}, "spec.storage", problems)
    parsed = parse_storage(storage)
    image = spec.text("actionServerImage")
    if image and (any(c.isspace() for c in image) or len(image) > 512):
        spec.fail("spec.actionServerImage", f"must be a container image reference, got {image!r}")
    if problems:
        raise SpecError(problems)
    return TagSpec(model=model, storage=parsed, action_server_image=image)
