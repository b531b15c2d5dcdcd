"""put(): every writable backend against a real store (moto, fake-gcs-server, Azurite, a
local directory): the round trip through put, stat and open, files sent in parts, refused
credentials, a store that is not there, and the verification after the write.

The verification is tested with a file that changes after it was hashed and before it
was sent (a training process still writing, a disk flipping a bit): what the store holds
is then not what was hashed, which only the check after the write can notice.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import importlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from botenv.api.tag import StorageSpec
from botenv.local.processes import free_port
from botenv.storage import (
    AccessDenied,
    DigestMismatch,
    ObjectNotFound,
    ReadOnlyStorage,
    StorageUnavailable,
    factory,
)
from botenv.storage.base import CHUNK, LocalFile
from botenv.storage.factory import key_for
from botenv.storage.policy import UNRESTRICTED
from tests.storage.test_backends import (
    BUCKET,
    GCS,
    HANG_GUARD,
    S3,
    SECRET_KEYS,
    Azure,
    Backend,
    Local,
    _TokenEndpoint,
    md5_hex,
    new_model,
)
from tests.support.emulators import Azurite

pytestmark = pytest.mark.storage

WRITABLE = ["s3", "gcs", "azure", "local"]


def storage_for(spec, credentials):  # noqa: ANN001, ANN201
    """The backends themselves, tested here with no storage policy in the way (the policy
    has tests of its own: tests/unit/test_storage_policy.py, tests/cluster)."""
    return factory.storage_for(spec, credentials, policy=UNRESTRICTED)


@pytest.fixture
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    name = request.param
    if name == "s3":
        b: Backend = S3(request.getfixturevalue("moto_server"))
    elif name == "gcs":
        b = GCS(request.getfixturevalue("gcs_server"))
    elif name == "azure":
        b = Azure(request.getfixturevalue("azurite"))
    else:
        root = tmp_path / "models"
        root.mkdir()
        b = Local(root)
    b.prepare()
    return b


def model_file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "upload" / "model.tar.gz"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


def multipart_etag(data: bytes, part: int) -> str:
    """MD5(MD5(part 1) + MD5(part 2) + ...)-N, as S3 (and moto) make a multipart ETag."""
    digests = b"".join(hashlib.md5(data[i : i + part]).digest() for i in range(0, len(data), part))
    return f"{hashlib.md5(digests).hexdigest()}-{len(range(0, len(data), part))}"


def read_all(backend: Backend, key: str) -> bytes:
    return b"".join(backend.storage().open(key))


# -- the round trip ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", WRITABLE, indirect=True)
def test_put_stat_open_round_trip(backend: Backend, tmp_path: Path) -> None:
    data = os.urandom(300 * 1024)
    model = new_model()
    key = backend.key(model)
    storage = backend.storage()

    info = storage.put(key, str(model_file(tmp_path, data)))

    assert info.key == key
    assert info.size == len(data)
    assert info.md5 == md5_hex(data)  # every one of these stores states the MD5 of a put
    assert storage.stat(key) == info  # what put returns is what the model server sees
    assert read_all(backend, key) == data
    if backend.name in ("s3", "local"):
        assert info.digest == md5_hex(data)  # a one-part ETag, the local digest

    # Again with other content: replaced.
    other = os.urandom(1000)
    assert storage.put(key, str(model_file(tmp_path, other))).md5 == md5_hex(other)
    assert read_all(backend, key) == other


@pytest.fixture
def in_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each backend's one-request limit lowered, so a 9 MiB file goes up in parts."""
    from botenv.storage import azure, gcs, s3

    monkeypatch.setattr(s3, "SINGLE_PART_MAX", 5 * CHUNK)
    monkeypatch.setattr(s3, "PART_SIZE", 5 * CHUNK)  # S3's smallest part
    monkeypatch.setattr(gcs, "UPLOAD_CHUNK", CHUNK)  # 10 requests; GCS goes resumable > 8 MiB
    monkeypatch.setattr(azure, "SINGLE_PUT_MAX", CHUNK)
    monkeypatch.setattr(azure, "BLOCK", CHUNK)


@pytest.mark.usefixtures("in_parts")
@pytest.mark.parametrize("backend", WRITABLE, indirect=True)
def test_put_in_parts(backend: Backend, tmp_path: Path) -> None:
    """Files above the one-request limit go up in parts and are verified as such: S3 by
    its multipart ETag, Azure by the MD5 of its blocks, GCS by the MD5 of its resumable
    upload."""
    data = os.urandom(9 * CHUNK + 12345)
    key = backend.key(new_model())

    info = backend.storage().put(key, str(model_file(tmp_path, data)))

    assert info.size == len(data)
    if backend.name == "s3":
        assert info.digest == multipart_etag(data, 5 * CHUNK)
        assert info.digest.endswith("-2")
        assert info.md5 is None  # stat states no MD5 for it, as for any multipart object
    else:
        assert info.md5 == md5_hex(data)
    if backend.name == "azure":
        blocks = backend.admin.get_blob_client(BUCKET, key).get_block_list("committed")[0]
        assert len(blocks) == 10
    assert read_all(backend, key) == data


