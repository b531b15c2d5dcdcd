"""The Rasa 3.6.21 that the local node runs for the rasa/rasa and rasa/rasa-sdk images.

Rasa 3.6 needs Python < 3.11, so it lives in its own Python 3.10 venv, built once (about
2-3 minutes, 2.7 GB) and cached under ``${BOTENV_CACHE:-~/.cache/botenv}/rasa-3.6.21/venv``.
``rasa_venv()`` builds or finds it, ``rasa_python()`` is its interpreter.

The Python 3.10 interpreter is $BOTENV_RASA_PYTHON if set, else ``python3.10`` on PATH,
else one of pyenv's 3.10.x versions; without one, RasaHarnessError says how to get one.
Only the standard library is imported here.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from botenv.local.processes import tail_text

RASA_VERSION = "3.6.21"
PYTHON_SERIES = "3.10"
# Bump when the way the venv or the models are made changes (forces a rebuild/retrain).
HARNESS_ID = "1"

# The whole dependency set of rasa==3.6.21 on Linux x86_64 / CPython 3.10 as resolved and
# verified here (import, `rasa train`, `rasa run`, REST channel, HTTP model pulling).
# Rasa's own metadata pins most of its stack (setuptools 70.3, protobuf 4.23.3, pydantic
# <1.10.10, sanic 21.12, tensorflow 2.12.0, SQLAlchemy 1.4, numpy <1.25, packaging <21) and
# that resolution started cleanly, so no pin beyond Rasa's own was needed to start it. The
# list freezes the rest too: several transitive dependencies are unbounded (jax/jaxlib via
# tensorflow, huggingface_hub via skops, urllib3, certifi, cryptography, fsspec, pillow, ...)
# and a future release of any of them could break an import on Python 3.10 / numpy 1.23.
CONSTRAINTS: tuple[str, ...] = (
    "absl-py==1.4.0",
    "aio-pika==8.2.3",
    "aiofiles==25.1.0",
    "aiogram==2.15",
    "aiohttp==3.9.5",
    "aiohttp-retry==2.9.1",
    "aiormq==6.4.2",
    "aiosignal==1.4.0",
    "anyio==4.16.0",
    "APScheduler==3.9.1.post1",
    "astunparse==1.6.3",
    "async-timeout==4.0.3",
    "attrs==22.1.0",
    "babel==2.18.0",
    "bidict==0.23.1",
    "boto3==1.44.5",
    "botocore==1.44.5",
    "CacheControl==0.12.14",
    "certifi==2026.10.18",
    "cffi==2.1.1",
    "charset-normalizer==3.5.2",
    "click==8.5.1",
    "cloudpickle==3.1.2",
    "colorclass==2.2.2",
    "coloredlogs==15.0.1",
    "colorhash==1.2.1",
    "confluent-kafka==2.16.1",
    "cryptography==50.0.2",
    "cycler==0.12.1",
    "dask==2022.10.2",
    "dnspython==2.3.0",
    "docopt==0.6.2",
    "exceptiongroup==1.3.1",
    "fbmessenger==6.0.0",
    "filelock==4.1.0",
    "fire==0.7.1",
    "flatbuffers==25.12.19",
    "fonttools==4.65.0",
    "frozenlist==1.8.0",
    "fsspec==2026.9.0",
    "future==1.0.0",
    "gast==0.4.0",
    "google-auth==2.62.2",
    "google-auth-oauthlib==1.0.0",
    "google-pasta==0.2.0",
    "greenlet==3.5.6",
    "grpcio==1.85.1",
    "h11==0.16.0",
    "h5py==3.16.0",
    "hf-xet==1.8.0",
    "httpcore2==2.14.0",
    "httptools==0.9.0",
    "httpx2==2.14.0",
    "huggingface_hub==2.4.0",
    "humanfriendly==10.0",
    "idna==3.20",
    "jax==0.4.30",
    "jaxlib==0.4.30",
    "jmespath==1.1.0",
    "joblib==1.6.0",
    "jsonpickle==3.0.4",
    "jsonschema==4.17.3",
    "keras==2.12.0",
    "kiwisolver==1.5.1",
    "libclang==18.1.1",
    "locket==1.0.0",
    "Markdown==3.10.3",
    "MarkupSafe==3.0.4",
    "matplotlib==3.5.3",
    "mattermostwrapper==2.2",
    "ml_dtypes==0.5.4",
    "msgpack==1.2.4",
    "multidict==5.2.0",
    "networkx==2.6.3",
    "numpy==1.23.5",
    "oauthlib==4.0.1",
    "opt_einsum==3.4.0",
    "packaging==20.9",
    "pamqp==3.2.1",
    "partd==1.4.2",
    "pillow==12.3.0",
    "pluggy==1.7.0",
    "portalocker==2.10.1",
    "prompt-toolkit==3.0.28",
    "propcache==0.5.4",
    "protobuf==4.23.3",
    "psycopg2-binary==2.9.13",
    "pyasn1==0.6.5",
    "pyasn1_modules==0.4.2",
    "pycparser==3.11",
    "pydantic==1.10.9",
    "pydot==1.4.2",
    "PyJWT==2.15.1",
    "pykwalify==1.8.0",
    "pymongo==4.3.3",
    "pyparsing==3.3.3",
    "pyrsistent==0.20.0",
    "python-crfsuite==0.9.12",
    "python-dateutil==2.8.2",
    "python-engineio==4.15.1",
    "python-socketio==5.18.1",
    "pytz==2022.7.1",
    "PyYAML==6.0.3",
    "questionary==1.10.0",
    "randomname==0.1.5",
    "rasa-sdk==3.6.2",
    "redis==4.6.0",
    "regex==2022.10.31",
    "requests==2.34.2",
    "requests-oauthlib==2.0.0",
    "requests-toolbelt==1.0.0",
    "rocketchat-API==1.30.0",
    "ruamel.yaml==0.17.21",
    "ruamel.yaml.clib==0.2.15",
    "s3transfer==0.19.3",
    "safetensors==0.4.5",
    "sanic==21.12.2",
    "Sanic-Cors==2.0.1",
    "sanic-jwt==1.8.0",
    "sanic-routing==0.7.2",
    "scikit-learn==1.1.3",
    "scipy==1.10.1",
    "sentry-sdk==1.14.0",
    "setuptools==70.3.0",
    "simple-websocket==1.1.0",
    "six==1.17.0",
    "sklearn-crfsuite==0.3.6",
    "skops==0.9.0",
    "slack_sdk==3.47.0",
    "SQLAlchemy==1.4.54",
    "structlog==23.3.0",
    "structlog-sentry==2.1.0",
    "tabulate==0.10.0",
    "tarsafe==0.0.4",
    "tensorboard==2.12.3",
    "tensorboard-data-server==0.7.2",
    "tensorflow==2.12.0",
    "tensorflow-estimator==2.12.0",
    "tensorflow-hub==0.13.0",
    "tensorflow-io-gcs-filesystem==0.32.0",
    "tensorflow-text==2.12.0",
    "termcolor==3.3.0",
    "terminaltables==3.1.10",
    "threadpoolctl==3.8.0",
    "tomli==2.5.0",
    "toolz==1.2.0",
    "tqdm==4.70.1",
    "truststore==0.10.5",
    "twilio==8.2.2",
    "typing-utils==0.1.0",
    "typing_extensions==4.16.0",
    "tzlocal==5.4.5",
    "ujson==5.13.0",
    "urllib3==2.8.0",
    "uvloop==0.23.0",
    "wcwidth==0.9.4",
    "webexteamssdk==1.6.1",
    "websockets==10.4",
    "Werkzeug==3.1.9",
    "wheel==0.45.1",
    "wrapt==1.14.2",
    "wsproto==1.3.2",
    "yarl==1.25.1",
)

# Quiet, private, reproducible Rasa processes.
BASE_ENV = {
    "RASA_TELEMETRY_ENABLED": "false",
    "PYTHONUNBUFFERED": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
}
# Variables of the calling (3.11) interpreter that would confuse the 3.10 venv.
_DROP_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__")


class RasaHarnessError(RuntimeError):
    """The Rasa venv could not be built, a model trained, or a server started/reached."""


def _say(message: str) -> None:
    print(f"[botenv rasa] {message}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    """``${BOTENV_CACHE:-~/.cache/botenv}/rasa-3.6.21``."""
    cache = os.environ.get("BOTENV_CACHE") or str(Path.home() / ".cache" / "botenv")
    return Path(cache).expanduser() / f"rasa-{RASA_VERSION}"


def _clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
    env.update(BASE_ENV)
    if extra:
        env.update(extra)
    return env


# -- the Python 3.10 interpreter ---------------------------------------------------------


def _probe_python(candidate: str) -> tuple[str | None, str]:
    """(real executable, "") when candidate is a usable CPython 3.10, else (None, why)."""
    code = (
        "import sys, venv, ensurepip; print(sys.executable); "
        "print('{}.{}'.format(*sys.version_info[:2]))"
    )
    try:
        proc = subprocess.run(
            [candidate, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            env=_clean_env(),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{candidate}: {exc}"
    if proc.returncode != 0:
        return None, f"{candidate}: exit {proc.returncode}: {tail_text(proc.stderr, 3).strip()}"
    out = proc.stdout.split()
    want = PYTHON_SERIES
    if len(out) < 2 or out[-1] != want:
        return None, f"{candidate}: is Python {out[-1] if out else '?'}, not {want}"
    return out[-2], ""


def _pyenv_candidates() -> Iterator[str]:
    pyenv = shutil.which("pyenv")
    want = PYTHON_SERIES
    versions: list[str] = []
    if pyenv:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            listed = subprocess.run(
                [pyenv, "versions", "--bare"], capture_output=True, text=True, timeout=30
            ).stdout.split()
            versions = [v for v in listed if re.fullmatch(rf"{re.escape(want)}\.\d+", v)]
        versions.sort(key=lambda v: [int(p) for p in v.split(".")], reverse=True)
        if "3.10.13" in versions:  # the version this image ships: try it first
            versions.remove("3.10.13")
            versions.insert(0, "3.10.13")
        for version in versions or ["3.10.13"]:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                path = subprocess.run(
                    [pyenv, "which", "python"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    env={**os.environ, "PYENV_VERSION": version},
                ).stdout.strip()
                if path:
                    yield path
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    yield from (
        str(p) for p in sorted((root / "versions").glob(f"{want}.*/bin/python"), reverse=True)
    )


def find_python310() -> str:
    """Path of a CPython 3.10 interpreter that can make venvs; raises if there is none."""
    tried: list[str] = []
    own = os.environ.get("BOTENV_RASA_PYTHON")
    candidates: list[str] = [own] if own else []
    which = shutil.which("python3.10")
    if which:
        candidates.append(which)
    candidates.extend(_pyenv_candidates())
    candidates.append("/usr/bin/python3.10")
    seen: set[str] = set()
    for candidate in candidates:
        if candidate in seen:
            continue
        seen.add(candidate)
        if candidate != own and not os.path.exists(candidate):
            continue
        exe, why = _probe_python(candidate)
        if exe:
            return exe
        tried.append(why)
        if own:
            raise RasaHarnessError(f"BOTENV_RASA_PYTHON is not usable: {why}")
    raise RasaHarnessError(
        f"Rasa {RASA_VERSION} needs Python 3.10 (it does not support 3.11+) and none was "
        "found: set BOTENV_RASA_PYTHON, put python3.10 on PATH, or `pyenv install 3.10.13`."
        + ("\nTried:\n  " + "\n  ".join(tried) if tried else "")
    )


# -- the venv ----------------------------------------------------------------------------


def _stamp() -> dict[str, str]:
    digest = hashlib.sha256("\n".join(CONSTRAINTS).encode()).hexdigest()[:16]
    return {"rasa": RASA_VERSION, "harness": HARNESS_ID, "constraints": digest}


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _venv_ok(venv: Path) -> bool:
    try:
        stamp = json.loads((venv / "botenv-stamp.json").read_text())
    except (OSError, ValueError):
        return False
    return stamp == _stamp() and os.access(_venv_python(venv), os.X_OK)


@contextlib.contextmanager
def _locked(path: Path, waiting_message: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say(waiting_message)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_streaming(
    cmd: Sequence[str],
    log: Path,
    what: str,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run cmd, copying its output to stderr and to log; raise with the tail on failure."""
    tail: deque[str] = deque(maxlen=40)
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
            env=dict(env) if env is not None else _clean_env(),
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            tail.append(line.rstrip("\n"))
            if not line.startswith("WARNING: Location"):  # pip.conf's local indexes: noise
                print(f"  {line.rstrip()}", file=sys.stderr, flush=True)
        rc = proc.wait()
    if rc != 0:
        raise RasaHarnessError(
            f"{what} failed (exit {rc}); full log in {log}; its last lines:\n" + "\n".join(tail)
        )


