"""Security contexts, as far as a node that runs containers as the test's own processes can
hold them: the kubelet's non-root check, and a read-only root filesystem.

- runAsNonRoot: the effective securityContext (the container's over the pod's) is checked as
  the kubelet checks it before it creates a container. runAsUser 0 is refused; without a
  runAsUser, an image whose user (``Image.user``) is root, or a name, is refused. The
  container waits with CreateContainerConfigError and the kubelet's message, and is retried.
- readOnlyRootFilesystem: the places a process writes without naming a path (its working
  directory, $HOME, $TMPDIR) are its mounts when a volume is mounted there; otherwise they
  are directories of the container's own "root filesystem" under the pod's directory, made
  read-only (mode 0555). A process that is not root gets EACCES there, as a real one gets
  EROFS; root is not stopped by the mode, so the node also looks into those directories while
  the container runs and reports anything written there (a Warning event
  ReadOnlyRootFilesystem, the kubelet's log, ``ProcessInfo.root_writes``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botenv.local.node.images import Image
from botenv.local.node.state import Container, Pod

READ_ONLY = 0o555


def effective(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """The securityContext fields that apply to a container: its own over the pod's."""
    return {
        **(pod.get("securityContext") or {}),
        **(container.get("securityContext") or {}),
    }


def run_as(pod: dict[str, Any], container: dict[str, Any], image: Image) -> int | str:
    """The user the container runs as: runAsUser (container, then pod), else the image's."""
    user = effective(pod, container).get("runAsUser")
    return image.user if user is None else int(user)


def non_root_error(rt: Pod, c: Container, image: Image) -> str:
    """The kubelet's refusal when runAsNonRoot cannot hold ("" when it holds or is off)."""
    context = effective(rt.pod["spec"], c.spec)
    if not context.get("runAsNonRoot"):
        return ""
    where = f'pod: "{rt.name}_{rt.namespace}({rt.uid})", container: {c.name}'
    if context.get("runAsUser") is not None:
        if int(context["runAsUser"]) == 0:
            return f"container's runAsUser breaks non-root policy ({where})"
        return ""
    if isinstance(image.user, str):
        return (
            f"container has runAsNonRoot and image has non-numeric user ({image.user}), "
            f"cannot verify user is non-root ({where})"
        )
    if image.user == 0:
        return f"container has runAsNonRoot and image will run as root ({where})"
    return ""


def read_only_root(rt: Pod, c: Container) -> bool:
    return bool(effective({}, c.spec).get("readOnlyRootFilesystem"))


class RootFilesystem:
    """A read-only container's own root filesystem: `place(path)` gives the local directory
    for an in-container path, its mount when one covers it, else a read-only directory."""

    def __init__(self, root: Path, rewrite_path: Callable[[str], str]) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.rewrite_path = rewrite_path
        self.places: dict[str, Path] = {}  # in-container path -> read-only local directory

    def place(self, path: str) -> Path:
        mapped = self.rewrite_path(path)
        if mapped != path:
            return Path(mapped)
        local = self.root / path.strip("/")
        local.mkdir(parents=True, exist_ok=True)
        self.places[path] = local
        return local

    def _ours(self) -> set[Path]:
        """The root and every directory `place` made."""
        return {self.root} | {
            p
            for local in self.places.values()
            for p in (local, *local.parents)
            if self.root in p.parents
        }

    def seal(self) -> None:
        """Make every directory of the root filesystem read-only."""
        for directory in self._ours():
            directory.chmod(READ_ONLY)

    def writes(self) -> list[str]:
        """In-container paths of what was written into the read-only places."""
        ours = self._ours()
        found = []
        for path, local in self.places.items():
            try:
                entries = sorted(os.listdir(local))
            except OSError:
                continue
            for entry in entries:
                if local / entry not in ours:
                    found.append(f"{path.rstrip('/')}/{entry}")
        return sorted(set(found))


def unseal(root: Path) -> None:
    """Writable again, so the pod's directory can be removed."""
    if not root.exists():
        return
    for directory, dirs, _ in os.walk(root):
        for d in dirs:
            os.chmod(os.path.join(directory, d), 0o755)
    root.chmod(0o755)
