"""The version gate of one environment: pure. A tag's model that the environment's Rasa
cannot load (render/compat.py) is not rolled out: the environment stays on the model of
the tag it serves now, and says why. With no such model to stay on, nothing is applied."""

from __future__ import annotations

from typing import Any

from botenv.api.environment import EnvironmentSpec
from botenv.render import compat
from botenv.render.deployment import ModelRef
from botenv.render.problem import Problem

# Spelled out in the Problems below too: tests/gitops reads the reasons from the source.
MODEL_INCOMPATIBLE = "ModelIncompatible"


def _entries(tag: dict[str, Any]) -> list[dict[str, Any]]:
    """The tag's resolution and its history: the models its pods may be pinned to."""
    status = tag.get("status") or {}
    return [status, *(status.get("history") or [])]


def gate(
    spec: EnvironmentSpec, tag: dict[str, Any], model: ModelRef, served: dict[str, Any]
) -> tuple[ModelRef, Problem | None] | Problem:
    """(the model to render, the refusal to report) or, when the environment has nothing
    to stay on, the refusal as a Problem (nothing is applied). `served` is the
    environment's status.model."""
    server = compat.server_of(spec.image, spec.rasa_version)
    version = (tag.get("status") or {}).get("rasaVersion", "")
    why = compat.refusal(version, server)
    if not why:
        return model, None
    refused = f"model {model.model} (digest {model.digest}) of ModelTag {spec.model_tag!r} {why}"
    keep = None
    if served.get("tag") == spec.model_tag and served.get("digest"):
        keep = next(
            (
                e
                for e in _entries(tag)
                if e.get("digest") == served["digest"]
                and e.get("model")
                and not compat.refusal(e.get("rasaVersion", ""), server)
            ),
            None,
        )
    if keep is None:
        return Problem(
            "ModelIncompatible",
            f"{refused}. Nothing is rolled out (the running pods, if any, stay as they "
            "are) until the tag moves to a model this Rasa loads, or spec.image (or "
            "spec.rasaVersion) names a Rasa that loads this one",
        )
    stay = ModelRef(
        tag=model.tag,
        model=keep["model"],
        digest=keep["digest"],
        storage=model.storage,
        action_server_image=keep.get("actionServerImage", ""),
    )
    return stay, Problem(
        "ModelIncompatible",
        f"{refused}. The environment stays on model {keep['model']} (digest "
        f"{keep['digest']}) until the tag moves to a model this Rasa loads",
    )
