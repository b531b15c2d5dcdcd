"""`scripts/run` without a cluster: botenv's whole job on this machine, with real parts.

It starts the local control plane, a local node that runs the pods botenv creates as
processes (Rasa 3.6.21 from a cached venv), botenv's model server and operator, and local
storage (a directory). Then the demo assistant in examples/demo-bot is trained by two
ModelTrainings on the node (version 1 moves the `production` tag, version 2 the
`experimental` tag), and two BotEnvironments, production and experimental, become Ready
with real Rasa servers. It prints what to try next and runs until Ctrl-C, which stops
everything it started.

A model already in local storage for the same project files is not trained again: a
second start is ready in about a minute. Every slow step says so before it starts.

    python -m botenv.local.demo [--dir DIR] [--bot DIR] [--crds DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from botenv.cli.decisions import condition
from botenv.local.processes import (
    HOST,
    ManagedProcess,
    ProcessError,
    model_server_argv,
    own_environ,
    port_open,
)

NAMESPACE = "demo"
ENVIRONMENTS = ("production", "experimental")
# Which version of the demo bot each tag starts with.
VERSIONS = {"production": "v1", "experimental": "v2"}
# botenv's own image as the local operator names it; the node runs this checkout for it.
BOTENV_IMAGE = "botenv/botenv:local"
MODEL_SERVER_SERVICE = "botenv-model-server.botenv-system:8080"
REPO_ROOT = Path(__file__).resolve().parents[3]
EXIT_MISSING = 3  # something the run needs is missing or taken
EXIT_FAILED = 1


class DemoError(Exception):
    """Something the run needs is missing or failed; the message says what to do."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def say(message: str) -> None:
    print(f"botenv: {message}", flush=True)


def default_dir() -> Path:
    own = os.environ.get("BOTENV_LOCAL_DIR")
    if own:
        return Path(own).expanduser()
    cache = os.environ.get("BOTENV_CACHE") or str(Path.home() / ".cache" / "botenv")
    return Path(cache).expanduser() / "local-cluster"


# -- steps ------------------------------------------------------------------------------


class Steps:
    """Numbered progress lines; each step's time once it is done."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.number = 0
        self.began = time.monotonic()

    @contextlib.contextmanager
    def step(self, what: str, slow: str = "") -> Iterator[None]:
        self.number += 1
        say(f"[{self.number}/{self.total}] {what}{f' ({slow})' if slow else ''}")
        began = time.monotonic()
        yield
        took = time.monotonic() - began
        if took >= 1:
            say(f"[{self.number}/{self.total}] done in {took:.0f} s")

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.began


@contextlib.contextmanager
def exclusive(directory: Path) -> Iterator[None]:
    """One run per directory: its etcd data and logs are not shared."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "run.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "?"
            raise DemoError(
                f"another botenv run (pid {pid}) uses {directory}: stop it with Ctrl-C, or "
                "give this one another directory with BOTENV_LOCAL_DIR=DIR",
                EXIT_MISSING,
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield


# -- botenv's processes -----------------------------------------------------------------


class BotenvProcess(ManagedProcess):
    """`python -m botenv ...` of this checkout, with the admin kubeconfig."""

    error = DemoError
    start_timeout = 90.0

    def __init__(self, workdir: Path, kubeconfig: Path, extra_env: Mapping[str, str]) -> None:
        super().__init__(workdir)
        self.kubeconfig = kubeconfig
        self.extra_env = dict(extra_env)

    def env(self) -> Mapping[str, str]:
        return own_environ(KUBECONFIG=str(self.kubeconfig), **self.extra_env)


class ModelServer(BotenvProcess):
    name = "model-server"

    def argv(self) -> list[str]:
        return model_server_argv(self.port, self.workdir / "model-cache", self.host)

    def ready(self) -> bool:
        if not port_open(self.port):
            return False
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                return bool(response.status == 200)
        return False


class Operator(BotenvProcess):
    name = "operator"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "botenv", "operator"]

    def ready(self) -> bool:
        try:
            return b"botenv operator started" in self.log_path.read_bytes()
        except OSError:
            return False


