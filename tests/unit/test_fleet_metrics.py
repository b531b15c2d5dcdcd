"""Whether an environment serves its tag's model (controller.serving): the fleet gauges,
the promotion-latency metric and the tag's status.servedAt all ask it."""

from __future__ import annotations

from botenv.controller.serving import desired_replicas, serves, serving_replicas

TAG = {"status": {"model": "v2.tar.gz", "digest": "d2"}}


def env(ready: str = "True", reason: str = "Ready", **status: object) -> dict:
    return {
        "metadata": {"namespace": "shop", "name": "prod"},
        "spec": {"replicas": 2},
        "status": {
            "model": {"tag": "prod", "name": "v2.tar.gz", "digest": "d2"},
            "conditions": [{"type": "Ready", "status": ready, "reason": reason}],
            **status,
        },
    }


def test_verified_pods_count_by_name_and_digest():
    served = [
        {"name": "v2.tar.gz", "digest": "d2", "replicas": 1},
        {"name": "v2.tar.gz", "digest": "d1", "replicas": 1},  # the old upload
    ]
    body = env(servedModels=served, replicas=2, readyReplicas=2, updatedReplicas=2)
    assert serving_replicas(body, TAG) == 1
    assert not serves(body, TAG)


def test_without_verification_old_ready_pods_of_a_roll_do_not_count():
    rolling = env("False", "RollingOut", replicas=4, updatedReplicas=2, readyReplicas=2)
    assert serving_replicas(rolling, TAG) == 0
    stale = env("False", "RollingOut", replicas=2, updatedReplicas=2, readyReplicas=2)
    assert serving_replicas(stale, TAG) == 1  # counts from before the roll: not all
    done = env(replicas=2, updatedReplicas=2, readyReplicas=2)
    assert serving_replicas(done, TAG) == 2
    assert serves(done, TAG)


def test_another_model_serves_nothing_of_the_tag():
    other = env(replicas=2, updatedReplicas=2, readyReplicas=2)
    other["status"]["model"]["name"] = "v1.tar.gz"
    assert serving_replicas(other, TAG) == 0
    assert not serves(other, TAG)
    assert desired_replicas({"spec": {}}) == 1
