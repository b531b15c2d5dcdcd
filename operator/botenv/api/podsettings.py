"""Pod settings a BotEnvironment and its action server add to the pods botenv runs:
volumes and mounts, init containers, sidecars, extra `rasa run` flags, probe timings, a
priority class, the termination grace period, a preStop pause and security contexts.

What botenv owns in those pods (its container's name, its volumes, the paths it mounts, the
flags it passes, the port it probes) is listed here, next to the parser that refuses it in
the user's fields with the field's path; the renderers use the same names
(tests/unit/test_pod_settings.py checks that they agree)."""

from __future__ import annotations

import dataclasses
import posixpath
import re
from typing import Any

from botenv.api.reader import Reader

# --- botenv's layout of the Rasa pod and the action server pod ------------------------------

RASA_CONTAINER = "rasa"
ACTION_SERVER_CONTAINER = "action-server"
RASA_PORT = 5005
PORT_NAME = "http"  # the container port botenv probes and the Service targets
BOTENV_DIR = "/etc/botenv"  # endpoints.yml, the readiness script, credentials, keys
# Rasa's working directory and HOME: an emptyDir, so the root filesystem can be read-only.
# Not the image's /app: a custom image's modules there stay visible (on PYTHONPATH).
RASA_WORK_DIR = "/var/lib/rasa"
IMAGE_WORK_DIR = "/app"  # WORKDIR (and HOME) of the rasa/rasa and rasa/rasa-sdk images
TMP_DIR = "/tmp"
CONFIG_VOLUME = "rasa-config"
WORK_VOLUME = "botenv-work"
TMP_VOLUME = "botenv-tmp"
SECRET_VOLUME = re.compile(r"^secret-[0-9]+$")  # one per Secret file botenv mounts

PROBE_KINDS = ("startup", "readiness", "liveness")
PROBE_TIMINGS = {  # field -> its minimum
    "initialDelaySeconds": 0,
    "periodSeconds": 1,
    "timeoutSeconds": 1,
    "failureThreshold": 1,
    "successThreshold": 1,
}
DEFAULT_PRE_STOP_SECONDS = 5
DEFAULT_GRACE_SECONDS = 30  # Kubernetes' terminationGracePeriodSeconds when unset
MAX_SECONDS = 86400
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@dataclasses.dataclass(frozen=True)
class Owned:
    """What botenv owns in one pod: its container (`what` names it in errors), the volumes
    it defines (`shared`: those the user's other containers may mount too), the paths it
    mounts into its container, its port, and the `rasa run` flags it sets (long flags; short
    ones as letters)."""

    container: str
    what: str
    server: str  # what serves on `port`, in errors
    volumes: frozenset[str]
    shared: frozenset[str]
    paths: tuple[str, ...]
    port: int
    flags: tuple[str, ...] = ()
    short_flags: str = ""
    probes: tuple[str, ...] = PROBE_KINDS

    def owns_volume(self, name: str) -> bool:
        return name in self.volumes or (
            self.container == RASA_CONTAINER and bool(SECRET_VOLUME.match(name))
        )


RASA = Owned(
    container=RASA_CONTAINER,
    what="the Rasa container's name",
    server="Rasa",
    volumes=frozenset({CONFIG_VOLUME, WORK_VOLUME, TMP_VOLUME}),
    shared=frozenset({WORK_VOLUME, TMP_VOLUME}),
    paths=(BOTENV_DIR, RASA_WORK_DIR, TMP_DIR),
    port=RASA_PORT,
    # `rasa run` flags botenv passes or relies on (-i: botenv probes the pod's IP).
    flags=(
        "--enable-api",
        "--port",
        "--endpoints",
        "--credentials",
        "--model",
        "--remote-storage",
        "--auth-token",
        "--jwt-secret",
        "--jwt-method",
        "--cors",
        "--interface",
    ),
    short_flags="pmti",
)


def action_server_owned(port: int) -> Owned:
    return Owned(
        container=ACTION_SERVER_CONTAINER,
        what="the action server container's name",
        server="the action server",
        volumes=frozenset({TMP_VOLUME}),
        shared=frozenset({TMP_VOLUME}),
        paths=(TMP_DIR,),
        port=port,
        probes=("readiness", "liveness"),
    )


# --- the parsed settings -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PodSettings:
    """The user's additions to one pod (all optional)."""

    volumes: tuple[dict[str, Any], ...] = ()
    volume_mounts: tuple[dict[str, Any], ...] = ()  # into botenv's container
    init_containers: tuple[dict[str, Any], ...] = ()
    sidecars: tuple[dict[str, Any], ...] = ()
    extra_args: tuple[str, ...] = ()
    probes: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    priority_class_name: str = ""
    termination_grace_period_seconds: int | None = None
    pre_stop_sleep_seconds: int = DEFAULT_PRE_STOP_SECONDS
    pod_security_context: dict[str, Any] = dataclasses.field(default_factory=dict)
    security_context: dict[str, Any] = dataclasses.field(default_factory=dict)


