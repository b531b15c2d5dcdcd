"""Fixtures for the install checks: a real Helm 3 (fetched once by scripts/fetch-helm.sh) and
the chart rendered with it. The checks against the real API server reuse the control plane
fixtures of tests/cluster."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

# The real control plane and kubectl (with the CRDs applied), exactly as tests/cluster has them.
from tests.cluster.conftest import (  # noqa: F401
    control_plane,
    control_plane_tokens,
    kubectl,
    pytest_collection_modifyitems,
)
from tests.support.helm import CHART, run_helm

VALUES = Path(__file__).resolve().parent / "values"

Helm = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """helm, with its config and cache in a temporary home."""
    home = tmp_path_factory.mktemp("helm-home")

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_helm(*args, home=home, check=check)

    return run


def template_args(release: str, namespace: str, values: str | None, *extra: str) -> list[str]:
    args = ["template", release, str(CHART), "--namespace", namespace]
    if values:
        args += ["-f", str(VALUES / values)]
    return [*args, *extra]


@pytest.fixture(scope="session")
def render(helm: Helm) -> Callable[..., list[dict]]:
    """helm template RELEASE helm/botenv --namespace NS [-f tests/install/values/FILE]: the
    objects it renders."""

    def _render(
        release: str = "botenv",
        namespace: str = "botenv-system",
        values: str | None = None,
        *extra: str,
    ) -> list[dict]:
        out = helm(*template_args(release, namespace, values, *extra)).stdout
        return [d for d in yaml.safe_load_all(out) if d]

    return _render


def find(objects: list[dict], kind: str, name: str, namespace: str | None = None) -> dict:
    for obj in objects:
        meta = obj["metadata"]
        if (
            obj["kind"] == kind
            and meta["name"] == name
            and (namespace is None or meta.get("namespace") == namespace)
        ):
            return obj
    raise AssertionError(
        f"no {kind} {namespace or ''}/{name} in "
        f"{sorted((o['kind'], o['metadata']['name']) for o in objects)}"
    )
