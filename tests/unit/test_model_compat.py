"""A model's Rasa version from its archive, and whether an environment's Rasa can load it:
botenv's version gate, without loading anything. Real models trained by Rasa are read in
tests/rasa/test_model_metadata.py; here the archives are made to order."""

from __future__ import annotations

import gzip
import random

import pytest

from botenv.api import SpecError, parse_environment
from botenv.api.tag import StorageSpec
from botenv.api.versions import version_key
from botenv.controller.environment.gate import MODEL_INCOMPATIBLE, gate
from botenv.controller.tag import tag_status
from botenv.render import compat
from botenv.render.deployment import ModelRef
from botenv.render.problem import Problem
from botenv.storage import ObjectInfo
from botenv.storage.modelmeta import MetadataError, ModelMetadata, TooLarge, read_metadata
from tests.support.archives import archive, metadata_json

# -- archives ------------------------------------------------------------------------------


def chunks(data: bytes, size: int = 1000):
    for i in range(0, len(data), size):
        yield data[i : i + size]


MODEL = archive(
    {
        "components/train_DIETClassifier0/weights.bin": random.Random(1).randbytes(100_000),
        "metadata.json": metadata_json(),
    }
)


def test_the_rasa_version_is_read_from_metadata_json_after_the_components():
    found = read_metadata(chunks(MODEL))
    assert found == ModelMetadata("3.6.21", "abc123", "2026-01-02T03:04:05")


def test_newer_rasa_releases_name_the_version_rasa_version():
    data = archive({"metadata.json": metadata_json("3.10.2", key="rasa_version")})
    assert read_metadata(chunks(data)).rasa_version == "3.10.2"


def test_a_rasa_2_archive_is_read_from_its_fingerprint():
    data = archive({"core/policy.json": b"{}", "fingerprint.json": b'{"version": "2.8.3"}'})
    assert read_metadata(chunks(data)).rasa_version == "2.8.3"


def test_reading_stops_at_the_metadata_and_closes_the_download():
    taken = []

    def download():
        try:
            for chunk in chunks(archive({"metadata.json": metadata_json()}) + b"\0" * 10**6):
                taken.append(len(chunk))
                yield chunk
        finally:
            taken.append("closed")

    assert read_metadata(download()).rasa_version == "3.6.21"
    assert taken[-1] == "closed" and sum(n for n in taken if n != "closed") < 10**6


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (MODEL[: len(MODEL) // 2], "the archive is truncated"),
        (b"model v1", "not a gzip-compressed archive"),
        (b"", "the archive is empty"),
        (gzip.compress(b"plain text, no tar" * 50), "not a tar archive"),
        (archive({"domain.yml": b"x"}), "holds no metadata.json: not a model trained by Rasa 3"),
        (archive({"metadata.json": b"{not json"}), "metadata.json in the archive is not JSON"),
        (archive({"metadata.json": b'{"model_id": "x"}'}), "names no Rasa version"),
    ],
    ids=["truncated", "not-gzip", "empty", "not-tar", "no-metadata", "not-json", "no-version"],
)
def test_an_unreadable_archive_says_why(data: bytes, why: str):
    with pytest.raises(MetadataError, match=why):
        read_metadata(chunks(data))


def test_the_bytes_read_are_bounded():
    with pytest.raises(TooLarge, match="no metadata.json in the first 5000 bytes"):
        read_metadata(chunks(MODEL), max_archive_bytes=5000)
    with pytest.raises(TooLarge, match="in the first 20000 unpacked bytes"):
        read_metadata(chunks(MODEL), max_unpacked_bytes=20000)


# -- versions and Rasa's rule --------------------------------------------------------------


def test_versions_order_as_rasa_compares_them():
    ordered = [
        "2.8.3",
        "3.0.0",
        "3.5.0.dev1",
        "3.5.0a1",
        "3.5.0rc1",
        "3.5",
        "3.5.0.post1",
        "3.6.21",
    ]
    keys = [version_key(v) for v in ordered]
    assert all(a < b for a, b in zip(keys, keys[1:], strict=False))  # type: ignore[operator]
    assert version_key("3.5") == version_key("3.5.0")
    assert version_key("latest") is None


@pytest.mark.parametrize(
    ("image", "version"),
    [
        ("rasa/rasa:3.6.21-full", "3.6.21"),
        ("rasa/rasa:3.5.4", "3.5.4"),
        ("docker.io/rasa/rasa:3.6.20-spacy-en@sha256:" + "a" * 64, "3.6.20"),
        ("europe-west3-docker.pkg.dev/rasa-releases/rasa-pro/rasa-pro:3.8.0", "3.8.0"),
        ("rasa/rasa:latest", ""),
        ("rasa/rasa", ""),
        ("registry:5000/rasa", ""),
        ("acme/support-bot:3.6.21", ""),  # not an official Rasa image: spec.rasaVersion
    ],
)
def test_the_rasa_version_of_an_official_image_is_its_tag(image: str, version: str):
    assert compat.image_rasa_version(image) == version


@pytest.mark.parametrize(
    ("server", "minimum"),
    [
        ("3.0.0", "3.0.0"),
        ("3.4.18", "3.0.0"),
        ("3.5.0", "3.5.0"),
        ("3.6.20", "3.5.0"),
        ("3.6.21", "3.6.21"),
        ("3.7.0", ""),  # beyond the table: not gated
        ("2.8.3", ""),
    ],
)
def test_each_rasa_version_has_rasas_own_minimum(server: str, minimum: str):
    assert compat.minimum_compatible(server) == minimum


