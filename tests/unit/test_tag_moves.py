"""A ModelTraining moves only a tag that lets trainings move it (spec.trainings.allowed, which
only someone who may patch the tag can set), or creates a tag that does not exist yet, which
then lets later trainings move it. tests/cluster/test_tag_move_rbac.py shows it against the
real authorizer."""

from __future__ import annotations

from botenv.api.tag_moves import move_refused, trainings_allowed
from botenv.api.training import parse_training
from botenv.controller import training as controller
from botenv.render import training as render
from botenv.settings import Settings

IMAGE = "rasa/rasa:3.6.21-full"
NOW = "2026-11-22T03:10:00Z"
STORAGE = {"provider": "s3", "bucket": "models"}
MODEL = "nightly-20261122-030405.tar.gz"
SOURCE = {"data": {"config.yml": "", "domain.yml": "", "nlu.yml": ""}}


def training(tag: str = "production") -> dict:
    return {
        "apiVersion": "botenv.dev/v1alpha1",
        "kind": "ModelTraining",
        "metadata": {
            "name": "nightly",
            "namespace": "bots",
            "uid": "u-1",
            "generation": 1,
            "creationTimestamp": "2026-11-22T03:04:05Z",
        },
        "spec": {
            "source": {"configMap": {"name": "acme-project"}},
            "output": {"storage": STORAGE},
            "tag": tag,
        },
    }


def tag(allowed: object = None) -> dict:
    spec: dict = {"model": "old.tar.gz", "storage": STORAGE}
    if allowed is not None:
        spec["trainings"] = {"allowed": allowed}
    return {"metadata": {"name": "production", "namespace": "bots"}, "spec": spec}


def starting(existing: dict | None) -> controller.Seen:
    body = training()
    return controller.Seen(body=body, spec=parse_training(body, IMAGE), source=SOURCE, tag=existing)


def finished(existing: dict | None) -> controller.Seen:
    body = training()
    job = {
        "metadata": {"name": "train-nightly", "annotations": {render.GENERATION_ANNOTATION: "1"}},
        "status": {"conditions": [{"type": "Complete", "status": "True"}]},
    }
    return controller.Seen(
        body=body, spec=parse_training(body, IMAGE), job=job, stored=("d1", 10), tag=existing
    )


def test_only_true_opts_in() -> None:
    assert trainings_allowed(tag(True))
    for value in (None, False, "true", 1):
        assert not trainings_allowed(tag(value))
    assert move_refused("production", None) == ""  # a new tag: the training creates it
    assert move_refused("production", tag(True)) == ""
    assert "spec.trainings.allowed" in move_refused("production", tag())


def test_a_tag_that_does_not_opt_in_is_refused_before_anything_trains() -> None:
    plan = controller.plan(starting(tag()), Settings(), NOW)
    assert plan.create_job is None
    assert plan.status is not None
    assert (plan.status["phase"], plan.status["reason"]) == ("Failed", "TagMoveNotAllowed")
    message = plan.status["message"]
    assert message.startswith("spec.tag: ModelTag 'production' does not let trainings move it")
    assert "kubectl patch mtag production --type merge" in message
    assert message.endswith("nothing was trained")
    assert plan.event is not None and plan.event[:2] == ("Warning", "TagMoveNotAllowed")


def test_a_tag_that_opts_in_or_does_not_exist_trains() -> None:
    assert controller.plan(starting(tag(True)), Settings(), NOW).create_job is not None
    assert controller.plan(starting(None), Settings(), NOW).create_job is not None


def test_a_tag_a_training_creates_lets_later_trainings_move_it() -> None:
    plan = controller.plan(finished(None), Settings(), NOW)
    assert plan.create_tag is not None
    assert plan.create_tag["spec"]["trainings"] == {"allowed": True}
    assert plan.create_tag["spec"]["model"] == MODEL


def test_an_opt_in_withdrawn_during_training_keeps_the_tag_where_it_is() -> None:
    plan = controller.plan(finished(tag(False)), Settings(), NOW)
    assert plan.move_tag is None and plan.create_tag is None
    assert plan.status is not None
    assert (plan.status["phase"], plan.status["reason"]) == ("Failed", "TagMoveNotAllowed")
    assert (plan.status["digest"], plan.status["size"]) == ("d1", 10)  # the model is stored
    assert "the tag was not moved: spec.tag: ModelTag 'production'" in plan.status["message"]
    assert "tag" not in plan.status
    moved = controller.plan(finished(tag(True)), Settings(), NOW)
    assert moved.move_tag == {"spec": {"model": MODEL}}


def test_a_refused_move_shows_in_botenv_status() -> None:
    import datetime

    from botenv.cli import output

    plan = controller.plan(starting(tag()), Settings(), NOW)
    body = {**training(), "status": plan.status}
    now = datetime.datetime(2026, 11, 22, 3, 15, tzinfo=datetime.UTC)
    text = output.status_text(
        [], [], namespace="bots", now=now, trainings=[output.training_summary(body)]
    )
    line = next(x for x in text.splitlines() if x.startswith("nightly"))
    assert "Failed (TagMoveNotAllowed)" in line and "(moved)" not in line
