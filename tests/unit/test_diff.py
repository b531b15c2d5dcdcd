"""kube.diff.contains: does the live object already hold everything botenv would apply?"""

from __future__ import annotations

import pytest

from botenv.kube.diff import contains

LIVE = {
    "metadata": {
        "name": "rasa-production",
        "labels": {"a": "1", "b": "2"},
        "resourceVersion": "123",
        "managedFields": [{"manager": "kubectl"}],
    },
    "spec": {
        "replicas": 2,
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "rasa",
                        "image": "rasa/rasa:3.6.21",
                        "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                        "terminationMessagePath": "/dev/termination-log",
                    }
                ]
            }
        },
    },
    "status": {"replicas": 2},
}


def test_fields_added_by_the_server_or_others_are_ignored():
    desired = {
        "metadata": {"name": "rasa-production", "labels": {"a": "1"}},
        "spec": {"replicas": 2},
    }
    assert contains(LIVE, desired)


def test_a_changed_value_is_a_difference():
    assert not contains(LIVE, {"spec": {"replicas": 3}})
    assert not contains(LIVE, {"metadata": {"labels": {"a": "9"}}})


def test_a_missing_field_is_a_difference():
    assert not contains(LIVE, {"metadata": {"annotations": {"x": "y"}}})
    assert not contains(LIVE, {"spec": {"paused": True}})


def test_an_identical_object_is_contained():
    assert contains(LIVE, LIVE)


def test_no_live_object_differs_from_anything():
    assert not contains(None, {"metadata": {"name": "x"}})


@pytest.mark.parametrize(
    "desired,live",
    [
        ("1000m", "1"),
        ("500m", "0.5"),
        ("1Gi", "1073741824"),
        ("1024Mi", "1Gi"),
        (2, "2"),
    ],
)
def test_quantities_are_compared_as_the_server_normalizes_them(desired, live):
    assert contains({"limits": {"cpu": live}}, {"limits": {"cpu": desired}})


def test_different_quantities_differ():
    assert not contains({"limits": {"memory": "1Gi"}}, {"limits": {"memory": "1G"}})
    assert not contains({"limits": {"cpu": "1"}}, {"limits": {"cpu": "1100m"}})


def test_non_quantity_strings_compare_exactly():
    assert not contains({"image": "rasa/rasa:3.6.21"}, {"image": "rasa/rasa:3.6.20"})
    assert not contains({"name": "rasa"}, {"name": "Rasa"})


def test_nested_container_list_with_normalized_resources():
    desired = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "rasa",
                            "resources": {"limits": {"cpu": "1000m", "memory": "1024Mi"}},
                        }
                    ]
                }
            }
        }
    }
    assert contains(LIVE, desired)


def test_list_length_mismatch_is_a_difference():
    assert not contains({"args": ["run", "--enable-api"]}, {"args": ["run"]})
    assert not contains({"args": ["run"]}, {"args": ["run", "--enable-api"]})


def test_list_order_matters():
    assert not contains({"args": ["a", "b"]}, {"args": ["b", "a"]})


def test_list_items_are_compared_as_subsets():
    live = {
        "env": [
            {"name": "A", "value": "1"},
            {
                "name": "B",
                "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": False}},
            },
        ]
    }
    assert contains(
        live,
        {
            "env": [
                {"name": "A", "value": "1"},
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            ]
        },
    )
    assert not contains(
        live,
        {
            "env": [
                {"name": "A", "value": "1"},
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "other"}}},
            ]
        },
    )


def test_empty_desired_dict_or_list_vs_absent_live_is_not_a_difference():
    """The server drops empty maps and lists; asking for them again must not re-apply."""
    assert contains({"spec": {}}, {"spec": {"volumes": [], "nodeSelector": {}}})
    assert contains(
        {"metadata": {"name": "x"}},
        {"metadata": {"name": "x", "annotations": {}}, "tolerations": []},
    )


def test_empty_desired_vs_a_non_empty_live_value_is_a_difference():
    assert not contains({"args": ["run"]}, {"args": []})


def test_type_mismatch_is_a_difference():
    assert not contains({"spec": "x"}, {"spec": {"a": 1}})
    assert not contains({"args": "run"}, {"args": ["run"]})
    assert not contains({"flag": True}, {"flag": "true"})


def test_numeric_looking_strings_outside_resources_compare_exactly():
    # An env value or annotation changed from "1" to "1.0" is a change to apply.
    assert not contains(
        {"env": [{"name": "X", "value": "1"}]}, {"env": [{"name": "X", "value": "1.0"}]}
    )
    assert not contains({"annotations": {"a": "1000"}}, {"annotations": {"a": "1k"}})
