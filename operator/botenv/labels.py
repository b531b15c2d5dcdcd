"""The labels botenv puts on what it makes, and selects what it watches by."""

from __future__ import annotations

import hashlib
import re

MANAGED_BY = "botenv"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
COMPONENT_LABEL = "app.kubernetes.io/component"
# Every object botenv makes carries it; its watches list only these (server-side selector).
MANAGED = {MANAGED_BY_LABEL: MANAGED_BY}
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"

ENVIRONMENT_LABEL = "botenv.dev/environment"
TAG_LABEL = "botenv.dev/tag"
TRAINING_LABEL = "botenv.dev/training"
# Marks pull-token Secrets; the model server watches only these (server-side selector).
PULL_TOKEN_LABEL = "botenv.dev/pull-token"

COMPONENT = "rasa-server"
ACTION_SERVER_COMPONENT = "action-server"

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def label_value(value: str) -> str:
    """A valid label value for any name: long names keep a readable head and a hash tail."""
    if len(value) <= 63 and _LABEL_VALUE.match(value):
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    head = re.sub(r"[^-A-Za-z0-9_.]", "-", value)[:52].rstrip("-_.")
    return f"{head}-{digest}" if head else digest
