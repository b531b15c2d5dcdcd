"""Fixtures for tests against a real Rasa 3.6.21 server (tests.support.rasa)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.rasa import model_id, rasa_venv, train, write_project

GREETINGS = ["hello", "hi", "hey"]
ANSWER_A = "Hello from model A."
ANSWER_B = "Hello from model B."


@pytest.hookimpl(trylast=True)  # after -m/-k deselection
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Build the venv (first run only, ~3 min) before any test starts, so the build does
    # not count against a test's timeout, and show its progress.
    if config.option.collectonly:
        return
    if any(item.get_closest_marker("rasa") for item in items):
        capman = config.pluginmanager.getplugin("capturemanager")
        with capman.global_and_fixture_disabled():
            rasa_venv()


@pytest.fixture(scope="session")
def rasa_python_venv(request: pytest.FixtureRequest) -> Path:
    """The cached Python 3.10 venv holding rasa==3.6.21."""
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        return rasa_venv()


@dataclass(frozen=True)
class Model:
    path: Path
    model_id: str
    answer: str  # what it replies to a greeting


@dataclass(frozen=True)
class Models:
    a: Model
    b: Model


@pytest.fixture(scope="session")
def rasa_models(rasa_python_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Models:
    """Two tiny models that differ only in their answer to a greeting."""
    root = tmp_path_factory.mktemp("rasa-models")
    made = {}
    for name, answer in (("a", ANSWER_A), ("b", ANSWER_B)):
        project = write_project(
            root / f"project-{name}", intents={"greet": GREETINGS}, responses={"greet": answer}
        )
        path = train(project, root / "models", f"model-{name}")
        made[name] = Model(path, model_id(path), answer)
    return Models(**made)