def venv_cached() -> bool:
    """Whether rasa_venv() finds a complete venv (no build)."""
    return _venv_ok(cache_root() / "venv")


def rasa_venv() -> Path:
    """The cached Python 3.10 venv with rasa==3.6.21, built on first use.

    The build happens in a temporary directory beside the cache and is renamed into place
    when complete and verified, under a file lock so parallel test processes build once.
    Everything is run as ``venv/bin/python -m ...`` (console scripts would carry the
    temporary directory's path in their shebangs).
    """
    root = cache_root()
    venv = root / "venv"
    if _venv_ok(venv):
        return venv
    with _locked(root / "venv.lock", f"waiting for another process building {venv}"):
        if _venv_ok(venv):
            return venv
        for stale in root.glob("venv.building-*"):  # left by an interrupted build
            shutil.rmtree(stale, ignore_errors=True)
        python = find_python310()
        began = time.monotonic()
        _say(
            f"building the Rasa {RASA_VERSION} venv in {venv} with {python} "
            "(once; about 2-3 minutes and 2.7 GB)"
        )
        build = Path(tempfile.mkdtemp(prefix="venv.building-", dir=root))
        log = root / "venv-build.log"
        log.write_text("")
        try:
            _run_streaming([python, "-m", "venv", str(build)], log, "creating the venv")
            constraints = build / "botenv-constraints.txt"
            constraints.write_text("\n".join(CONSTRAINTS) + "\n")
            _run_streaming(
                [
                    str(_venv_python(build)),
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--no-input",
                    "--progress-bar",
                    "off",
                    "-c",
                    str(constraints),
                    f"rasa=={RASA_VERSION}",
                ],
                log,
                f"pip install rasa=={RASA_VERSION}",
            )
            _run_streaming(
                [str(_venv_python(build)), "-m", "rasa", "--version"],
                log,
                "the Rasa smoke test (python -m rasa --version)",
            )
            (build / "botenv-stamp.json").write_text(json.dumps(_stamp()))
            if venv.exists():  # an older harness's venv: replace it
                old = Path(tempfile.mkdtemp(prefix="venv.building-old-", dir=root))
                venv.rename(old / "venv")
                shutil.rmtree(old, ignore_errors=True)
            build.rename(venv)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
        _say(f"Rasa venv ready in {time.monotonic() - began:.0f} s: {venv}")
        return venv


def rasa_python() -> Path:
    """The venv's interpreter (run Rasa as ``rasa_python() -m rasa ...``)."""
    return _venv_python(rasa_venv())
