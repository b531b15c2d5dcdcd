"""botenv reads the Rasa version of real models trained by Rasa 3.6.21, and its version
gate agrees with Rasa's own loader on which archives load: the real model, a copy whose
metadata says an older Rasa trained it, and one that says a newer Rasa did."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from botenv.render import compat
from botenv.storage.modelmeta import MetadataError, read_metadata
from tests.rasa.conftest import Models
from tests.support.archives import with_rasa_version
from tests.support.rasa import RASA_VERSION, model_id, rasa_python

pytestmark = pytest.mark.rasa

SERVER = compat.server_of(f"rasa/rasa:{RASA_VERSION}-full")

# What Rasa 3.6.21 itself does with an archive's metadata before it loads the model.
RASA_CHECK = """
import sys
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.exceptions import UnsupportedModelVersionError
try:
    LocalModelStorage.metadata_from_archive(sys.argv[1])
except UnsupportedModelVersionError as exc:
    print("refused:", exc)
else:
    print("loads")
"""


def chunks(path: Path, size: int = 64 * 1024):
    with path.open("rb") as f:
        while chunk := f.read(size):
            yield chunk


def rasa_says(path: Path) -> str:
    done = subprocess.run(
        [str(rasa_python()), "-c", RASA_CHECK, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_a_real_model_names_the_rasa_that_trained_it(rasa_models: Models):
    for model in (rasa_models.a, rasa_models.b):
        found = read_metadata(chunks(model.path))
        assert found.rasa_version == RASA_VERSION
        assert found.model_id == model_id(model.path)


def test_the_gate_refuses_exactly_what_rasa_refuses(rasa_models: Models, tmp_path: Path):
    real = rasa_models.a.path
    old = with_rasa_version(real, "3.5.4", tmp_path / "old.tar.gz")
    newer = with_rasa_version(real, "3.7.0", tmp_path / "newer.tar.gz")
    for path, version, loads in (
        (real, RASA_VERSION, True),
        (old, "3.5.4", False),
        (newer, "3.7.0", True),
    ):
        assert read_metadata(chunks(path)).rasa_version == version
        refused = compat.refusal(version, SERVER)
        verdict = rasa_says(path)
        assert (verdict == "loads") == loads == (not refused), (path.name, verdict, refused)
    assert "3.5.4" in rasa_says(old) and "3.6.21" in compat.refusal("3.5.4", SERVER)


def test_a_truncated_real_model_says_so(rasa_models: Models, tmp_path: Path):
    data = rasa_models.a.path.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(MetadataError, match="the archive is truncated"):
        read_metadata(chunks(cut))
