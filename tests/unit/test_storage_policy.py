"""Where models may come from, tried as a tenant who writes a ModelTag would try it: the
reader's own files, loopback services, cloud metadata, a redirect or a link out of an allowed
place. Real loopback HTTP servers count what reaches them: a refused location gets nothing."""

from __future__ import annotations

import http.server
import ipaddress
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from botenv.api.tag import StorageSpec
from botenv.settings import Settings, storage_policy
from botenv.storage.base import ObjectNotFound
from botenv.storage.factory import key_for, storage_for
from botenv.storage.http import HTTPStorage
from botenv.storage.local import LocalStorage
from botenv.storage.policy import LocationNotAllowed, StoragePolicy, forbidden_reason

DEFAULT = StoragePolicy()


class _Origin(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:  # noqa: N802
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        redirect = self.server.redirect  # type: ignore[attr-defined]
        if redirect:
            self.send_response(302)
            self.send_header("Location", redirect + self.path)
        else:
            self.send_response(200)
            self.send_header("ETag", '"abc"')
        self.send_header("Content-Length", "3")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def origin() -> Iterator:
    """Start loopback origins on chosen addresses; each records the paths it was asked."""
    servers = []

    def start(host: str, redirect: str = "") -> http.server.HTTPServer:
        server = http.server.ThreadingHTTPServer((host, 0), _Origin)
        server.hits, server.redirect = [], redirect  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def url(server: http.server.HTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/models"


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.0.0.2",
        "::1",
        "169.254.169.254",
        "169.254.170.2",
        "fe80::1",
        "fd00:ec2::254",
        "100.100.100.200",
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "240.0.0.1",
    ],
)
def test_special_addresses_are_refused_by_default(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["10.0.0.7", "192.168.1.2", "52.95.110.1", "2001:db8::1"])
def test_ordinary_addresses_pass(address: str) -> None:
    # Private ranges pass: an in-cluster MinIO or model origin is a normal place for models
    # (narrow them with URL prefixes).
    assert forbidden_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "spec, field",
    [
        (
            StorageSpec(provider="http", url="http://169.254.169.254/latest/meta-data/"),
            "spec.storage.url",
        ),
        (StorageSpec(provider="http", url="http://127.0.0.1:8080/"), "spec.storage.url"),
        # By name: resolved, not compared as a string.
        (StorageSpec(provider="http", url="http://localhost:8080/"), "spec.storage.url"),
        (StorageSpec(provider="http", url="http://[::1]:8080/"), "spec.storage.url"),
        (StorageSpec(provider="http", url="http://[::ffff:7f00:1]:8080/"), "spec.storage.url"),
        (
            StorageSpec(provider="s3", bucket="b", endpoint="http://169.254.169.254"),
            "spec.storage.endpoint",
        ),
        (
            StorageSpec(provider="azure", bucket="c", endpoint="http://localhost:10000/acct"),
            "spec.storage.endpoint",
        ),
    ],
)
def test_loopback_and_metadata_locations_are_refused(spec: StorageSpec, field: str) -> None:
    with pytest.raises(LocationNotAllowed) as refused:
        DEFAULT.check(spec)
    assert refused.value.field == field
    assert str(refused.value).startswith(f"{field}: ")


def test_local_storage_is_off_until_the_admin_lists_a_root(tmp_path: Path) -> None:
    spec = StorageSpec(provider="local", path=str(tmp_path))
    with pytest.raises(
        LocationNotAllowed,
        match=r"spec\.storage\.path: .*no local storage "
        r"roots are allowed.*BOTENV_STORAGE_LOCAL",
    ):
        DEFAULT.check(spec)
    StoragePolicy.parse([str(tmp_path)], [], []).check(spec)


def test_a_local_path_outside_the_roots_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "models"
    root.mkdir()
    policy = StoragePolicy.parse([str(root)], [], [])
    for path in (
        "/var/run/secrets/kubernetes.io/serviceaccount",
        "/etc",
        str(tmp_path),
        f"{root}/../",
        f"{root}-other",
    ):
        with pytest.raises(LocationNotAllowed, match=f"allowed roots are {root}"):
            policy.check(StorageSpec(provider="local", path=path))
    # A link inside the root that leads out of it is judged by where it leads.
    (root / "escape").symlink_to("/etc")
    with pytest.raises(LocationNotAllowed):
        policy.check(StorageSpec(provider="local", path=str(root / "escape")))
    policy.check(StorageSpec(provider="local", path=str(root / "team-a")))