def test_a_model_older_than_the_servers_minimum_is_refused_and_a_newer_one_is_not():
    server = compat.server_of("rasa/rasa:3.6.21-full")
    assert compat.refusal("3.6.20", server) == (
        "trained with Rasa 3.6.20, but Rasa 3.6.21 (image rasa/rasa:3.6.21-full) loads only "
        "models trained with Rasa 3.6.21 or later"
    )
    assert compat.refusal("2.8.3", server)
    assert compat.refusal("3.6.21", server) == ""
    # Rasa 3.6 loads a model from a newer Rasa (it checks only the minimum): so does botenv.
    assert compat.refusal("3.6.21", compat.server_of("rasa/rasa:3.6.0")) == ""
    # Unknown on either side: no gate.
    assert compat.refusal("", server) == compat.refusal("3.0.0", compat.server_of("acme:1")) == ""


def test_spec_rasa_version_overrides_the_image_tag_and_is_checked():
    body = {
        "metadata": {"name": "prod", "namespace": "bots"},
        "spec": {"image": "acme/bot:7", "rasaVersion": "3.6.21"},
    }
    spec = parse_environment(body, "rasa/rasa:3.6.21-full")
    assert compat.server_of(spec.image, spec.rasa_version).rasa_version == "3.6.21"
    body["spec"]["rasaVersion"] = "three"
    with pytest.raises(SpecError, match=r"spec.rasaVersion: must be a Rasa version such as"):
        parse_environment(body, "rasa/rasa:3.6.21-full")


# -- the environment's gate ----------------------------------------------------------------


def _spec(**spec: object):
    body = {"metadata": {"name": "prod", "namespace": "bots"}, "spec": spec}
    return parse_environment(body, "rasa/rasa:3.6.21-full")


def _tag(version: str, history: list[dict] | None = None) -> dict:
    status = {"model": "m2.tar.gz", "digest": "d2", "size": 2, "rasaVersion": version}
    return {"status": {**status, "history": history or []}}


M2 = ModelRef(tag="prod", model="m2.tar.gz", digest="d2", storage=StorageSpec(provider="http"))
HISTORY = [{"model": "m1.tar.gz", "digest": "d1", "size": 1, "rasaVersion": "3.6.21"}]


def test_a_compatible_model_passes_the_gate():
    assert gate(_spec(), _tag("3.6.21"), M2, {}) == (M2, None)


def test_a_refused_model_keeps_the_environment_on_the_model_it_serves():
    served = {"tag": "prod", "name": "m1.tar.gz", "digest": "d1"}
    model, refused = gate(_spec(), _tag("3.5.4", HISTORY), M2, served)  # type: ignore[misc]
    assert (model.model, model.digest) == ("m1.tar.gz", "d1")
    assert refused.reason == MODEL_INCOMPATIBLE
    assert refused.message == (
        "model m2.tar.gz (digest d2) of ModelTag 'prod' trained with Rasa 3.5.4, but Rasa "
        "3.6.21 (image rasa/rasa:3.6.21-full) loads only models trained with Rasa 3.6.21 "
        "or later. The environment stays on model m1.tar.gz (digest d1) until the tag moves "
        "to a model this Rasa loads"
    )


def test_with_nothing_to_stay_on_nothing_is_applied():
    problem = gate(_spec(), _tag("3.5.4"), M2, {})
    assert isinstance(problem, Problem) and problem.reason == MODEL_INCOMPATIBLE
    assert "Nothing is rolled out" in problem.message


def test_an_image_that_cannot_load_the_model_in_force_is_not_rolled_out():
    served = {"tag": "prod", "name": "m2.tar.gz", "digest": "d2"}
    problem = gate(_spec(image="rasa/rasa:3.6.21"), _tag("3.6.20"), M2, served)
    assert isinstance(problem, Problem) and "spec.image" in problem.message
    # The same model under an image that loads it: no gate.
    assert gate(_spec(image="rasa/rasa:3.6.20"), _tag("3.6.20"), M2, served) == (M2, None)


# -- the tag's status ----------------------------------------------------------------------


def _status(metadata, servers=None, previous=None):
    return tag_status(
        previous or {},
        resolved=ObjectInfo(key="m2.tar.gz", digest="d2", size=2),
        model="m2.tar.gz",
        problem=None,
        environments=sorted(servers or {}),
        generation=1,
        history_limit=5,
        timestamp="2026-01-01T00:00:00Z",
        metadata=metadata,
        servers=servers,
    )


def test_the_tag_records_the_rasa_version_and_who_refuses_its_model():
    servers = {
        "production": compat.server_of("rasa/rasa:3.6.21-full"),
        "legacy": compat.server_of("rasa/rasa:3.6.0"),
    }
    previous = {"model": "m1.tar.gz", "digest": "d1", "size": 1, "rasaVersion": "3.6.21"}
    status = _status(ModelMetadata("3.5.4"), servers, previous)
    assert status["rasaVersion"] == "3.5.4"
    assert status["history"][0]["rasaVersion"] == "3.6.21"
    assert status["refusedBy"] == [
        {
            "environment": "production",
            "reason": "ModelIncompatible",
            "message": compat.refusal("3.5.4", servers["production"]),
        }
    ]
    ready = status["conditions"][0]
    assert ready["status"] == "True"
    assert ready["message"] == (
        "model m2.tar.gz (digest d2), trained with Rasa 3.5.4; refused by production "
        "(their Rasa cannot load it)"
    )


def test_a_model_whose_version_is_unknown_still_resolves_and_says_so():
    status = _status("not a gzip-compressed archive")
    assert "rasaVersion" not in status and "refusedBy" not in status
    assert status["conditions"][0]["message"] == (
        "model m2.tar.gz (digest d2); its Rasa version is unknown (not a gzip-compressed "
        "archive): environments load it without a version check"
    )
