"""JSON requests to the API server, with the kubernetes client's auth."""

from __future__ import annotations

import contextlib
import json
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class KubeletError(RuntimeError):
    """The test kubelet could not start or talk to the API server."""


class ApiError(RuntimeError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:400]}")
        self.status = status


class Api:
    """JSON over the kubernetes client's connection pool (its kubeconfig loading and auth),
    without its model (de)serialization."""

    def __init__(self, kubeconfig: Path) -> None:
        import kubernetes  # a project dependency; imported here so the module loads fast

        self._client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        self._host = self._client.configuration.host.rstrip("/")
        self._pool = self._client.rest_client.pool_manager

    def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str] | None = None,
        patch: bool = False,
        timeout: float = 15.0,
    ) -> Any:
        headers: dict[str, str] = {"Accept": "application/json"}
        self._client.update_params_for_auth(headers, [], ["BearerToken"], path, method, body)
        data = None
        if body is not None:
            headers["Content-Type"] = (
                "application/merge-patch+json" if patch else "application/json"
            )
            data = json.dumps(body).encode()
        url = self._host + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        resp = self._pool.request(
            method, url, body=data, headers=headers, timeout=timeout, retries=False
        )
        text = resp.data
        if not 200 <= resp.status < 300:
            raise ApiError(resp.status, text.decode(errors="replace"))
        return json.loads(text) if text else {}

    def get(self, path: str) -> Any:
        try:
            return self("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()
