"""The local demo's (botenv.local.demo, what `scripts/run` runs without a cluster) clear
exits and its choice of training or reusing a stored model; the whole run with real parts is
tests/e2e/test_demo.py."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from botenv.local import demo

ROOT = Path(__file__).resolve().parents[2]
BOT = ROOT / "examples" / "demo-bot"


@pytest.fixture
def state() -> Iterator[Path]:
    """A state directory outside /tmp (the demo refuses one below the pods' own /tmp)."""
    cache = Path(os.environ.get("BOTENV_CACHE") or Path.home() / ".cache" / "botenv")
    (cache / "test-runs").mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="demo-unit-", dir=cache / "test-runs"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_demo(
    tmp_path: Path, state: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BOTENV_")}
    directory = state or tmp_path / "state"
    return subprocess.run(
        [sys.executable, "-m", "botenv.local.demo", "--dir", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        # An empty cache: nothing built yet, as on a new machine.
        env={**clean, "BOTENV_CACHE": str(tmp_path / "cache"), **env},
    )


def test_without_python_3_10_it_says_what_to_install_and_exits(tmp_path, state):
    proc = run_demo(tmp_path, state, BOTENV_RASA_PYTHON=str(tmp_path / "no-python3.10"))
    assert proc.returncode == demo.EXIT_MISSING, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("botenv: error: BOTENV_RASA_PYTHON is not usable"), proc.stderr
    assert "[1/6] Rasa 3.6.21 for the local node (first run: building" in proc.stdout
    # It stopped there: no control plane was built or started.
    assert "[2/6]" not in proc.stdout


def test_a_second_run_on_the_same_directory_is_refused(tmp_path, state):
    with open(state / "run.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242")
        held.flush()
        proc = run_demo(tmp_path, state)
    assert proc.returncode == demo.EXIT_MISSING
    assert proc.stderr.strip() == (
        f"botenv: error: another botenv run (pid 4242) uses {state}: stop it with Ctrl-C, "
        "or give this one another directory with BOTENV_LOCAL_DIR=DIR"
    )


def test_missing_demo_bot_is_named(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "botenv.local.demo", "--bot", str(tmp_path / "nobot")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == demo.EXIT_MISSING
    assert (
        proc.stderr.strip()
        == f"botenv: error: the demo bot: {tmp_path / 'nobot'} is not a directory"
    )


def test_the_two_versions_answer_differently_and_name_their_models_by_content():
    v1, v2 = demo.project_files(BOT / "v1"), demo.project_files(BOT / "v2")
    assert set(v1) >= {"config.yml", "domain.yml", "nlu.yml", "rules.yml"}
    assert v1["domain.yml"] != v2["domain.yml"]
    assert demo.model_name("v1", v1) == demo.model_name("v1", dict(v1))
    assert demo.model_name("v1", v1) != demo.model_name("v1", {**v1, "nlu.yml": "changed"})
    assert demo.model_name("v1", v1).startswith("demo-bot-v1-")


def kinds(objects):
    return [(o["kind"], o["metadata"]["name"]) for o in objects]


def test_first_run_trains_both_versions_with_modeltrainings(tmp_path):
    objects, trainings = demo.demo_objects(BOT, tmp_path)
    assert trainings == ["demo-bot-v1", "demo-bot-v2"]
    assert kinds(objects) == [
        ("Namespace", "demo"),
        ("ConfigMap", "demo-bot-v1-project"),
        ("ModelTraining", "demo-bot-v1"),
        ("ConfigMap", "demo-bot-v2-project"),
        ("ModelTraining", "demo-bot-v2"),
        ("BotEnvironment", "production"),
        ("BotEnvironment", "experimental"),
    ]
    training = objects[2]["spec"]
    assert training["tag"] == "production"
    assert training["output"]["storage"] == {"provider": "local", "path": str(tmp_path)}
    assert training["output"]["modelName"] == demo.model_name("v1", demo.project_files(BOT / "v1"))
    assert objects[4]["spec"]["tag"] == "experimental"


def test_a_model_already_stored_is_not_trained_again(tmp_path):
    stored = demo.model_name("v1", demo.project_files(BOT / "v1"))
    (tmp_path / stored).write_bytes(b"a model")
    objects, trainings = demo.demo_objects(BOT, tmp_path)
    assert trainings == ["demo-bot-v2"]
    tag = next(o for o in objects if o["kind"] == "ModelTag")
    assert tag["metadata"]["name"] == "production"
    assert tag["spec"] == {
        "model": stored,
        "storage": {"provider": "local", "path": str(tmp_path)},
        # as a tag the first run's training created: `botenv train --tag` may move it
        "trainings": {"allowed": True},
    }


def test_progress_lines():
    assert demo.progress("botenvironment", "production", None) == (
        "botenvironment production: waiting for the operator"
    )
    ready = {
        "status": {
            "replicas": 1,
            "readyReplicas": 1,
            "model": {"name": "m.tar.gz"},
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    }
    assert demo.progress("botenvironment", "production", ready) == (
        "botenvironment production: Ready, 1/1 replicas, model m.tar.gz"
    )
    training = {
        "status": {
            "phase": "Training",
            "conditions": [{"type": "Ready", "status": "False", "message": "rasa train runs"}],
        }
    }
    assert (
        demo.progress("modeltraining", "t", training)
        == "modeltraining t: Training: rasa train runs"
    )


def test_a_directory_below_the_pods_own_tmp_is_refused(tmp_path):
    # tmp_path is below /tmp: a training pod's upload would write into its own /tmp volume.
    proc = run_demo(tmp_path)
    assert proc.returncode == demo.EXIT_MISSING
    assert proc.stderr.startswith(f"botenv: error: {tmp_path / 'state'} is below /tmp"), proc.stderr
    assert "BOTENV_LOCAL_DIR=DIR" in proc.stderr
