"""Pods count as serving the tag's model only when the content they report is its digest."""

from __future__ import annotations

from botenv.render import status as st
from botenv.render.modelfile import digest_token, parse_served, served_file_name, serves


def test_the_served_file_name_carries_the_digest_and_reads_back():
    name = served_file_name("acme/2024/m1.tar.gz", "d41d8cd98f00b204e9800998ecf8427e")
    assert name == "m1@d41d8cd98f00b204e9800998ecf8427e.tar.gz"
    assert parse_served(name) == ("m1.tar.gz", "d41d8cd98f00b204e9800998ecf8427e")
    assert parse_served("m1.tar.gz") == ("m1.tar.gz", "")  # remote storage: the key's name
    assert parse_served("a@b@0x8DC1.tar.gz") == ("a@b.tar.gz", "0x8DC1")


def test_a_digest_unsafe_in_a_file_name_is_hashed():
    token = digest_token('W/"etag with/slash"')
    assert token.startswith("sha256-") and len(token) == 39
    assert serves(
        served_file_name("m.tar.gz", 'W/"etag with/slash"'), "m.tar.gz", 'W/"etag with/slash"'
    )


def test_a_very_long_model_name_keeps_its_digest_within_a_file_name():
    name = served_file_name("m" * 300 + ".tar.gz", "abc")
    assert len(name.encode()) == 255 and name.endswith("@abc.tar.gz")
    assert serves(name, "m" * 300 + ".tar.gz", "abc")


def test_a_pod_on_the_old_content_of_the_same_name_does_not_serve_the_new_one():
    old, new = served_file_name("m1.tar.gz", "d-old"), served_file_name("m1.tar.gz", "d-new")
    progress, listing = st.served("m1.tar.gz", {"p1": new, "p2": old}, 2, "d-new")
    assert not progress.done
    assert progress.message == (
        "1 of 2 ready replicas serve model m1.tar.gz (others: 1 m1.tar.gz (digest d-old))"
    )
    assert listing == [
        {"name": "m1.tar.gz", "digest": "d-new", "replicas": 1},
        {"name": "m1.tar.gz", "digest": "d-old", "replicas": 1},
    ]
    progress, _ = st.served("m1.tar.gz", {"p1": new, "p2": new}, 2, "d-new")
    assert progress.done and progress.message == "2 of 2 replicas serve model m1.tar.gz"


def test_the_status_model_moves_only_once_every_pod_reports_the_new_digest():
    deployment = {
        "metadata": {"generation": 1},
        "status": {
            "observedGeneration": 1,
            "replicas": 2,
            "updatedReplicas": 2,
            "availableReplicas": 2,
            "readyReplicas": 2,
        },
    }
    old, new = served_file_name("m1.tar.gz", "d1"), served_file_name("m1.tar.gz", "d2")
    previous = {"model": {"tag": "t", "name": "m1.tar.gz", "digest": "d1"}}
    applied = {"model": {"tag": "t", "name": "m1.tar.gz", "digest": "d2"}}

    def status(answers):
        return st.environment_status(
            previous=previous,
            generation=1,
            problem=None,
            deployment=deployment,
            replicas=2,
            applied=applied,
            timestamp="2026-01-01T00:00:00Z",
            answers=answers,
            verifying=True,
        )

    mixed = status({"p1": new, "p2": old})
    assert mixed["model"]["digest"] == "d1"
    ready = next(c for c in mixed["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"
    done = status({"p1": new, "p2": new})
    assert done["model"]["digest"] == "d2"
    assert next(c for c in done["conditions"] if c["type"] == "Ready")["status"] == "True"