def test_a_model_file_linked_out_of_its_directory_is_not_read(tmp_path: Path) -> None:
    root, outside = tmp_path / "models", tmp_path / "outside"
    root.mkdir()
    outside.write_bytes(b"the node's secret")
    (root / "m.tar.gz").symlink_to(outside)
    storage = LocalStorage(str(root))
    with pytest.raises(ObjectNotFound, match="links outside the directory"):
        storage.stat("m.tar.gz")
    with pytest.raises(ObjectNotFound):
        list(storage.open(str(root / "m.tar.gz")))


def test_url_prefixes_narrow_http_and_endpoints() -> None:
    policy = StoragePolicy.parse([], ["http://10.1.2.3:8080/models/", "https://10.9.9.9"], [])
    policy.check(StorageSpec(provider="http", url="http://10.1.2.3:8080/models/team-a"))
    policy.check(StorageSpec(provider="s3", bucket="b", endpoint="https://10.9.9.9/"))
    for spec in (
        StorageSpec(provider="http", url="http://10.1.2.3:8080/other/"),
        # A prefix without a path does not match a longer host name.
        StorageSpec(provider="http", url="https://10.9.9.99/"),
        StorageSpec(provider="gcs", bucket="b", endpoint="http://10.1.2.3:9000"),
    ):
        with pytest.raises(LocationNotAllowed, match="does not start with an allowed prefix"):
            policy.check(spec)


def test_an_exempt_network_is_allowed(origin) -> None:  # noqa: ANN001
    server = origin("127.0.0.1")
    policy = StoragePolicy.parse([], [], ["127.0.0.1/32"])
    spec = StorageSpec(provider="http", url=url(server))
    assert storage_for(spec, {}, policy=policy).stat(key_for(spec, "m.tar.gz")).digest == "abc"
    assert server.hits == ["/models/m.tar.gz"]


def test_a_refused_origin_receives_nothing(origin) -> None:  # noqa: ANN001
    server = origin("127.0.0.1")
    spec = StorageSpec(provider="http", url=url(server))
    with pytest.raises(LocationNotAllowed, match="127.0.0.1, a loopback address"):
        storage_for(spec, {}, policy=DEFAULT).stat(key_for(spec, "m.tar.gz"))
    # The backend itself refuses too (a DNS answer that changed after the check): it
    # connects only to an address it checked.
    with pytest.raises(LocationNotAllowed):
        HTTPStorage(url(server), policy=DEFAULT).stat("m.tar.gz")
    assert server.hits == []


def test_a_redirect_into_a_refused_network_is_not_followed(origin) -> None:  # noqa: ANN001
    inside = origin("127.0.0.3")
    allowed = origin("127.0.0.2", redirect=f"http://127.0.0.3:{inside.server_address[1]}")
    policy = StoragePolicy.parse([], [], ["127.0.0.2/32"])
    spec = StorageSpec(provider="http", url=url(allowed))
    with pytest.raises(LocationNotAllowed, match="127.0.0.3"):
        storage_for(spec, {}, policy=policy).stat(key_for(spec, "m.tar.gz"))
    assert allowed.hits == ["/models/m.tar.gz"]
    assert inside.hits == []


def test_settings_read_the_policy_and_name_a_bad_entry() -> None:
    settings = Settings.from_env(
        {
            "BOTENV_STORAGE_LOCAL_ROOTS": "/models, /srv/more",
            "BOTENV_STORAGE_URL_PREFIXES": "https://models.example.com",
            "BOTENV_STORAGE_ALLOWED_NETWORKS": "10.0.0.0/8",
        }
    )
    assert settings.storage.local_roots == (
        os.path.realpath("/models"),
        os.path.realpath("/srv/more"),
    )
    assert settings.storage.url_prefixes == ("https://models.example.com/",)
    assert settings.storage.allowed_networks == (ipaddress.ip_network("10.0.0.0/8"),)
    assert Settings.from_env({}).storage == StoragePolicy()
    for name, value, word in (
        ("LOCAL_ROOTS", "models", "'models' is not an absolute path"),
        ("URL_PREFIXES", "models.example.com", r"not an http\(s\) URL"),
        ("ALLOWED_NETWORKS", "10.0.0.0/33", "allowed network"),
    ):
        with pytest.raises(ValueError, match=word):
            storage_policy({f"BOTENV_STORAGE_{name}": value})