# -- the demo's objects -----------------------------------------------------------------


def project_files(project: Path) -> dict[str, str]:
    """The project as ModelTraining ConfigMap keys (what `botenv train DIR` sends)."""
    from botenv.cli.train import ProjectError, pack_project

    try:
        return pack_project(project)
    except ProjectError as exc:
        raise DemoError(f"the demo bot {project}: {exc}") from None


def model_name(version: str, files: Mapping[str, str]) -> str:
    """The model's file name: the same project files give the same name, so a model
    already in storage is not trained again."""
    digest = hashlib.sha256()
    for key in sorted(files):
        digest.update(f"{key}\0{files[key]}\0".encode())
    return f"demo-bot-{version}-{digest.hexdigest()[:10]}.tar.gz"


def demo_objects(bot: Path, models: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The namespace, tags or trainings, and environments of the demo; and the names of
    the trainings among them."""
    from botenv.cli.train import training_body

    storage = {"provider": "local", "path": str(models)}
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    ]
    trainings: list[str] = []
    for tag, version in VERSIONS.items():
        files = project_files(bot / version)
        name = model_name(version, files)
        if (models / name).is_file():
            objects.append(
                {
                    "apiVersion": "botenv.dev/v1alpha1",
                    "kind": "ModelTag",
                    "metadata": {"name": tag, "namespace": NAMESPACE},
                    # As when a training creates the tag (the first run): later trainings,
                    # `botenv train --tag experimental`, may move it.
                    "spec": {"model": name, "storage": storage, "trainings": {"allowed": True}},
                }
            )
            continue
        training = f"demo-bot-{version}"
        trainings.append(training)
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"{training}-project", "namespace": NAMESPACE},
                "data": files,
            }
        )
        body = training_body(
            training,
            NAMESPACE,
            project=f"{training}-project",
            storage=storage,
            tag=tag,
            image="",
            model_name=name,
        )
        objects.append(body)
    for environment in ENVIRONMENTS:
        objects.append(
            {
                "apiVersion": "botenv.dev/v1alpha1",
                "kind": "BotEnvironment",
                "metadata": {"name": environment, "namespace": NAMESPACE},
                # A short pull interval: a promotion shows within seconds.
                "spec": {"pullIntervalSeconds": 2},
            }
        )
    return objects, trainings


# -- waiting ----------------------------------------------------------------------------


def progress(kind: str, name: str, body: Mapping[str, Any] | None) -> str:
    """One line on where an object is."""
    status = (body or {}).get("status") or {}
    if not status:
        return f"{kind} {name}: waiting for the operator"
    ready = condition(body, "Ready")
    if kind == "modeltraining":
        phase = status.get("phase") or "Pending"
        return f"{kind} {name}: {phase}{': ' + ready['message'] if ready.get('message') else ''}"
    state = "Ready" if ready.get("status") == "True" else f"not Ready ({ready.get('reason', '-')})"
    replicas = f"{status.get('readyReplicas', 0)}/{status.get('replicas', 0)} replicas"
    model = (status.get("model") or {}).get("name")
    return f"{kind} {name}: {state}, {replicas}{', model ' + model if model else ''}"


# -- the run ----------------------------------------------------------------------------


class Stop(Exception):
    """SIGTERM: leave like Ctrl-C."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Stop


def run(directory: Path, bot: Path, crds: Path, timeout: float) -> int:
    from botenv.local.controlplane import (
        ControlPlane,
        ControlPlaneError,
        binaries_cached,
        find_binaries,
    )
    from botenv.local.node import PYTHON, Image, LocalKubelet
    from botenv.local.rasa import (
        RASA_VERSION,
        RasaHarnessError,
        rasa_python,
        rasa_venv,
        venv_cached,
    )

    _check_directory(directory)
    steps = Steps(6)
    with exclusive(directory), contextlib.ExitStack() as stack:
        try:
            with steps.step(
                f"Rasa {RASA_VERSION} for the local node",
                "cached"
                if venv_cached()
                else "first run: building its Python 3.10 venv, about 3 minutes and 2.7 GB",
            ):
                rasa_venv()
            with steps.step(
                "the Kubernetes control plane",
                "cached" if binaries_cached() else "first run: compiling it, about 5 minutes",
            ):
                find_binaries()
        except (RasaHarnessError, ControlPlaneError) as exc:
            raise DemoError(str(exc), EXIT_MISSING) from None

        with steps.step("starting the local control plane"):
            plane = ControlPlane(directory / "control-plane")
            try:
                plane.start()
            except ControlPlaneError as exc:
                raise DemoError(str(exc)) from None
            stack.callback(plane.stop)
            kubeconfig = plane.kubeconfig

        with steps.step("installing the CRDs"):
            _apply_crds(kubeconfig, crds, plane.version)

        models = (directory / "models").resolve()
        models.mkdir(parents=True, exist_ok=True)
        with steps.step(
            f"starting the local node, botenv's model server and operator (local storage: {models})"
        ):
            local_roots = {"BOTENV_STORAGE_LOCAL_ROOTS": str(models)}
            node = LocalKubelet(
                kubeconfig,
                directory / "node",
                images={
                    BOTENV_IMAGE: Image(
                        entrypoint=(sys.executable, "-m", "botenv"),
                        programs={"python": PYTHON, "python3": PYTHON},
                    )
                },
                rasa_python=rasa_python,
            )
            stack.enter_context(node)
            server = ModelServer(directory, kubeconfig, local_roots)
            stack.enter_context(server)
            node.service_hosts[MODEL_SERVER_SERVICE] = f"{HOST}:{server.port}"
            operator = Operator(
                directory,
                kubeconfig,
                {
                    **local_roots,
                    "BOTENV_IMAGE": BOTENV_IMAGE,
                    # The demo moves tags by hand: find the new model within seconds.
                    "BOTENV_RESOLVE_SECONDS": "2",
                },
            )
            # Stopped before the node, so it recreates nothing the node is tearing down.
            stack.enter_context(operator)

        objects, trainings = demo_objects(bot, models)
        slow = (
            f"training {', '.join(trainings)} on the local node first: about a minute"
            if trainings
            else "the models are in local storage already"
        )
        with steps.step("the demo: production and experimental environments", slow):
            _kubectl(
                kubeconfig,
                "apply",
                "-f",
                "-",
                stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
            )
            _wait(_kube(kubeconfig), trainings, timeout, [server, operator], directory)

        say(f"ready in {steps.elapsed:.0f} s")
        _next_steps(kubeconfig, directory)
        try:
            while True:  # until Ctrl-C or SIGTERM
                for process in (server, operator):
                    if not process.running:
                        raise DemoError(f"the {process.name} stopped; {process.log_tails()}")
                time.sleep(1)
        finally:
            # A second Ctrl-C must not cut the clean-up short (it would leave processes).
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            say("stopping everything this run started")


def _check_directory(directory: Path) -> None:
    """Local storage lives in `directory`; a training pod's upload step writes there. Pods
    have their own /tmp and /workspace (volumes, as in a cluster, where the node maps them),
    so a path below those would land in the pod's volume instead."""
    from botenv.render.training import TMP_DIR
    from botenv.render.workspace import WORK_DIR

    for mounted in (TMP_DIR, str(Path(WORK_DIR).parent)):
        if directory == Path(mounted) or Path(mounted) in directory.parents:
            raise DemoError(
                f"{directory} is below {mounted}, which the training pods mount for "
                "themselves: the models they store would land in their own volume. Choose "
                "another directory with BOTENV_LOCAL_DIR=DIR (default "
                "~/.cache/botenv/local-cluster)",
                EXIT_MISSING,
            )


def _kube(kubeconfig: Path) -> Any:
    from botenv.kube.client import connect

    kube, _ = connect(str(kubeconfig))
    return kube


def _apply_crds(kubeconfig: Path, crds: Path, version: tuple[int, int]) -> None:
    # Servers before 1.25 do not know the CRDs' CEL rules (x-kubernetes-validations): kubectl's
    # schema check refuses the field there, and the server drops it.
    validate = ["--validate=false"] if version < (1, 25) else []
    _kubectl(kubeconfig, "apply", *validate, "-f", str(crds))
    _kubectl(kubeconfig, "wait", "--for=condition=Established", "--timeout=60s", "-f", str(crds))


def _kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> None:
    proc = subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise DemoError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")


def _wait(
    kube: Any, trainings: list[str], timeout: float, processes: list[ManagedProcess], logs: Path
) -> None:
    """Until both environments are Ready; a line whenever something moves on."""
    watched: list[tuple[str, str, str]] = [("ModelTraining", "modeltraining", t) for t in trainings]
    watched += [("BotEnvironment", "botenvironment", e) for e in ENVIRONMENTS]
    last: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while True:
        ready = 0
        for kind, shown, name in watched:
            body = kube.get("botenv.dev/v1alpha1", kind, NAMESPACE, name)
            line = progress(shown, name, body)
            if last.get(name) != line:
                say(f"  {line}")
                last[name] = line
            status = (body or {}).get("status") or {}
            if kind == "ModelTraining" and status.get("phase") == "Failed":
                raise DemoError(
                    f"modeltraining {name} failed: {status.get('message')}\n"
                    f"{status.get('logTail', '')}"
                )
            if kind == "BotEnvironment" and condition(body, "Ready").get("status") == "True":
                ready += 1
        if ready == len(ENVIRONMENTS):
            return
        for process in processes:
            if not process.running:
                raise DemoError(f"the {process.name} stopped; {process.log_tails()}")
        if time.monotonic() > deadline:
            raise DemoError(
                f"production and experimental not Ready after {timeout:.0f} s; logs of the "
                f"operator, model server and node (node/<namespace>_<pod>/) are in {logs}"
            )
        time.sleep(1)


def _next_steps(kubeconfig: Path, directory: Path) -> None:
    venv_bin = Path(sys.executable).parent
    print(
        f"""
Two environments in namespace '{NAMESPACE}' serve models that botenv trained:
production has version 1 of examples/demo-bot, experimental has version 2.
In another terminal:

  export KUBECONFIG={kubeconfig}
  export PATH="{venv_bin}:$PATH"
  botenv status -n {NAMESPACE}
  botenv chat production -n {NAMESPACE} -m hello      # version 1 answers
  botenv chat experimental -n {NAMESPACE} -m hello    # version 2 answers
  botenv promote production --from experimental -n {NAMESPACE} --wait
  botenv chat production -n {NAMESPACE} -m hello      # now version 2 answers
  botenv rollback production -n {NAMESPACE} --wait    # and back

`botenv chat production -n {NAMESPACE}` without -m talks until Ctrl-D; kubectl works too
(`kubectl get botenv -n {NAMESPACE}`). Logs: {directory}.
Ctrl-C here stops everything this started.
""",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m botenv.local.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=default_dir(),
        help="state and logs (default: $BOTENV_LOCAL_DIR, else ~/.cache/botenv/local-cluster)",
    )
    parser.add_argument("--bot", type=Path, default=REPO_ROOT / "examples" / "demo-bot")
    parser.add_argument("--crds", type=Path, default=REPO_ROOT / "crds")
    parser.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        metavar="SECONDS",
        help="how long the environments may take to get Ready (default 900)",
    )
    args = parser.parse_args(argv)
    for path, what in ((args.bot, "the demo bot"), (args.crds, "the CRDs")):
        if not path.is_dir():
            print(f"botenv: error: {what}: {path} is not a directory", file=sys.stderr)
            return EXIT_MISSING
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return run(args.dir.resolve(), args.bot.resolve(), args.crds.resolve(), args.timeout)
    except (KeyboardInterrupt, Stop):
        say("stopped: everything this run started is gone")
        return 0
    except (DemoError, ProcessError) as exc:
        print(f"botenv: error: {exc}", file=sys.stderr, flush=True)
        return getattr(exc, "code", EXIT_FAILED)


if __name__ == "__main__":
    sys.exit(main())
