"""A container's environment: values, Secret and ConfigMap keys, fields, resources."""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping

from botenv.local.node.api import Api
from botenv.local.node.constants import HOST_IP
from botenv.local.node.state import ConfigError, Container, Pod

ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: a defined VAR is replaced, an undefined reference stays
    as written, ``$$`` is a literal ``$`` (k8s.io/kubernetes third_party/forked/golang
    expansion semantics)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "$" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                close = text.find(")", i + 2)
                if close != -1:
                    name = text[i + 2 : close]
                    out.append(env[name] if name in env else text[i : close + 1])
                    i = close + 1
                    continue
            out.append(text[i : i + 2])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


class PodConfig:
    """Reads what a pod's containers are configured from through the API: Secrets and
    ConfigMaps (per start, through a cache), the pod's own fields and resources."""

    def __init__(self, api: Api, node_name: str, capacity: Callable[[], dict[str, str]]) -> None:
        self.api = api
        self.node_name = node_name
        self.capacity = capacity

    def source(
        self,
        kind: str,
        namespace: str,
        name: str,
        cache: dict[tuple[str, str], dict[str, bytes] | None],
    ) -> dict[str, bytes] | None:
        """A Secret's or ConfigMap's data as bytes, None when it does not exist."""
        key = (kind, name)
        if key not in cache:
            assert self.api is not None
            plural = "secrets" if kind == "secret" else "configmaps"
            obj = self.api.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
            if obj is None:
                cache[key] = None
            elif kind == "secret":
                cache[key] = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
            else:
                data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
                data.update(
                    {k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()}
                )
                cache[key] = data
        return cache[key]

    def _key_ref(
        self, kind: str, rt: Pod, ref: dict, cache: dict[tuple[str, str], dict[str, bytes] | None]
    ) -> str | None:
        label = "Secret" if kind == "secret" else "ConfigMap"
        data = self.source(kind, rt.namespace, ref.get("name", ""), cache)
        if data is None:
            if ref.get("optional"):
                return None
            raise ConfigError(f'{kind} "{ref.get("name", "")}" not found')
        if ref.get("key") not in data:
            if ref.get("optional"):
                return None
            raise ConfigError(
                f"couldn't find key {ref.get('key')} in {label} {rt.namespace}/{ref.get('name')}"
            )
        return data[ref["key"]].decode(errors="replace")

    def field(self, rt: Pod, path: str) -> str:
        meta = rt.pod["metadata"]
        simple = {
            "metadata.name": rt.name,
            "metadata.namespace": rt.namespace,
            "metadata.uid": rt.uid,
            "spec.nodeName": self.node_name,
            "spec.serviceAccountName": rt.pod["spec"].get("serviceAccountName") or "default",
            "status.podIP": rt.ip,
            "status.podIPs": rt.ip,
            "status.hostIP": HOST_IP,
        }
        if path in simple:
            return simple[path]
        m = re.fullmatch(r"metadata\.(labels|annotations)(?:\['(.+)'\])?", path)
        if m:
            values = meta.get(m.group(1)) or {}
            if m.group(2) is not None:
                return values.get(m.group(2), "")
            return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
        raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")

    def _resource(self, rt: Pod, c: Container, ref: dict) -> str:
        from kubernetes.utils.quantity import parse_quantity

        target = c
        if ref.get("containerName"):
            target = next((x for x in rt.all_containers if x.name == ref["containerName"]), c)
        kind, _, what = ref.get("resource", "").partition(".")
        resources = target.spec.get("resources") or {}
        value = (resources.get(kind) or {}).get(what)
        if value is None and kind == "requests":
            value = (resources.get("limits") or {}).get(what)
        if value is None:
            value = self.capacity().get(what, "0") if kind == "limits" else "0"
        divisor = parse_quantity(ref.get("divisor") or "1")
        return str(math.ceil(parse_quantity(value) / divisor))

    def env(
        self, rt: Pod, c: Container, cache: dict[tuple[str, str], dict[str, bytes] | None]
    ) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in c.spec.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for kind, field in (("configmap", "configMapRef"), ("secret", "secretRef")):
                ref = source.get(field)
                if ref is None:
                    continue
                data = self.source(kind, rt.namespace, ref.get("name", ""), cache)
                if data is None:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(f'{kind} "{ref.get("name", "")}" not found')
                for key, value in data.items():
                    if ENV_NAME.fullmatch(prefix + key):
                        env[prefix + key] = value.decode(errors="replace")
        for item in c.spec.get("env") or []:
            name = item["name"]
            source = item.get("valueFrom")
            if source is None:
                env[name] = expand(item.get("value") or "", env)
                continue
            value: str | None
            if "secretKeyRef" in source:
                value = self._key_ref("secret", rt, source["secretKeyRef"], cache)
            elif "configMapKeyRef" in source:
                value = self._key_ref("configmap", rt, source["configMapKeyRef"], cache)
            elif "fieldRef" in source:
                value = self.field(rt, source["fieldRef"].get("fieldPath", ""))
            elif "resourceFieldRef" in source:
                value = self._resource(rt, c, source["resourceFieldRef"])
            else:
                raise ConfigError(f"env {name}: unsupported valueFrom {sorted(source)}")
            if value is not None:
                env[name] = value
        return env
