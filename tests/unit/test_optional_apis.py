"""The kinds botenv watches in two versions: one index view over both, and no kopf warning
about the version a server does not serve."""

from __future__ import annotations

import logging

import pytest
from kopf._cogs.structs.references import Selector
from kopf._core.reactor import observation

from botenv.runtime.optional_apis import EitherIndex, quiet_optional_versions


def test_either_index_prefers_the_first_version():
    v2 = {("bots", "a"): [{"apiVersion": "autoscaling/v2"}]}
    v2beta2 = {
        ("bots", "a"): [{"apiVersion": "autoscaling/v2beta2"}],
        ("bots", "b"): [{"apiVersion": "autoscaling/v2beta2"}],
    }
    both = EitherIndex(v2, v2beta2)
    assert list(both[("bots", "a")]) == [{"apiVersion": "autoscaling/v2"}]
    assert list(both[("bots", "b")]) == [{"apiVersion": "autoscaling/v2beta2"}]
    assert ("bots", "c") not in both
    assert sorted(both) == [("bots", "a"), ("bots", "b")] and len(both) == 2
    with pytest.raises(KeyError):
        both[("bots", "c")]


def test_kopf_warns_only_about_resources_other_than_the_optional_versions(caplog):
    quiet_optional_versions()
    optional = {
        Selector("autoscaling", "v2beta2", "horizontalpodautoscalers"),
        Selector("policy", "v1beta1", "poddisruptionbudgets"),
    }
    with caplog.at_level(logging.WARNING, logger="kopf._core.reactor.observation"):
        observation._disable_mismatched_selectors(resources=set(), selectors=frozenset(optional))
    assert caplog.records == []
    missing = Selector("example.com", "v1", "widgets")
    with caplog.at_level(logging.WARNING, logger="kopf._core.reactor.observation"):
        observation._disable_mismatched_selectors(
            resources=set(), selectors=frozenset(optional | {missing})
        )
    [record] = caplog.records
    assert record.getMessage() == (
        f"Unresolved resources cannot be served (try creating their CRDs): {missing}"
    )