def _objects(reader: Reader, key: str) -> list[tuple[str, dict[str, Any]]]:
    """(path, item) for each object of a list; non-objects are problems."""
    out = []
    for i, item in enumerate(reader.items(key)):
        path = f"{reader.path}.{key}[{i}]"
        if isinstance(item, dict):
            out.append((path, item))
        else:
            reader.fail(path, "must be an object")
    return out


def _under(path: str, parent: str) -> bool:
    return parent == "/" or path == parent or path.startswith(parent + "/")


def _mount_path(reader: Reader, path: str, value: object, owned: Owned | None) -> None:
    if not isinstance(value, str) or not value:
        reader.fail(f"{path}.mountPath", "is required: an absolute path in the container")
        return
    if not value.startswith("/"):
        reader.fail(f"{path}.mountPath", f"must be an absolute path, got {value!r}")
        return
    normal = posixpath.normpath(value)
    if owned is None:
        return
    for mine in owned.paths:
        if _under(normal, mine) or _under(mine, normal):
            reader.fail(
                f"{path}.mountPath",
                f"{value!r} is on a path botenv mounts ({mine}"
                f"{'' if normal == mine else ', or above or below it'}); botenv mounts "
                f"{', '.join(owned.paths)}: mount elsewhere",
            )
            return


def _mounts(
    reader: Reader, key: str, known: set[str], where: str, owned: Owned | None
) -> tuple[dict[str, Any], ...]:
    """volumeMounts naming a volume in `known`; with `owned`, none over its paths."""
    mounts = _objects(reader, key)
    for path, mount in mounts:
        name = mount.get("name")
        if not isinstance(name, str) or not name:
            reader.fail(f"{path}.name", "is required: the name of a volume")
        elif name not in known:
            reader.fail(f"{path}.name", f"{name!r} is not a volume {where}")
        _mount_path(reader, path, mount.get("mountPath"), owned)
    return tuple(m for _, m in mounts)


def _volumes(reader: Reader, owned: Owned) -> tuple[dict[str, Any], ...]:
    volumes = _objects(reader, "volumes")
    seen: set[str] = set()
    for path, volume in volumes:
        name = volume.get("name")
        if not isinstance(name, str) or not _DNS_LABEL.match(name) or len(name) > 63:
            reader.fail(f"{path}.name", f"must be a DNS label (a-z, 0-9, '-'), got {name!r}")
        elif owned.owns_volume(name):
            reader.fail(
                f"{path}.name",
                f"{name!r} is a volume botenv defines for this pod "
                f"({', '.join(sorted(owned.volumes))}"
                f"{', secret-<n>' if owned.container == RASA_CONTAINER else ''}): "
                "choose another name",
            )
        elif name in seen:
            reader.fail(f"{path}.name", f"{name!r} names two volumes")
        else:
            seen.add(name)
    return tuple(v for _, v in volumes)


def _containers(
    reader: Reader, key: str, owned: Owned, taken: set[str], volumes: set[str]
) -> tuple[dict[str, Any], ...]:
    """Init containers or sidecars: a unique DNS-label name that is not botenv's, an image,
    no port botenv probes, volumeMounts of the pod's volumes."""
    containers = _objects(reader, key)
    for path, container in containers:
        name = container.get("name")
        if not isinstance(name, str) or not _DNS_LABEL.match(name) or len(name) > 63:
            reader.fail(f"{path}.name", f"must be a DNS label (a-z, 0-9, '-'), got {name!r}")
        elif name == owned.container:
            reader.fail(f"{path}.name", f"{name!r} is {owned.what}: choose another name")
        elif name in taken:
            reader.fail(f"{path}.name", f"{name!r} is used by another container of the pod")
        else:
            taken.add(name)
        image = container.get("image")
        if not isinstance(image, str) or not image:
            reader.fail(f"{path}.image", "is required: the container's image")
        item = Reader(container, path, reader.problems)
        for port_path, port in _objects(item, "ports"):
            if port.get("containerPort") == owned.port:
                item.fail(
                    f"{port_path}.containerPort",
                    f"{owned.port} is {owned.server}'s port, which botenv probes and its "
                    "Service targets: use another port",
                )
            if port.get("name") == PORT_NAME:
                item.fail(
                    f"{port_path}.name",
                    f"{PORT_NAME!r} is the name of {owned.server}'s port (botenv's probes "
                    "and Service use it): use another name",
                )
        _mounts(item, "volumeMounts", volumes | set(owned.shared), "of the pod", None)
    return tuple(c for _, c in containers)


