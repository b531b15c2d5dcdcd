"""Images: how the local node runs an image as a local process."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from botenv.local.node.api import KubeletError

# Placeholders in Image.entrypoint and Image.programs, resolved when a process starts.
RASA_PYTHON = "{rasa_python}"  # the cached Rasa 3.6.21 venv's interpreter
PYTHON = "{python}"  # the interpreter running the tests

# Quiet, private Rasa processes (as botenv.local.rasa builds them).
RASA_ENV = {
    "RASA_TELEMETRY_ENABLED": "false",
    "PYTHONUNBUFFERED": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
}

BindHook = Callable[[str, list[str]], tuple[list[str], dict[str, str]]]

# USER and HOME of the rasa/rasa and rasa/rasa-sdk images (WORKDIR /app too).
RASA_USER = 1001
RASA_HOME = "/app"


# -- images ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Image:
    """How the test kubelet runs an image as a local process.

    ``entrypoint`` and ``cmd`` are the image's ENTRYPOINT and CMD as a local argv: a
    container's ``command`` replaces the entrypoint, and its ``args`` replace cmd, as in
    Kubernetes. ``workdir`` is the image's WORKDIR (a directory holding what the image
    would ship, for example actions.py); None gives each container a private empty
    directory. ``env`` is the image's ENV. ``bind(pod_ip, args)`` returns the args and
    extra env that make the process listen on the pod's IP instead of 0.0.0.0.
    ``programs`` maps a program name in ``command`` and exec probes (``python``) to a
    local one. Entries may use the placeholders RASA_PYTHON and PYTHON. ``user`` is the
    image's USER (a uid, or a name; 0, root, for an image without one) and ``home`` its
    HOME: the node checks runAsNonRoot against ``user``, and gives a container with a
    read-only root filesystem ``home`` as $HOME (see botenv.local.node.security).
    """

    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...] = ()
    workdir: Path | None = None
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    bind: BindHook | None = None
    programs: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: {"python": RASA_PYTHON, "python3": RASA_PYTHON}
    )
    user: int | str = 0
    home: str = "/root"


def _without_flag(args: list[str], *flags: str) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in flags:
            skip = True
            continue
        if any(arg.startswith(f + "=") for f in flags if f.startswith("--")):
            continue
        out.append(arg)
    return out


def _rasa_bind(ip: str, args: list[str]) -> tuple[list[str], dict[str, str]]:
    if args[:2] == ["run", "actions"]:  # `rasa run actions` is rasa_sdk's server
        return args, {"SANIC_HOST": ip}
    if args[:1] != ["run"]:
        return args, {}
    return [*_without_flag(args, "-i", "--interface"), "--interface", ip], {}


def _rasa_sdk_bind(ip: str, args: list[str]) -> tuple[list[str], dict[str, str]]:
    # rasa_sdk 3.6 has no --interface flag: its server binds $SANIC_HOST (default 0.0.0.0).
    # The real image's entrypoint also accepts a leading "start".
    return (args[1:] if args[:1] == ["start"] else args), {"SANIC_HOST": ip}


def rasa_image() -> Image:
    """The rasa/rasa image: ENTRYPOINT rasa, CMD --help, with the cached venv."""
    return Image(
        entrypoint=(RASA_PYTHON, "-m", "rasa"),
        cmd=("--help",),
        env=RASA_ENV,
        bind=_rasa_bind,
        user=RASA_USER,
        home=RASA_HOME,
    )


def rasa_sdk_image(actions: Path | None = None) -> Image:
    """A rasa-sdk action server image: ``python -m rasa_sdk --actions actions`` run in
    ``actions``, a directory holding actions.py (or an actions package)."""
    return Image(
        entrypoint=(RASA_PYTHON, "-m", "rasa_sdk"),
        cmd=("--actions", "actions"),
        workdir=Path(actions) if actions else None,
        env=RASA_ENV,
        bind=_rasa_sdk_bind,
        user=RASA_USER,
        home=RASA_HOME,
    )


BUILTIN_IMAGES: dict[str, Callable[[], Image]] = {
    "rasa/rasa": rasa_image,
    "rasa/rasa-sdk": rasa_sdk_image,
}


def repository(image: str) -> str:
    """``docker.io/rasa/rasa:3.6.21-full@sha256:..`` -> ``rasa/rasa``."""
    ref = image.split("@", 1)[0]
    head, _, last = ref.rpartition("/")
    if ":" in last:
        last = last.split(":", 1)[0]
    ref = f"{head}/{last}" if head else last
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix) :]
    return ref.removeprefix("library/")


def find_image(images: Mapping[str, Image], image: str) -> Image | None:
    """The Image for an image reference: from images (by reference, then repository),
    else a built-in one; None when there is none."""
    found = images.get(image) or images.get(repository(image))
    if found is None and repository(image) in BUILTIN_IMAGES:
        found = BUILTIN_IMAGES[repository(image)]()
    return found


class Placeholders:
    """Resolves RASA_PYTHON and PYTHON in an Image's entries (each once).

    rasa_python gives the interpreter of a Rasa 3.6.21 venv; without it an image that
    needs RASA_PYTHON cannot start.
    """

    def __init__(self, rasa_python: Callable[[], str | Path] | None = None) -> None:
        self._rasa_python = rasa_python
        self._resolved: dict[str, str] = {}

    def __call__(self, word: str) -> str:
        if word not in (RASA_PYTHON, PYTHON):
            return word
        if word not in self._resolved:
            if word == PYTHON:
                self._resolved[word] = sys.executable
            elif self._rasa_python is None:
                raise KubeletError("no Rasa interpreter for RASA_PYTHON (give rasa_python=)")
            else:
                self._resolved[word] = str(self._rasa_python())
        return self._resolved[word]
