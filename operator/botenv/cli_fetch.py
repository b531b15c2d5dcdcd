"""`botenv fetch-project`: the first step of a training Job whose source is an archive in
storage. It downloads the .tar.gz with the storage backends the model server uses and
unpacks it as a Rasa project (config.yml, domain.yml, data/) into a directory."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path

from botenv.cli_upload import UploadError, _error, read_secret_dir

EXIT_OK, EXIT_FAILED = 0, 1
DEFAULT_SECRET_DIR = "/var/run/secrets/botenv/source"


class FetchError(Exception):
    """A failure to report as `error: ...` with exit code 1."""


def unpack(archive: Path, into: Path) -> Path:
    """Unpack a project archive safely into `into` (no absolute paths, '..' or links: the
    tarfile 'data' filter) and return the project root: `into`, or its single top-level
    directory when the archive wraps the project in one."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise FetchError(f"cannot unpack the archive: {exc}") from None
    root = into
    entries = [p for p in into.iterdir() if not p.name.startswith(".")]
    if not (into / "config.yml").is_file() and len(entries) == 1 and entries[0].is_dir():
        root = entries[0]
    missing = [n for n in ("config.yml", "domain.yml") if not (root / n).is_file()]
    if missing or not (root / "data").is_dir():
        what = ", ".join(missing + ([] if (root / "data").is_dir() else ["data/"]))
        raise FetchError(f"the archive is not a Rasa project: no {what} at its top level")
    if root != into:  # lift the wrapping directory's content up
        for child in list(root.iterdir()):
            shutil.move(str(child), into / child.name)
        root.rmdir()
    return into


def fetch(storage_json: str, obj: str, into: Path, credentials: Mapping[str, str]) -> Path:
    from botenv.api import SpecError, parse_tag
    from botenv.storage import StorageError
    from botenv.storage.factory import key_for, storage_for
    from botenv.storage.policy import UNRESTRICTED

    try:
        storage = json.loads(storage_json)
        spec = parse_tag({"spec": {"model": obj, "storage": storage}}).storage
    except (ValueError, SpecError) as exc:
        raise FetchError(f"invalid --storage-json or --object: {exc}") from None
    key = key_for(spec, obj)
    into.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(suffix=".tar.gz", dir=into.parent) as tmp:
        try:
            # UNRESTRICTED: this runs in the tenant's own Job pod, with the tenant's identity.
            for chunk in storage_for(spec, credentials, policy=UNRESTRICTED).open(key):
                tmp.write(chunk)
        except StorageError as exc:
            raise FetchError(str(exc)) from None
        tmp.flush()
        print(f"botenv fetch-project: {key} ({os.path.getsize(tmp.name)} bytes) from "
              f"{spec.provider}", file=sys.stderr, flush=True)
        return unpack(Path(tmp.name), into)


def add_fetch_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fetch-project", help="download and unpack a Rasa project archive "
                                             "(a training Job's first step)")
    p.add_argument("--storage-json", required=True, metavar="JSON",
                   help="the storage block of the archive, as in a ModelTag")
    p.add_argument("--object", required=True, help="the archive's name in that storage")
    p.add_argument("--into", required=True, help="the directory to unpack the project into")
    p.add_argument("--secret-dir", default=None, metavar="DIR",
                   help=f"a mounted Secret with the storage credentials (default: "
                        f"{DEFAULT_SECRET_DIR} when it exists)")
    p.set_defaults(func=cmd_fetch)


def cmd_fetch(args: argparse.Namespace) -> int:
    credentials: Mapping[str, str] = {}
    try:
        secret_dir = args.secret_dir
        if secret_dir is None and os.path.isdir(DEFAULT_SECRET_DIR):
            secret_dir = DEFAULT_SECRET_DIR
        credentials = read_secret_dir(secret_dir) if secret_dir else {}
        fetch(args.storage_json, args.object, Path(args.into), credentials)
    except (FetchError, UploadError) as exc:
        _error(str(exc), credentials)
        return EXIT_FAILED
    return EXIT_OK
