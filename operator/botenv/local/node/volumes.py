"""Volumes: written under the pod's directory, mount paths mapped to them."""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from botenv.local.node.envs import PodConfig
from botenv.local.node.state import ConfigError, Container, MountError, Pod


class Volumes:
    """Sets up a pod's volumes (configMap, secret, emptyDir, downwardAPI, hostPath) under
    its directory; Service URLs in configMap and secret files are rewritten."""

    def __init__(self, config: PodConfig, rewrite_urls: Callable[[str], str]) -> None:
        self.config = config
        self.rewrite_urls = rewrite_urls

    def volumes(self, rt: Pod,
                 cache: dict[tuple[str, str], dict[str, bytes] | None]) -> dict[str, Path]:
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
                    raise MountError(f'MountVolume.SetUp failed for volume "{name}" : '
                                      f"hostPath {target} does not exist")
            elif "configMap" in volume or "secret" in volume:
                kind = "configmap" if "configMap" in volume else "secret"
                spec = volume.get("configMap") or volume.get("secret") or {}
                source = spec.get("name") if kind == "configmap" else spec.get("secretName")
                data = self.config.source(kind, rt.namespace, source or "", cache)
                if data is None:
                    if not spec.get("optional"):
                        raise MountError(f'MountVolume.SetUp failed for volume "{name}" : '
                                          f'{kind} "{source}" not found')
                    data = {}
                mode = int(spec.get("defaultMode") or 0o644)
                files = {}
                for item in spec.get("items") or [{"key": k, "path": k} for k in data]:
                    if item["key"] not in data:
                        if spec.get("optional"):
                            continue
                        raise MountError(f'MountVolume.SetUp failed for volume "{name}" : '
                                          f"{kind} references non-existent key: "
                                          f"{item['key']}")
                    files[item["path"]] = (self._rewrite_bytes(data[item["key"]]),
                                           int(item.get("mode") or mode))
                self._write_files(target, files)
            elif "downwardAPI" in volume:
                spec = volume["downwardAPI"]
                files = {}
                for item in spec.get("items") or []:
                    if "fieldRef" in item:
                        try:
                            value = self.config.field(rt, item["fieldRef"].get("fieldPath", ""))
                        except ConfigError as exc:
                            raise MountError(str(exc)) from None
                    else:
                        value = ""
                    files[item["path"]] = (value.encode(),
                                           int(item.get("mode") or spec.get("defaultMode")
                                               or 0o644))
                self._write_files(target, files)
            else:
                kinds = sorted(k for k in volume if k != "name")
                raise MountError(f'volume "{name}": the test kubelet does not support '
                                  f"{kinds}")
            out[name] = target
        return out

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

    def mounts(self, rt: Pod, c: Container,
                volumes: dict[str, Path]) -> list[tuple[str, str]]:
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
    pattern = re.compile(r"(?<![\w.-])(" + "|".join(re.escape(p) for p in ordered)
                         + r")(?![\w.-])")

    def rewrite(text: str) -> str:
        return pattern.sub(lambda m: table[m.group(1)], text)

    return rewrite
