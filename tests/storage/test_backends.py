"""Every storage backend against a real store: moto (S3), fake-gcs-server (GCS), Azurite
(Azure Blob), a local HTTP origin, and a local directory.

Credentials are checked where the store checks them: moto with IAM auth switched on,
Azurite (shared-key signatures), the HTTP origin (a bearer token), the local directory
(file permissions, when not running as root). fake-gcs-server accepts any credentials or
none, so GCS has no wrong-credentials test: it would pass without testing anything.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import io
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from botenv.api.tag import StorageSpec
from botenv.storage import AccessDenied, ObjectNotFound, Storage, StorageUnavailable, factory
from botenv.storage.base import CHUNK
from botenv.storage.factory import key_for
from botenv.storage.policy import UNRESTRICTED
from tests.support.emulators import Azurite, FakeGCSServer, HTTPOrigin, MotoServer

pytestmark = pytest.mark.storage

BUCKET = "rasa-models"
PREFIX = "tenants/acme/"
# A dead store must fail fast; this bound only guards against hangs (they take minutes).
HANG_GUARD = 10.0
SECRET_KEYS = {"AWS_SECRET_ACCESS_KEY", "AZURE_ACCOUNT_KEY", "token"}


def storage_for(spec, credentials):  # noqa: ANN001, ANN201
    """The backends themselves, tested here with no storage policy in the way (the policy
    has tests of its own: tests/unit/test_storage_policy.py, tests/cluster)."""
    return factory.storage_for(spec, credentials, policy=UNRESTRICTED)


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def new_model() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.tar.gz"


@pytest.fixture(scope="module")
def small() -> bytes:
    return os.urandom(300 * 1024)


@pytest.fixture(scope="module")
def large() -> bytes:
    # Several CHUNKs and more than one ranged GET for the GCS and Azure backends.
    return os.urandom(9 * CHUNK + 12345)


# -- one harness per store: how to prepare it, upload to it, break it ----------------------


class Backend:
    name = ""
    has_md5 = True  # whether stat reports the store's MD5 for a plain upload

    spec: StorageSpec
    credentials: dict[str, str]

    def storage(self, credentials: dict[str, str] | None = None) -> Storage:
        return storage_for(self.spec, self.credentials if credentials is None else credentials)

    def key(self, model: str) -> str:
        return key_for(self.spec, model)

    def prepare(self) -> None:
        """Create the bucket (again after a restart: the emulators keep data in memory)."""

    def upload(self, model: str, data: bytes) -> str:
        """Store data as model; return the digest stat must report."""
        raise NotImplementedError

    def bad_credentials(self) -> dict[str, str]:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError


class S3(Backend):
    name = "s3"

    def __init__(self, moto: MotoServer) -> None:
        import boto3
        from botocore.config import Config

        self.moto = moto
        self.spec = StorageSpec(
            provider="s3", bucket=BUCKET, prefix=PREFIX, endpoint=moto.url, region="eu-west-1"
        )
        self.credentials = moto.credentials
        self.admin = boto3.session.Session().client(
            "s3",
            endpoint_url=moto.url,
            region_name="eu-west-1",
            aws_access_key_id=moto.access_key_id,
            aws_secret_access_key=moto.secret_access_key,
            config=Config(s3={"addressing_style": "path"}),
        )

    def prepare(self) -> None:
        existing = [b["Name"] for b in self.admin.list_buckets().get("Buckets", [])]
        if BUCKET not in existing:
            self.admin.create_bucket(
                Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
            )

    def upload(self, model: str, data: bytes) -> str:
        etag = self.admin.put_object(Bucket=BUCKET, Key=self.key(model), Body=data)["ETag"]
        assert etag.strip('"') == md5_hex(data)  # moto's ETag is the MD5, as S3's
        return md5_hex(data)

    def bad_credentials(self) -> dict[str, str]:
        # The real key id with a wrong secret: refused for its signature.
        return {**self.credentials, "AWS_SECRET_ACCESS_KEY": "not-the-secret-0123456789"}

    def stop(self) -> None:
        self.moto.stop()

    def start(self) -> None:
        self.moto.start()  # same seeded IAM keys as before the restart
        self.prepare()


class GCS(Backend):
    name = "gcs"

    def __init__(self, server: FakeGCSServer) -> None:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        self.server = server
        self.spec = StorageSpec(provider="gcs", bucket=BUCKET, prefix=PREFIX, endpoint=server.url)
        self.credentials = {}
        self.admin = storage.Client(
            project="test",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": server.url},
        )

    def prepare(self) -> None:
        if self.admin.lookup_bucket(BUCKET) is None:
            self.admin.create_bucket(BUCKET)

    def upload(self, model: str, data: bytes) -> str:
        blob = self.admin.bucket(BUCKET).blob(self.key(model))
        blob.upload_from_string(data, content_type="application/gzip")
        assert base64.b64decode(blob.md5_hash).hex() == md5_hex(data)
        return md5_hex(data)

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server.start()
        self.prepare()


class Azure(Backend):
    name = "azure"

    def __init__(self, azurite: Azurite) -> None:
        from azure.storage.blob import BlobServiceClient

        self.azurite = azurite
        self.spec = StorageSpec(
            provider="azure", bucket=BUCKET, prefix=PREFIX, endpoint=azurite.blob_endpoint
        )
        self.credentials = {
            "AZURE_ACCOUNT_NAME": azurite.account,
            "AZURE_ACCOUNT_KEY": azurite.key,
        }
        self.admin = BlobServiceClient.from_connection_string(azurite.connection_string)

    def prepare(self) -> None:
        container = self.admin.get_container_client(BUCKET)
        if not container.exists():
            container.create_container()

    def upload(self, model: str, data: bytes) -> str:
        blob = self.admin.get_blob_client(BUCKET, self.key(model))
        return blob.upload_blob(data, overwrite=True)["etag"].strip('"')

    def bad_credentials(self) -> dict[str, str]:
        wrong = base64.b64encode(hashlib.sha512(b"not the key").digest()).decode()
        return {"AZURE_ACCOUNT_NAME": self.azurite.account, "AZURE_ACCOUNT_KEY": wrong}

    def stop(self) -> None:
        self.azurite.stop()

    def start(self) -> None:
        self.azurite.start()
        self.prepare()


class HTTP(Backend):
    name = "http"
    has_md5 = False  # an origin's ETag is opaque (this one is mtime-size, as nginx's)

    def __init__(self, origin: HTTPOrigin) -> None:
        self.origin = origin
        self.spec = StorageSpec(provider="http", url=f"{origin.url}/models", prefix=PREFIX)
        self.credentials = {"token": origin.token or ""}

    def upload(self, model: str, data: bytes) -> str:
        path = self.origin.put(f"models/{self.spec.object_key(model)}", data)
        st = path.stat()
        return f"{st.st_mtime_ns:x}-{st.st_size:x}"

    def bad_credentials(self) -> dict[str, str]:
        return {"token": "not-the-token"}

    def stop(self) -> None:
        self.origin.stop()

    def start(self) -> None:
        self.origin.start()


class Local(Backend):
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.spec = StorageSpec(provider="local", path=str(root), prefix=PREFIX)
        self.credentials = {}

    def upload(self, model: str, data: bytes) -> str:
        path = self.root / self.spec.object_key(model)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return md5_hex(data)

    def bad_credentials(self) -> dict[str, str]:
        raise NotImplementedError("see test_local_permission_denied")

    # "Stopped" for a directory: its volume is gone (unmounted) and comes back.
    def stop(self) -> None:
        self.root.rename(self.root.with_name(self.root.name + ".away"))

    def start(self) -> None:
        self.root.with_name(self.root.name + ".away").rename(self.root)


ALL = ["s3", "gcs", "azure", "http", "local"]


@pytest.fixture(scope="module")
def local_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("local-models") / "models"


@pytest.fixture
def backend(request: pytest.FixtureRequest, local_root: Path) -> Iterator[Backend]:
    # Only the emulators of the selected tests start (e.g. `-k local` starts none).
    name = request.param
    if name == "s3":
        b: Backend = S3(request.getfixturevalue("moto_server"))
    elif name == "gcs":
        b = GCS(request.getfixturevalue("gcs_server"))
    elif name == "azure":
        b = Azure(request.getfixturevalue("azurite"))
    elif name == "http":
        b = HTTP(request.getfixturevalue("http_origin"))
    else:
        local_root.mkdir(parents=True, exist_ok=True)
        b = Local(local_root)
    b.prepare()
    yield b


# -- the contract, for every backend -------------------------------------------------------


@pytest.mark.parametrize("backend", ALL, indirect=True)
def test_stat_reports_digest_size_and_md5(backend: Backend, small: bytes) -> None:
    model = new_model()
    digest = backend.upload(model, small)
    info = backend.storage().stat(backend.key(model))
    assert info.key == backend.key(model)
    assert info.digest == digest
    assert info.size == len(small)
    assert info.md5 == (md5_hex(small) if backend.has_md5 else None)


@pytest.mark.parametrize("backend", ALL, indirect=True)
def test_open_streams_exact_bytes_in_chunks(backend: Backend, large: bytes) -> None:
    model = new_model()
    backend.upload(model, large)
    storage = backend.storage()
    chunks = list(storage.open(backend.key(model)))
    assert len(chunks) >= len(large) // CHUNK  # streamed, not one blob in memory
    assert max(len(c) for c in chunks) <= CHUNK
    assert b"".join(chunks) == large
    info = storage.stat(backend.key(model))
    assert info.size == len(large)
    if backend.has_md5:
        assert info.md5 == md5_hex(large)


@pytest.mark.parametrize("backend", ALL, indirect=True)
def test_missing_object_is_not_found(backend: Backend) -> None:
    storage = backend.storage()
    model = new_model()
    with pytest.raises(ObjectNotFound) as stat_err:
        storage.stat(backend.key(model))
    with pytest.raises(ObjectNotFound):
        list(storage.open(backend.key(model)))
    # The message says where: provider, and the key.
    assert backend.name in str(stat_err.value)
    assert model in str(stat_err.value)


@pytest.mark.parametrize("backend", ["s3", "azure", "http"], indirect=True)
def test_wrong_credentials_are_access_denied(backend: Backend, small: bytes) -> None:
    model = new_model()
    backend.upload(model, small)
    bad = backend.bad_credentials()
    storage = backend.storage(bad)
    with pytest.raises(AccessDenied) as err:
        storage.stat(backend.key(model))
    with pytest.raises(AccessDenied):
        list(storage.open(backend.key(model)))
    for name, value in {**backend.credentials, **bad}.items():
        if name in SECRET_KEYS:
            assert value not in str(err.value)  # never a secret in a message
    # And the right credentials still work, so it was the credentials.
    assert backend.storage().stat(backend.key(model)).size == len(small)


@pytest.mark.parametrize("backend", ["s3", "http"], indirect=True)
def test_missing_credentials_are_access_denied(
    backend: Backend, small: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # S3 without keys uses the default chain: empty here, so no credentials at all.
    for var in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    model = new_model()
    backend.upload(model, small)
    with pytest.raises(AccessDenied):
        backend.storage({}).stat(backend.key(model))


@pytest.mark.parametrize("backend", ALL, indirect=True)
def test_store_stopped_then_back(backend: Backend, small: bytes) -> None:
    storage = backend.storage()
    model = new_model()
    key = backend.key(model)
    backend.upload(model, small)
    assert storage.stat(key).size == len(small)

    backend.stop()
    try:
        began = time.monotonic()
        with pytest.raises(StorageUnavailable) as err:
            storage.stat(key)
        stat_s = time.monotonic() - began
        began = time.monotonic()
        with pytest.raises(StorageUnavailable):
            list(storage.open(key))
        open_s = time.monotonic() - began
    finally:
        backend.start()
    print(
        f"{backend.name} stopped: stat failed in {stat_s:.2f} s, open in {open_s:.2f} s: "
        f"{err.value}"
    )
    assert stat_s < HANG_GUARD and open_s < HANG_GUARD
    assert backend.name in str(err.value)

    # The same storage object works again (in-memory emulators lost the data: re-upload).
    digest = backend.upload(model, small)
    info = storage.stat(key)
    assert (info.digest, info.size) == (digest, len(small))
    assert b"".join(storage.open(key)) == small


@pytest.mark.parametrize("backend", ["s3", "gcs", "azure", "http"], indirect=True)
def test_store_stopped_mid_stream(backend: Backend) -> None:
    # Larger than every socket buffer and ranged GET on the way: the cut must show.
    data = os.urandom(24 * CHUNK)
    model = new_model()
    backend.upload(model, data)
    stream = backend.storage().open(backend.key(model))
    received = len(next(stream))
    backend.stop()
    try:
        began = time.monotonic()
        with pytest.raises(StorageUnavailable):
            for chunk in stream:
                received += len(chunk)
        failed_s = time.monotonic() - began
    finally:
        backend.start()
    assert received < len(data)  # never a silently short model
    assert failed_s < HANG_GUARD


@pytest.fixture
def hung_endpoint() -> Iterator[str]:
    """An endpoint that accepts connections and never answers (a wedged server)."""
    server = socket.create_server(("127.0.0.1", 0), backlog=64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


@pytest.mark.parametrize("provider", ["s3", "gcs", "azure", "http"])
def test_hung_endpoint_times_out(
    provider: str, hung_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real read timeouts are seconds (a hung store fails a stat in ~5-11 s); shortened
    # here to keep the suite fast. What is tested: every request is bounded by them.
    import urllib3

    from botenv.storage import azure, gcs, http, s3

    monkeypatch.setattr(s3, "READ_TIMEOUT", 0.5)
    monkeypatch.setattr(gcs, "TIMEOUT", (1.0, 0.5))
    monkeypatch.setattr(gcs, "RETRY", gcs.RETRY.with_timeout(0.5))
    monkeypatch.setattr(azure, "READ_TIMEOUT", 0.5)
    monkeypatch.setattr(http, "TIMEOUT", urllib3.Timeout(connect=1.0, read=0.5))
    spec = {
        "s3": StorageSpec(provider="s3", bucket=BUCKET, endpoint=hung_endpoint),
        "gcs": StorageSpec(provider="gcs", bucket=BUCKET, endpoint=hung_endpoint),
        "azure": StorageSpec(
            provider="azure", bucket=BUCKET, endpoint=f"{hung_endpoint}/{Azurite.account}"
        ),
        "http": StorageSpec(provider="http", url=hung_endpoint),
    }[provider]
    credentials = {
        "AWS_ACCESS_KEY_ID": "id",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AZURE_ACCOUNT_NAME": Azurite.account,
        "AZURE_ACCOUNT_KEY": Azurite.key,
    }
    storage = storage_for(spec, credentials)
    began = time.monotonic()
    with pytest.raises(StorageUnavailable):
        storage.stat(key_for(spec, "m.tar.gz"))
    assert time.monotonic() - began < 5.0


# -- backend specifics ----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["s3"], indirect=True)
def test_s3_multipart_etag_is_no_md5(backend: Backend, large: bytes) -> None:
    from boto3.s3.transfer import TransferConfig

    assert isinstance(backend, S3)
    model = new_model()
    key = backend.key(model)
    config = TransferConfig(multipart_threshold=5 * CHUNK, multipart_chunksize=5 * CHUNK)
    backend.admin.upload_fileobj(io.BytesIO(large), BUCKET, key, Config=config)
    info = backend.storage().stat(key)
    assert info.digest.endswith("-2")  # two parts
    assert info.md5 is None
    assert b"".join(backend.storage().open(key)) == large


@pytest.mark.parametrize("backend", ["azure"], indirect=True)
def test_azure_connection_string(backend: Backend, small: bytes) -> None:
    assert isinstance(backend, Azure)
    model = new_model()
    digest = backend.upload(model, small)
    conn = {"AZURE_STORAGE_CONNECTION_STRING": backend.azurite.connection_string}
    # The endpoint from the connection string itself ...
    no_endpoint = StorageSpec(provider="azure", bucket=BUCKET, prefix=PREFIX)
    assert storage_for(no_endpoint, conn).stat(backend.key(model)).digest == digest
    # ... or spec.endpoint with the string's account and key.
    assert storage_for(backend.spec, conn).stat(backend.key(model)).digest == digest


class _TokenEndpoint(http.server.BaseHTTPRequestHandler):
    """Google's OAuth token endpoint, as far as a service-account key sees it."""

    grants: list[str] = []
    refuse = False

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        type(self).grants.append(body)
        if self.refuse:
            status, reply = 400, {"error": "invalid_grant", "error_description": "bad key"}
        else:
            status, reply = 200, {"access_token": "t0k", "expires_in": 3600, "token_type": "Bearer"}
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.mark.parametrize("refuse", [False, True])
@pytest.mark.parametrize("backend", ["gcs"], indirect=True)
def test_gcs_service_account_key(backend: Backend, small: bytes, refuse: bool) -> None:
    """credentials.json is used: its JWT grant goes to the key's token_uri (a local one
    here), and a refused grant is AccessDenied. fake-gcs-server itself checks no token."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    handler = type("Tokens", (_TokenEndpoint,), {"grants": [], "refuse": refuse})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        pem = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            .private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            .decode()
        )
        key = {
            "type": "service_account",
            "project_id": "botenv-test",
            "private_key_id": "k1",
            "private_key": pem,
            "client_email": "reader@botenv-test.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": f"http://127.0.0.1:{server.server_address[1]}/token",
        }
        model = new_model()
        digest = backend.upload(model, small)
        storage = backend.storage({"credentials.json": json.dumps(key)})
        if refuse:
            with pytest.raises(AccessDenied) as err:
                storage.stat(backend.key(model))
            assert "BEGIN PRIVATE KEY" not in str(err.value)
        else:
            assert storage.stat(backend.key(model)).digest == digest
        assert len(handler.grants) >= 1
        assert (
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
            in (handler.grants[0])
        )
    finally:
        server.shutdown()
        server.server_close()


def test_gcs_malformed_service_account_key() -> None:
    spec = StorageSpec(provider="gcs", bucket=BUCKET)
    secret = '{"type": "service_account", "private_key": "s3cr3t-value"}'
    with pytest.raises(AccessDenied) as err:
        storage_for(spec, {"credentials.json": secret})
    assert "credentials.json" in str(err.value)
    assert "s3cr3t" not in str(err.value)


@pytest.mark.parametrize(
    ("mode", "expect"), [("strong", "{tag}"), ("weak", "W/{tag}"), ("none", None)]
)
def test_http_digest_forms(tmp_path: Path, small: bytes, mode: str, expect: str | None) -> None:
    with HTTPOrigin(tmp_path, etag=mode) as origin:
        path = origin.put("m.tar.gz", small)
        spec = StorageSpec(provider="http", url=origin.url + "/")
        info = storage_for(spec, {}).stat(key_for(spec, "m.tar.gz"))
        assert info.size == len(small)
        st = path.stat()
        if expect is not None:
            assert info.digest == expect.format(tag=f"{st.st_mtime_ns:x}-{st.st_size:x}")
        else:
            # No ETag: a digest of Last-Modified + Content-Length, changing with them.
            assert info.digest.startswith("lm-")
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
            assert storage_for(spec, {}).stat(key_for(spec, "m.tar.gz")).digest != info.digest


def test_http_no_token_is_access_denied(http_origin: HTTPOrigin, small: bytes) -> None:
    backend = HTTP(http_origin)
    model = new_model()
    backend.upload(model, small)
    with pytest.raises(AccessDenied, match="HTTP 401"):
        backend.storage({}).stat(backend.key(model))


def test_local_md5_is_cached_until_the_file_changes(
    tmp_path: Path, small: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botenv.storage.local import LocalStorage

    path = tmp_path / "m.tar.gz"
    path.write_bytes(small)
    storage = LocalStorage(str(tmp_path))
    hashed: list[str] = []
    real_hash = LocalStorage._hash
    monkeypatch.setattr(
        LocalStorage, "_hash", staticmethod(lambda p: hashed.append(p) or real_hash(p))
    )
    first = storage.stat("m.tar.gz")
    assert storage.stat(str(path)) == first  # absolute key inside the root: same file
    assert len(hashed) == 1
    path.write_bytes(small[::-1])
    assert storage.stat("m.tar.gz").digest == md5_hex(small[::-1])
    assert len(hashed) == 2


@pytest.mark.parametrize(
    "key", ["../secret.tar.gz", "a/../../secret.tar.gz", "/etc/passwd", "a/../../../etc/passwd"]
)
def test_local_refuses_keys_outside_the_directory(tmp_path: Path, key: str) -> None:
    (tmp_path / "secret.tar.gz").write_bytes(b"outside")
    root = tmp_path / "models"
    root.mkdir()
    storage = storage_for(StorageSpec(provider="local", path=str(root)), {})
    with pytest.raises(ObjectNotFound):
        storage.stat(key)
    with pytest.raises(ObjectNotFound):
        storage.open(key)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_local_permission_denied(tmp_path: Path, small: bytes) -> None:
    path = tmp_path / "m.tar.gz"
    path.write_bytes(small)
    path.chmod(0)
    storage = storage_for(StorageSpec(provider="local", path=str(tmp_path)), {})
    try:
        with pytest.raises(AccessDenied):
            storage.stat("m.tar.gz")
        with pytest.raises(AccessDenied):
            storage.open("m.tar.gz")
    finally:
        path.chmod(0o600)


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        (StorageSpec(provider="s3", bucket="b", prefix="/t/acme/"), "t/acme/m.tar.gz"),
        (StorageSpec(provider="gcs", bucket="b"), "m.tar.gz"),
        (StorageSpec(provider="azure", bucket="c", prefix="p"), "p/m.tar.gz"),
        (
            StorageSpec(provider="http", url="https://h/models", prefix="p/"),
            "https://h/models/p/m.tar.gz",
        ),
        (StorageSpec(provider="http", url="https://h/models/"), "https://h/models/m.tar.gz"),
        (StorageSpec(provider="local", path="/models/", prefix="p"), "/models/p/m.tar.gz"),
    ],
)
def test_key_for(spec: StorageSpec, key: str) -> None:
    assert key_for(spec, "m.tar.gz") == key


def test_storage_for_keeps_one_backend_per_spec_and_credentials() -> None:
    spec = StorageSpec(provider="http", url="http://127.0.0.1:9/models")
    first = storage_for(spec, {"token": "a"})
    assert storage_for(spec, {"token": "a"}) is first
    assert storage_for(spec, {"token": "b"}) is not first  # a rotated Secret: a new client
    other = storage_for(StorageSpec(provider="http", url="http://127.0.0.1:9/other"), {})
    assert other is not first