# -- the verification ----------------------------------------------------------------------


def change_after_hashing(monkeypatch: pytest.MonkeyPatch, backend: str, how: str) -> None:
    """The backend hashes the file, then the file changes before it is sent."""
    module = importlib.import_module(f"botenv.storage.{backend}")
    real = module.hash_file

    def hash_then_change(path: str, part_size: int | None = None) -> LocalFile:
        hashed = real(path, part_size)
        data = bytearray(Path(path).read_bytes())
        if how == "bit":
            data[len(data) // 2] ^= 0x01  # same size: only the MD5 can tell
        else:
            data += b"more"
        Path(path).write_bytes(bytes(data))
        return hashed

    monkeypatch.setattr(module, "hash_file", hash_then_change)


@pytest.mark.parametrize("how", ["bit", "longer"])
@pytest.mark.parametrize("backend", WRITABLE, indirect=True)
def test_put_detects_a_stored_object_that_is_not_the_file(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    data = os.urandom(300 * 1024)
    key = backend.key(new_model())
    change_after_hashing(monkeypatch, backend.name, how)

    with pytest.raises(DigestMismatch) as err:
        backend.storage().put(key, str(model_file(tmp_path, data)))

    message = str(err.value)
    assert key.rsplit("/", 1)[-1] in message  # the key ...
    assert md5_hex(data) in message  # ... what was expected ...
    stored = read_all(backend, key)
    assert stored != data
    if how == "bit":
        assert md5_hex(stored) in message  # ... and what was found
    else:
        assert f"expected {len(data)} bytes, found {len(stored)}" in message


@pytest.mark.usefixtures("in_parts")
@pytest.mark.parametrize("backend", ["s3", "gcs", "azure"], indirect=True)
def test_put_detects_a_mismatch_in_parts(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Azure's block list MD5 is the client's word: it must be the MD5 of the blocks sent.
    change_after_hashing(monkeypatch, backend.name, "bit")
    data = os.urandom(9 * CHUNK + 12345)
    with pytest.raises(DigestMismatch) as err:
        backend.storage().put(backend.key(new_model()), str(model_file(tmp_path, data)))
    message = str(err.value)
    if backend.name == "s3":
        assert "multipart ETag" in message
        assert multipart_etag(data, 5 * CHUNK) in message
    else:
        assert md5_hex(data) in message


@pytest.mark.parametrize("changed", [False, True])
def test_s3_put_reads_back_where_the_etag_is_no_md5(
    moto_server: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changed: bool
) -> None:
    """SSE-KMS objects have an ETag that is no MD5: put hashes the object read back."""
    from botenv.storage import s3

    real_head = s3.S3Storage._head
    monkeypatch.setattr(
        s3.S3Storage,
        "_head",
        lambda self, key: {**real_head(self, key), "ServerSideEncryption": "aws:kms"},
    )
    backend = S3(moto_server)  # type: ignore[arg-type]
    backend.prepare()
    reads: list[str] = []
    real_open = s3.S3Storage.open
    monkeypatch.setattr(
        s3.S3Storage, "open", lambda self, key: reads.append(key) or real_open(self, key)
    )
    if changed:
        change_after_hashing(monkeypatch, "s3", "bit")
    key = backend.key(new_model())
    data = os.urandom(100 * 1024)
    if changed:
        with pytest.raises(DigestMismatch, match="read back"):
            backend.storage().put(key, str(model_file(tmp_path, data)))
    else:
        info = backend.storage().put(key, str(model_file(tmp_path, data)))
        assert info.md5 is None
    assert reads == [key]


# -- refused, missing, read-only -------------------------------------------------------------


@pytest.mark.parametrize("backend", ["s3", "azure"], indirect=True)
def test_put_with_wrong_credentials_is_access_denied(backend: Backend, tmp_path: Path) -> None:
    # fake-gcs-server checks no credentials: GCS has no such test (it would test nothing).
    key = backend.key(new_model())
    bad = backend.bad_credentials()
    with pytest.raises(AccessDenied) as err:
        backend.storage(bad).put(key, str(model_file(tmp_path, b"model")))
    for name, value in {**backend.credentials, **bad}.items():
        if name in SECRET_KEYS:
            assert value not in str(err.value)
    with pytest.raises(ObjectNotFound):
        backend.storage().stat(key)  # nothing was stored


@pytest.mark.parametrize("provider", ["s3", "gcs", "azure"])
def test_put_to_a_store_that_is_not_there(
    provider: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botenv.storage import gcs

    monkeypatch.setattr(gcs, "UPLOAD_RETRY", gcs.UPLOAD_RETRY.with_timeout(1.0))
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens
    spec = {
        "s3": StorageSpec(provider="s3", bucket=BUCKET, endpoint=endpoint),
        "gcs": StorageSpec(provider="gcs", bucket=BUCKET, endpoint=endpoint),
        "azure": StorageSpec(
            provider="azure", bucket=BUCKET, endpoint=f"{endpoint}/{Azurite.account}"
        ),
    }[provider]
    credentials = {
        "AWS_ACCESS_KEY_ID": "id",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AZURE_ACCOUNT_NAME": Azurite.account,
        "AZURE_ACCOUNT_KEY": Azurite.key,
    }
    began = time.monotonic()
    with pytest.raises(StorageUnavailable) as err:
        storage_for(spec, credentials).put(
            key_for(spec, "m.tar.gz"), str(model_file(tmp_path, b"model"))
        )
    assert time.monotonic() - began < HANG_GUARD
    assert provider in str(err.value)


def test_http_is_read_only(tmp_path: Path) -> None:
    spec = StorageSpec(provider="http", url="http://127.0.0.1:9/models")
    with pytest.raises(ReadOnlyStorage) as err:
        storage_for(spec, {}).put(key_for(spec, "m.tar.gz"), str(model_file(tmp_path, b"m")))
    assert str(err.value) == (
        "storage provider http is read-only: use s3, gcs, azure or local for training output"
    )


# -- local specifics -------------------------------------------------------------------------


def test_local_put_is_atomic_0644_and_creates_the_prefix(tmp_path: Path) -> None:
    root = tmp_path / "models"
    root.mkdir()
    spec = StorageSpec(provider="local", path=str(root), prefix="tenants/acme")
    storage = storage_for(spec, {})
    source = model_file(tmp_path, os.urandom(3 * CHUNK))
    source.chmod(0o600)
    seen: list[int] = []

    def reader() -> None:
        # A concurrent reader sees no file or a whole one, never a partial copy.
        target = root / "tenants" / "acme" / "m.tar.gz"
        while not stop.is_set():
            try:
                seen.append(len(target.read_bytes()))
            except FileNotFoundError:
                pass

    stop = threading.Event()
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(5):
            info = storage.put(key_for(spec, "m.tar.gz"), str(source))
    finally:
        stop.set()
        thread.join()
    stored = root / "tenants" / "acme" / "m.tar.gz"
    assert info.key == str(stored)
    assert stored.read_bytes() == source.read_bytes()
    assert stored.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in stored.parent.iterdir()) == ["m.tar.gz"]  # no temp left
    assert set(seen) <= {3 * CHUNK}


def test_local_put_never_creates_a_missing_root(tmp_path: Path) -> None:
    root = tmp_path / "not-mounted"
    spec = StorageSpec(provider="local", path=str(root))
    with pytest.raises(StorageUnavailable, match="not there"):
        storage_for(spec, {}).put(key_for(spec, "m.tar.gz"), str(model_file(tmp_path, b"m")))
    assert not root.exists()


@pytest.mark.parametrize("key", ["../outside.tar.gz", "/etc/outside.tar.gz"])
def test_local_put_refuses_keys_outside_the_directory(tmp_path: Path, key: str) -> None:
    root = tmp_path / "models"
    root.mkdir()
    storage = storage_for(StorageSpec(provider="local", path=str(root)), {})
    with pytest.raises(ObjectNotFound):
        storage.put(key, str(model_file(tmp_path, b"m")))
    assert not (tmp_path / "outside.tar.gz").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes whatever the permissions")
def test_local_put_permission_denied(tmp_path: Path) -> None:
    root = tmp_path / "models"
    root.mkdir()
    root.chmod(0o555)
    try:
        storage = storage_for(StorageSpec(provider="local", path=str(root)), {})
        with pytest.raises(AccessDenied):
            storage.put("m.tar.gz", str(model_file(tmp_path, b"m")))
    finally:
        root.chmod(0o755)


# -- GCS: a service-account key writes with a write token --------------------------------------


@pytest.fixture
def token_endpoint() -> Iterator[tuple[str, type[_TokenEndpoint]]]:
    handler = type("Tokens", (_TokenEndpoint,), {"grants": [], "refuse": False})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/token", handler
    finally:
        server.shutdown()
        server.server_close()


def test_gcs_put_asks_for_a_read_write_token(
    gcs_server: object, tmp_path: Path, token_endpoint: tuple[str, type[_TokenEndpoint]]
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    token_uri, handler = token_endpoint
    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    key_json = json.dumps(
        {
            "type": "service_account",
            "project_id": "botenv-test",
            "private_key_id": "k1",
            "private_key": pem,
            "client_email": "trainer@botenv-test.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": token_uri,
        }
    )
    backend = GCS(gcs_server)  # type: ignore[arg-type]
    backend.prepare()
    storage = backend.storage({"credentials.json": key_json})
    key = backend.key(new_model())
    data = os.urandom(1000)

    info = storage.put(key, str(model_file(tmp_path, data)))
    assert storage.stat(key) == info

    def scope(grant: str) -> str:
        assertion = dict(p.split("=", 1) for p in grant.split("&"))["assertion"]
        payload = assertion.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["scope"]

    scopes = {scope(g) for g in handler.grants}
    # The upload asked for a write token; reads (the stat) keep the read-only one.
    assert scopes == {
        "https://www.googleapis.com/auth/devstorage.read_write",
        "https://www.googleapis.com/auth/devstorage.read_only",
    }
