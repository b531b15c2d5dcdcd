"""Volumes: written under the pod's directory, mount paths mapped to them."""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from botenv.local.node.api import ApiError
from botenv.local.node.envs import PodConfig
from botenv.local.node.state import ConfigError, Container, MountError, Pod


class Volumes:
    """Sets up a pod's volumes (configMap, secret, emptyDir, downwardAPI, hostPath,
    projected) under its directory; Service URLs in configMap and secret files are
    rewritten."""

    def __init__(self, config: PodConfig, rewrite_urls: Callable[[str], str]) -> None:
        self.config = config
        self.rewrite_urls = rewrite_urls

    def volumes(
        self, rt: Pod, cache: dict[tuple[str, str], dict[str, bytes] | None]
    ) -> dict[str, Path]:
        """Write the pod's volumes; volume name -> directory (or file, for hostPath files)."""
        out: dict[str, Path] = {}
        base = rt.dir / "volumes"
        for volume in rt.pod["spec"].get("volumes") or []:
            name = volume["name"]
            target = base / name
            if "emptyDir" in volume:
                target.mkdir(parents=True, exist_ok=True)
            elif "hostPath" in volume:
                target = Path(volume["hostPath"]["path"])
                if volume["hostPath"].get("type") in ("DirectoryOrCreate",):
                    target.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    raise MountError(
                        f'MountVolume.SetUp failed for volume "{name}" : '
                        f"hostPath {target} does not exist"
                    )
            elif "configMap" in volume or "secret" in volume:
                kind = "configMap" if "configMap" in volume else "secret"
                spec = volume[kind] or {}
                self._write_files(
                    target,
                    self._keyed_files(
                        rt,
                        name,
                        kind,
                        spec,
                        spec.get("secretName") or spec.get("name") or "",
                        int(spec.get("defaultMode") or 0o644),
                        cache,
                    ),
                )
            elif "downwardAPI" in volume:
                spec = volume["downwardAPI"]
                self._write_files(
                    target, self._downward_files(rt, spec, int(spec.get("defaultMode") or 0o644))
                )
            elif "projected" in volume:
                # What a 1.22+ API server puts in every pod (kube-api-access-*): a bound
                # service account token, the kube-root-ca.crt ConfigMap and the namespace.
                spec = volume["projected"]
                mode = int(spec.get("defaultMode") or 0o644)
                files = {}
                for source in spec.get("sources") or []:
                    if "configMap" in source or "secret" in source:
                        kind = "configMap" if "configMap" in source else "secret"
                        files.update(
                            self._keyed_files(
                                rt,
                                name,
                                kind,
                                source[kind],
                                source[kind].get("name") or "",
                                mode,
                                cache,
                            )
                        )
                    elif "downwardAPI" in source:
                        files.update(self._downward_files(rt, source["downwardAPI"], mode))
                    elif "serviceAccountToken" in source:
                        token = source["serviceAccountToken"]
                        files[token["path"]] = (self._token(rt, name, token).encode(), mode)
                    else:
                        kinds = sorted(source)
                        raise MountError(
                            f'volume "{name}": the test kubelet does not '
                            f"support projected sources {kinds}"
                        )
                self._write_files(target, files)
            else:
                kinds = sorted(k for k in volume if k != "name")
                raise MountError(f'volume "{name}": the test kubelet does not support {kinds}')
            out[name] = target
        return out

    def _keyed_files(
        self,
        rt: Pod,
        volume: str,
        kind: str,
        spec: dict,
        source: str,
        mode: int,
        cache: dict[tuple[str, str], dict[str, bytes] | None],
    ) -> dict[str, tuple[bytes, int]]:
        """The files of a configMap or secret volume (or projected source)."""
        api_kind = kind.lower()
        data = self.config.source(api_kind, rt.namespace, source, cache)
        if data is None:
            if not spec.get("optional"):
                raise MountError(
                    f'MountVolume.SetUp failed for volume "{volume}" : '
                    f'{api_kind} "{source}" not found'
                )
            data = {}
        files = {}
        for item in spec.get("items") or [{"key": k, "path": k} for k in data]:
            if item["key"] not in data:
                if spec.get("optional"):
                    continue
                raise MountError(
                    f'MountVolume.SetUp failed for volume "{volume}" : '
                    f"{api_kind} references non-existent key: {item['key']}"
                )
            files[item["path"]] = (
                self._rewrite_bytes(data[item["key"]]),
                int(item.get("mode") or mode),
            )
        return files

    def _downward_files(self, rt: Pod, spec: dict, mode: int) -> dict[str, tuple[bytes, int]]:
        files = {}
        for item in spec.get("items") or []:
            if "fieldRef" in item:
                try:
                    value = self.config.field(rt, item["fieldRef"].get("fieldPath", ""))
                except ConfigError as exc:
                    raise MountError(str(exc)) from None
            else:
                value = ""
            files[item["path"]] = (value.encode(), int(item.get("mode") or mode))
        return files

    def _token(self, rt: Pod, volume: str, spec: dict) -> str:
        """A service account token bound to the pod, from the TokenRequest API, as the
        kubelet gets it for a serviceAccountToken projection."""
        api = self.config.api
        assert api is not None
        account = rt.pod["spec"].get("serviceAccountName") or "default"
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [spec["audience"]] if spec.get("audience") else [],
                "expirationSeconds": int(spec.get("expirationSeconds") or 3600),
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": rt.name,
                    "uid": rt.uid,
                },
            },
        }
        try:
            answer = api(
                "POST",
                f"/api/v1/namespaces/{rt.namespace}/serviceaccounts/{account}/token",
                request,
            )
        except ApiError as exc:
            raise MountError(
                f'MountVolume.SetUp failed for volume "{volume}" : failed to fetch token: {exc}'
            ) from None
        return answer["status"]["token"]

    def _rewrite_bytes(self, data: bytes) -> bytes:
        try:
            text = data.decode()
        except UnicodeDecodeError:
            return data
        return self.rewrite_urls(text).encode()

    @staticmethod
    def _write_files(target: Path, files: dict[str, tuple[bytes, int]]) -> None:
        """Replace the directory's content (a fresh directory swapped in, like the kubelet's
        atomic writer, so a reader never sees half of it)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fresh = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        for rel, (content, mode) in files.items():
            path = fresh / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            path.chmod(mode & 0o777)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
            target.rename(old)
        fresh.rename(target)
        target.chmod(0o755)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def mounts(self, rt: Pod, c: Container, volumes: dict[str, Path]) -> list[tuple[str, str]]:
        mounts = []
        for mount in c.spec.get("volumeMounts") or []:
            source = volumes.get(mount["name"])
            if source is None:
                raise MountError(f'volumeMount "{mount["name"]}" names no volume of the pod')
            if mount.get("subPath"):
                source = source / mount["subPath"]
            path = mount["mountPath"].rstrip("/")
            if path:
                mounts.append((path, str(source)))
        return mounts


def path_rewriter(mounts: list[tuple[str, str]]) -> Callable[[str], str]:
    """A function that replaces each mount path (as a whole path prefix) in a string by the
    local directory it is mapped to; nested mounts: the longest path wins."""
    if not mounts:
        return lambda s: s
    table = dict(mounts)
    ordered = sorted(table, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w.-])(" + "|".join(re.escape(p) for p in ordered) + r")(?![\w.-])")

    def rewrite(text: str) -> str:
        return pattern.sub(lambda m: table[m.group(1)], text)

    return rewrite