def _flag_owned(arg: str, owned: Owned) -> str:
    """The flag of `owned` that `arg` sets ("" when none): exact, `--flag=value`, an
    abbreviation argparse accepts, or a short flag (`-p`, `-p5005`)."""
    if arg.startswith("--"):
        name = arg.split("=", 1)[0]
        for flag in owned.flags:
            if len(name) > 2 and flag.startswith(name):
                return flag
        return ""
    if arg.startswith("-") and len(arg) > 1 and arg[1] in owned.short_flags:
        return arg[:2]
    return ""


def _extra_args(reader: Reader, owned: Owned) -> tuple[str, ...]:
    args = reader.items("extraArgs")
    for i, arg in enumerate(args):
        path = f"{reader.path}.extraArgs[{i}]"
        if not isinstance(arg, str):
            reader.fail(path, "must be a string")
            continue
        if i == 0 and not arg.startswith("-"):
            reader.fail(
                path,
                f"must be a flag (starting with '-'), got {arg!r}: `rasa run` would take a "
                "word here as the model to load",
            )
        flag = _flag_owned(arg, owned)
        if flag:
            reader.fail(
                path,
                f"{arg!r} sets {flag}, which botenv sets from the spec (botenv sets "
                f"{', '.join(owned.flags)}): use the spec's own fields",
            )
    return tuple(a for a in args if isinstance(a, str))


def _probes(reader: Reader, owned: Owned) -> dict[str, dict[str, int]]:
    probes = reader.child("probes")
    if probes is None:
        return {}
    out: dict[str, dict[str, int]] = {}
    for kind, value in probes.data.items():
        path = f"{probes.path}.{kind}"
        if kind not in owned.probes:
            probes.fail(path, f"must be one of {', '.join(owned.probes)}")
            continue
        probe = Reader(value, path, probes.problems)
        timings: dict[str, int] = {}
        for field in probe.data:
            if field not in PROBE_TIMINGS:
                probe.fail(
                    f"{path}.{field}",
                    "botenv sets the probe's check (its handler and port); only "
                    f"{', '.join(PROBE_TIMINGS)} may be set",
                )
                continue
            number = probe.integer(field, minimum=PROBE_TIMINGS[field], maximum=MAX_SECONDS)
            if number is not None:
                timings[field] = number
        if kind != "readiness" and timings.get("successThreshold", 1) != 1:
            probe.fail(f"{path}.successThreshold", f"must be 1 for a {kind} probe")
        out[kind] = timings
    return out


def parse_pod_settings(reader: Reader, owned: Owned, *, extra_args: bool) -> PodSettings:
    """The pod settings under `reader` (spec, or spec.actionServer), checked against what
    botenv owns in that pod; problems go to the reader's list with their field paths."""
    volumes = _volumes(reader, owned)
    names = {v["name"] for v in volumes if isinstance(v.get("name"), str)}
    taken: set[str] = set()
    init = _containers(reader, "initContainers", owned, taken, names)
    sidecars = _containers(reader, "sidecars", owned, taken, names)
    grace = reader.integer("terminationGracePeriodSeconds", minimum=0, maximum=MAX_SECONDS)
    pause = reader.integer(
        "preStopSleepSeconds", DEFAULT_PRE_STOP_SECONDS, minimum=0, maximum=MAX_SECONDS
    )
    pause = DEFAULT_PRE_STOP_SECONDS if pause is None else pause
    budget = DEFAULT_GRACE_SECONDS if grace is None else grace
    if pause and pause >= budget:
        reader.fail(
            f"{reader.path}.preStopSleepSeconds",
            f"must be less than terminationGracePeriodSeconds ({budget}"
            f"{'' if grace is not None else ', the default'}): the pause counts against the "
            "grace period, and Rasa needs time to stop after it",
        )
    priority = reader.text("priorityClassName")
    if priority and (not _DNS_SUBDOMAIN.match(priority) or len(priority) > 253):
        reader.fail(
            f"{reader.path}.priorityClassName",
            f"must be the name of a PriorityClass, got {priority!r}",
        )
    return PodSettings(
        volumes=volumes,
        volume_mounts=_mounts(reader, "volumeMounts", names, f"in {reader.path}.volumes", owned),
        init_containers=init,
        sidecars=sidecars,
        extra_args=_extra_args(reader, owned) if extra_args else (),
        probes=_probes(reader, owned),
        priority_class_name=priority,
        termination_grace_period_seconds=grace,
        pre_stop_sleep_seconds=pause,
        pod_security_context=reader.mapping("podSecurityContext"),
        security_context=reader.mapping("securityContext"),
    )
