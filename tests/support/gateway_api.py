"""The Gateway API's own CRDs, for tests that need a cluster serving HTTPRoute. They come from
the module sigs.k8s.io/gateway-api on the Go module proxy (its zip holds
config/crd/standard/*.yaml), fetched once with `go mod download` into a module cache of its
own under ${BOTENV_CACHE:-~/.cache/botenv}; later calls find it there."""

from __future__ import annotations

import functools
import json
import os
import subprocess
from pathlib import Path

VERSION = "v1.6.3"
MODULE = "sigs.k8s.io/gateway-api"
# The standard channel's CRDs an HTTPRoute needs: the route itself and what it attaches to.
STANDARD = ("gatewayclasses", "gateways", "httproutes")
CRDS = tuple(f"{plural}.gateway.networking.k8s.io" for plural in STANDARD)


def _cache() -> Path:
    root = os.environ.get("BOTENV_CACHE") or str(Path.home() / ".cache" / "botenv")
    return Path(root) / f"gateway-api-{VERSION}"


@functools.cache
def standard_crds() -> list[Path]:
    """The CRD files of STANDARD, downloaded on the first call (about 1 MB, a second or
    two), from the cache afterwards."""
    cache = _cache()
    cache.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "GOMODCACHE": str(cache / "mod"),
        # Writable files, so the cache can be removed like any other directory.
        "GOFLAGS": "-modcacherw",
        "GOTOOLCHAIN": "local",
        "GO111MODULE": "on",
    }
    proc = subprocess.run(
        ["go", "mod", "download", "-json", f"{MODULE}@{VERSION}"],
        cwd=cache,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"go mod download {MODULE}@{VERSION} failed: {proc.stdout.strip()} "
            f"{proc.stderr.strip()}"
        )
    folder = Path(json.loads(proc.stdout)["Dir"]) / "config" / "crd" / "standard"
    return [folder / f"gateway.networking.k8s.io_{plural}.yaml" for plural in STANDARD]
