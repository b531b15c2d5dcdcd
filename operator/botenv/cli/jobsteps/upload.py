"""`botenv upload`: the upload step of a training Job. It stores a trained model with the
same storage backends the model server reads from, verifies what the store holds, and
prints one line of JSON for whoever runs it."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping

from botenv.cli.shared import EXIT_FAILED, EXIT_OK, StepError, print_error, step_progress
from botenv.cli.shared import read_secret_dir as shared_read_secret_dir

DEFAULT_SECRET_DIR = "/var/run/secrets/botenv/storage"

DESCRIPTION = f"""\
Upload FILE as model NAME to the storage described by --storage-json (a ModelTag's
spec.storage block as JSON), then stat it and check that the store holds exactly that
file (size, and the store's MD5 or an S3 ETag made of it). On success, one line of JSON
goes to stdout: {{"model", "key", "digest", "size"}}. Progress and errors go to stderr.

Credentials: every file in --secret-dir (a mounted Secret volume: file name = key,
content = value) is handed to the storage backend, exactly as the model server hands it
a Secret's data. Default: {DEFAULT_SECRET_DIR}. Without a directory there are no
credentials from a Secret: the backend's default chain applies (IRSA, workload identity)."""

EPILOG = """\
exit codes:
  0  uploaded and verified
  1  failed (bad storage JSON, unreadable file, store refused or unreachable, the stored
     object does not match the file); the message names the store and key
  2  usage error"""


class UploadError(StepError):
    """A failure to report as `error: ...` with exit code 1."""


def add_upload_command(sub: argparse._SubParsersAction) -> None:
    """Register `upload` on botenv's subcommands (botenv.cli.parser)."""
    p = sub.add_parser(
        "upload",
        help="upload a trained model to storage and verify it (the training Job's last step)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="the model file, e.g. models/NAME.tar.gz")
    p.add_argument(
        "--storage-json",
        required=True,
        metavar="JSON",
        help='the storage block, e.g. {"provider": "s3", "bucket": "models", "prefix": "acme/"}',
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="NAME",
        help="the model's object name in storage, e.g. 20240501-120000.tar.gz",
    )
    p.add_argument(
        "--secret-dir",
        default=None,
        metavar="DIR",
        help=f"a mounted Secret with the storage credentials (default: "
        f"{DEFAULT_SECRET_DIR}; none when the directory is absent)",
    )
    p.add_argument(
        "--gates",
        default=None,
        metavar="FILE",
        help="the summary of `botenv check-gates`: store the model only if it says every "
        'gate passed; otherwise store nothing and print {"model", "uploaded": false}',
    )
    p.set_defaults(func=cmd_upload)


def cmd_upload(args: argparse.Namespace) -> int:
    credentials: Mapping[str, str] = {}
    try:
        failed = failed_gates(args.gates) if args.gates else []
        if failed:
            _progress(f"not uploading {args.model}: gate {', '.join(failed)} failed")
            sys.stdout.write(json.dumps({"model": args.model, "uploaded": False}) + "\n")
            return EXIT_OK
        credentials = read_secret_dir(args.secret_dir)
        result = upload(args.file, args.storage_json, args.model, credentials)
    except StepError as exc:
        print_error(str(exc), credentials)
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 -- a one-shot command: say it, exit 1
        print_error(f"unexpected {type(exc).__name__}: {exc}", credentials)
        return EXIT_FAILED
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return EXIT_OK


def failed_gates(path: str) -> list[str]:
    """The gates that failed according to a `botenv check-gates` summary. A summary that
    cannot be read is an error: no model is stored unless its gates are known to pass."""
    try:
        with open(path) as f:
            summary = json.load(f)
    except (OSError, ValueError) as exc:
        raise UploadError(f"--gates {path}: cannot read the gates' summary ({exc})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("gates"), list):
        raise UploadError(f"--gates {path}: not a summary of botenv check-gates")
    failed = [str(g.get("name")) for g in summary["gates"] if not g.get("passed")]
    if summary.get("passed") is not True and not failed:
        failed = ["(unnamed)"]
    return failed


def read_secret_dir(secret_dir: str | None) -> dict[str, str]:
    """The credentials in a mounted Secret volume, as the model server decodes a Secret;
    without a directory, those at DEFAULT_SECRET_DIR when it exists."""
    if secret_dir is None:
        if not os.path.isdir(DEFAULT_SECRET_DIR):
            return {}
        secret_dir = DEFAULT_SECRET_DIR
    return shared_read_secret_dir(secret_dir)


def upload(
    file: str, storage_json: str, model: str, credentials: Mapping[str, str]
) -> dict[str, object]:
    from botenv.api import SpecError, parse_tag
    from botenv.storage import StorageError
    from botenv.storage.factory import key_for, storage_for
    from botenv.storage.policy import UNRESTRICTED

    try:
        storage = json.loads(storage_json)
    except ValueError as exc:
        raise UploadError(f"--storage-json is not JSON ({exc})") from None
    if not isinstance(storage, dict):
        raise UploadError(
            f"--storage-json must be a JSON object (the storage block), got "
            f"{type(storage).__name__}"
        )
    try:
        # The ModelTag parser: the same rules and defaults as the tags that will name it.
        spec = parse_tag({"spec": {"model": model, "storage": storage}}).storage
    except SpecError as exc:
        raise UploadError(
            "invalid storage or model: " + "; ".join(_field(problem) for problem in exc.problems)
        ) from None
    if not os.path.isfile(file):
        raise UploadError(
            f"{file}: no such file" if not os.path.exists(file) else f"{file}: not a regular file"
        )
    key = key_for(spec, model)
    size = os.path.getsize(file)
    _progress(f"uploading {file} ({size / 1e6:.1f} MB) to {spec.provider} as {key}")
    began = time.monotonic()
    try:
        # UNRESTRICTED: this runs in the tenant's own Job pod, with the tenant's identity.
        info = storage_for(spec, credentials, policy=UNRESTRICTED).put(key, file)
    except StorageError as exc:
        raise UploadError(str(exc)) from None
    took = time.monotonic() - began
    _progress(
        f"done: {info.size / 1e6:.1f} MB in {took:.1f} s "
        f"({info.size / 1e6 / max(took, 1e-6):.1f} MB/s), verified, digest {info.digest}"
    )
    return {"model": model, "key": key, "digest": info.digest, "size": info.size}


def _field(problem: str) -> str:
    # The tag parser's paths, in the terms of this command's arguments.
    if problem.startswith("spec.storage"):
        return "--storage-json " + problem[len("spec.") :]
    if problem.startswith("spec.model"):
        return "--model" + problem[len("spec.model") :]
    return problem


def _progress(line: str) -> None:
    step_progress("upload", line)
