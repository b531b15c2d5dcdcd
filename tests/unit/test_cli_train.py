"""`botenv train`: packing a local project for the cluster."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from botenv.cli.train import ProjectError, pack_project, training_body, training_name


def project(root: Path) -> Path:
    (root / "data" / "more").mkdir(parents=True)
    (root / "config.yml").write_text("recipe: default.v1\n")
    (root / "domain.yml").write_text("version: '3.1'\n")
    (root / "data" / "nlu.yml").write_text("nlu: []\n")
    (root / "data" / "more" / "rules.yml").write_text("rules: []\n")
    (root / "data" / "notes.txt").write_text("not training data\n")
    return root


def test_pack_keeps_config_domain_and_flattens_data(tmp_path: Path) -> None:
    files = pack_project(project(tmp_path))
    assert files == {
        "config.yml": "recipe: default.v1\n",
        "domain.yml": "version: '3.1'\n",
        "more__rules.yml": "rules: []\n",
        "nlu.yml": "nlu: []\n",
    }


def test_pack_names_what_is_missing(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "domain.yml").unlink()
    (root / "domain").mkdir()
    with pytest.raises(ProjectError, match="no domain.yml .a domain/ directory is not"):
        pack_project(root)


def test_pack_refuses_a_project_too_big_for_a_configmap(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "data" / "big.yml").write_text("x" * 1_000_000)
    with pytest.raises(ProjectError, match="a ConfigMap holds"):
        pack_project(root)


def test_names_and_body() -> None:
    now = datetime.datetime(2026, 11, 22, 3, 4, 5)
    assert training_name("Experimental Bot!", now) == "experimental-bot-20261122-030405"
    body = training_body(
        "t",
        "bots",
        project="t-project",
        storage={"provider": "s3", "bucket": "m"},
        tag="experimental",
        image="",
        model_name="",
    )
    assert body["spec"] == {
        "source": {"configMap": {"name": "t-project"}},
        "output": {"storage": {"provider": "s3", "bucket": "m"}},
        "tag": "experimental",
    }


def test_status_lists_trainings() -> None:
    from botenv.cli import output

    body = {
        "metadata": {"name": "nightly", "namespace": "bots"},
        "spec": {"tag": "experimental"},
        "status": {
            "phase": "Failed",
            "reason": "TrainingFailed",
            "modelName": "n.tar.gz",
            "startedAt": "2026-11-22T03:00:00Z",
        },
    }
    now = datetime.datetime(2026, 11, 22, 3, 5, tzinfo=datetime.UTC)
    text = output.status_text(
        [], [], namespace="bots", now=now, trainings=[output.training_summary(body)]
    )
    line = next(x for x in text.splitlines() if x.startswith("nightly"))
    assert "Failed (TrainingFailed)" in line and "n.tar.gz" in line and "experimental" in line


def test_pack_sends_the_projects_tests_folder_apart_from_its_data(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "tests" / "nlu").mkdir(parents=True)
    (root / "tests" / "test_stories.yml").write_text("stories: []\n")
    (root / "tests" / "nlu" / "test_nlu.yml").write_text("nlu: []\n")
    files = pack_project(root)
    # tests__ keys are the tests/ folder in the Job (render/gates.py), never training data
    assert files["tests__test_stories.yml"] == "stories: []\n"
    assert files["tests__nlu__test_nlu.yml"] == "nlu: []\n"
    assert files["nlu.yml"] == "nlu: []\n"
    (root / "data" / "tests").mkdir()
    (root / "data" / "tests" / "test_stories.yml").write_text("stories: []\n")
    with pytest.raises(ProjectError, match="would put it in the project's tests/ folder"):
        pack_project(root)


def test_gate_flags_become_the_trainings_gates() -> None:
    from botenv.cli import build_parser
    from botenv.cli.train import gates_of

    parse = build_parser().parse_args
    args = parse(["train", "p", "--tag", "x", "--validate", "--min-intent-f1", "0.8"])
    assert gates_of(args) == {"validate": True, "test": {"minIntentF1": 0.8}}
    args = parse(["train", "p", "--tag", "x", "--test", "--min-story-accuracy", "1"])
    assert gates_of(args) == {"test": {"minStoryAccuracy": 1.0}}
    args = parse(["train", "p", "--tag", "x", "--validate", "--fail-on-warnings"])
    assert gates_of(args) == {"validate": True, "failOnWarnings": True}
    assert gates_of(parse(["train", "p", "--tag", "x", "--test"])) == {"test": {}}
    assert gates_of(parse(["train", "p", "--tag", "x"])) == {}
    body = training_body(
        "t",
        "bots",
        project="t-project",
        storage={"provider": "local", "path": "/m"},
        tag="",
        image="",
        model_name="",
        gates={"validate": True},
    )
    assert body["spec"]["validate"] is True
    with pytest.raises(SystemExit):
        parse(["train", "p", "--tag", "x", "--min-intent-f1", "2"])
