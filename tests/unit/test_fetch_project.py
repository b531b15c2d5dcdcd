"""`botenv fetch-project`: a project archive from storage (local storage here, real tar
files) unpacked safely as a Rasa project."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from botenv.cli_fetch import FetchError, unpack


def archive(path: Path, files: dict[str, str], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


PROJECT = {"config.yml": "recipe: default.v1\n", "domain.yml": "version: '3.1'\n",
           "data/nlu.yml": "nlu: []\n"}


def test_a_project_at_the_top_or_in_one_folder_is_unpacked_as_the_root(tmp_path: Path) -> None:
    flat = unpack(archive(tmp_path / "a.tar.gz", PROJECT), tmp_path / "a")
    assert (flat / "data" / "nlu.yml").read_text() == "nlu: []\n"
    wrapped = archive(tmp_path / "b.tar.gz", {f"acme-bot/{k}": v for k, v in PROJECT.items()})
    root = unpack(wrapped, tmp_path / "b")
    assert sorted(p.name for p in root.iterdir()) == ["config.yml", "data", "domain.yml"]


def test_unsafe_members_and_non_projects_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="cannot unpack"):
        unpack(archive(tmp_path / "evil.tar.gz", {**PROJECT, "../escape.yml": "x"}),
               tmp_path / "evil")
    assert not (tmp_path / "escape.yml").exists()
    with pytest.raises(FetchError, match="cannot unpack"):
        unpack(archive(tmp_path / "link.tar.gz", PROJECT, {"data/l.yml": "/etc/passwd"}),
               tmp_path / "link")
    with pytest.raises(FetchError, match="not a Rasa project: no domain.yml"):
        unpack(archive(tmp_path / "c.tar.gz", {"config.yml": "x", "data/nlu.yml": "y"}),
               tmp_path / "c")


def test_the_command_fetches_from_storage(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "projects").mkdir(parents=True)
    archive(store / "projects" / "acme.tar.gz", PROJECT)
    storage = json.dumps({"provider": "local", "path": str(store), "prefix": "projects/"})
    run = subprocess.run([sys.executable, "-m", "botenv", "fetch-project", "--storage-json",
                          storage, "--object", "acme.tar.gz", "--into",
                          str(tmp_path / "project")], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "project" / "domain.yml").is_file()
    missing = subprocess.run([sys.executable, "-m", "botenv", "fetch-project", "--storage-json",
                              storage, "--object", "nope.tar.gz", "--into",
                              str(tmp_path / "other")], capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 1 and missing.stderr.startswith("error: ")
