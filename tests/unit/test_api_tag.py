"""parse_tag: where a model lives, with field-path errors."""

from __future__ import annotations

import pytest

from botenv.api import SpecError, parse_tag
from tests.unit.builders import tag


def fields(body: dict) -> set[str]:
    with pytest.raises(SpecError) as info:
        parse_tag(body)
    return {p.split(": ", 1)[0] for p in info.value.problems}


def test_s3_tag_parses():
    parsed = parse_tag(
        tag(
            model="m1.tar.gz",
            provider="s3",
            bucket="models",
            prefix="tenants/acme/",
            region="eu-west-1",
            endpoint="http://minio.minio:9000",
            secretRef={"name": "s3"},
        )
    )
    assert parsed.model == "m1.tar.gz"
    assert parsed.storage.provider == "s3"
    assert parsed.storage.bucket == "models"
    assert parsed.storage.region == "eu-west-1"
    assert parsed.storage.endpoint == "http://minio.minio:9000"
    assert parsed.storage.secret_name == "s3"


@pytest.mark.parametrize(
    "prefix,key",
    [
        ("", "m.tar.gz"),
        ("tenants/acme", "tenants/acme/m.tar.gz"),
        ("/tenants/acme/", "tenants/acme/m.tar.gz"),
    ],
)
def test_object_key_joins_the_prefix(prefix, key):
    storage = parse_tag(tag(provider="s3", bucket="b", prefix=prefix)).storage
    assert storage.object_key("m.tar.gz") == key


@pytest.mark.parametrize("provider", ["s3", "gcs", "azure"])
def test_bucket_providers_need_a_bucket(provider):
    assert "spec.storage.bucket" in fields(tag(provider=provider))


def test_http_needs_a_url():
    assert "spec.storage.url" in fields(tag(provider="http"))
    assert "spec.storage.url" in fields(tag(provider="http", url="models.example.com"))
    assert parse_tag(tag(provider="http", url="https://models.example.com/")).storage.url


def test_local_needs_an_absolute_path():
    assert "spec.storage.path" in fields(tag(provider="local", path="models"))
    assert parse_tag(tag(provider="local", path="/models")).storage.path == "/models"


def test_provider_is_required_and_checked():
    assert "spec.storage.provider" in fields(tag(bucket="b"))
    assert "spec.storage.provider" in fields(tag(provider="ftp", bucket="b"))


def test_model_is_required_and_safe():
    body = tag()
    del body["spec"]["model"]
    assert "spec.model" in fields(body)
    for bad in ("/etc/passwd", "../other/m.tar.gz", "a b.tar.gz"):
        assert "spec.model" in fields(tag(model=bad))


def test_storage_is_required():
    body = tag()
    del body["spec"]["storage"]
    assert "spec.storage" in fields(body)


def test_endpoint_must_be_a_url():
    assert "spec.storage.endpoint" in fields(tag(provider="s3", bucket="b", endpoint="minio:9000"))


def test_secret_ref_needs_a_name():
    assert "spec.storage.secretRef.name" in fields(tag(provider="s3", bucket="b", secretRef={}))
