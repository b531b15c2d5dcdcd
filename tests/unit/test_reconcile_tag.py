"""One ModelTag reconcile on a fake API server: the status and Events it writes."""

from __future__ import annotations

import asyncio

import pytest

from botenv.controller import tag as tag_controller
from botenv.controller.resolve import Unresolved
from botenv.render import conditions as cond
from botenv.render.problem import Retry
from botenv.storage import ObjectInfo
from botenv.storage.modelmeta import ModelMetadata
from tests.unit.builders import environment, tag
from tests.unit.reconcile_fakes import FakeKube, state


class FakeResolver:
    def __init__(
        self, answer: ObjectInfo | Unresolved, metadata: ModelMetadata | str = "not read here"
    ) -> None:
        self.answer = answer
        self.answer_metadata = metadata
        self.metadata_reads = 0

    def metadata(self, namespace: str, spec: object, info: ObjectInfo) -> ModelMetadata | str:
        self.metadata_reads += 1
        return self.answer_metadata

    def resolve(self, namespace: str, name: str, spec: object) -> ObjectInfo:
        if isinstance(self.answer, Unresolved):
            raise self.answer
        return self.answer

    def forget(self, namespace: str, name: str) -> None:
        pass


def run(kube: FakeKube, body: dict, answer: ObjectInfo | Unresolved) -> None:
    s = state(kube, tags=(body,), environments=(environment(modelTag="production"),))
    s.resolver = FakeResolver(answer)  # type: ignore[assignment]
    asyncio.run(tag_controller.reconcile(s, "bots", "production"))


def test_a_tag_moved_to_a_new_model_reports_it_and_its_users():
    body = tag(model="m2.tar.gz")
    body["status"] = {"model": "m1.tar.gz", "digest": "d1", "size": 1}
    kube = FakeKube()
    run(kube, body, ObjectInfo(key="m2.tar.gz", digest="d2", size=2))
    [status] = kube.written("status", "ModelTag")
    assert (status["model"], status["digest"]) == ("m2.tar.gz", "d2")
    assert status["environments"] == ["production"]
    assert status["history"][0]["model"] == "m1.tar.gz"
    [event] = kube.written("event")
    assert event["reason"] == "Moved"
    assert "moved from m1.tar.gz to m2.tar.gz; environments: production" in event["message"]


def test_a_storage_outage_keeps_the_model_and_is_retried():
    body = tag(model="m2.tar.gz")
    body["status"] = {"model": "m1.tar.gz", "digest": "d1", "size": 1}
    kube = FakeKube()
    with pytest.raises(Retry):
        run(kube, body, Unresolved("StorageUnavailable", "down", retry=True))
    [status] = kube.written("status", "ModelTag")
    assert status["model"] == "m1.tar.gz"
    assert cond.get(status["conditions"], cond.READY)["reason"] == "StorageUnavailable"
    assert kube.events() == [("Warning", "StorageUnavailable")]
