"""Who may make the operator move a ModelTag. The operator may patch every tag, so a
ModelTraining (which anyone with `create` on modeltrainings may write) must not move a tag
its author could not have patched. Kubernetes keeps no record of who wrote an object, so
the tag decides: it opts in with spec.trainings.allowed, a field only those who may patch
(or create) that tag can set. This holds on every Kubernetes version; where the API server
has ValidatingAdmissionPolicy (1.30+) the chart adds an authorizer check at admission."""

from __future__ import annotations

from typing import Any


def trainings_allowed(tag: dict[str, Any]) -> bool:
    """spec.trainings.allowed of a ModelTag body: true only when set to true."""
    trainings = (tag.get("spec") or {}).get("trainings")
    return isinstance(trainings, dict) and trainings.get("allowed") is True


def move_refused(tag_name: str, tag: dict[str, Any] | None) -> str:
    """Why a training may not move `tag` ('' when it may: the tag opts in, or does not
    exist yet, when the training creates it)."""
    if tag is None or trainings_allowed(tag):
        return ""
    return (
        f"spec.tag: ModelTag {tag_name!r} does not let trainings move it "
        "(its spec.trainings.allowed is not true). Someone who may patch that tag can allow "
        f"it: kubectl patch mtag {tag_name} --type merge -p "
        '\'{"spec":{"trainings":{"allowed":true}}}\'; or promote the model by hand'
    )
