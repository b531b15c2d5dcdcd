"""`botenv train DIR`: a local Rasa project into a ConfigMap and a ModelTraining, followed to
the end. The operator runs the Job, stores the model and moves the tag."""

from __future__ import annotations

import argparse
import datetime
import re
import sys
import time
from pathlib import Path

from botenv import API_VERSION
from botenv.cli.shared import (
    CLI_FIELD_MANAGER,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Session,
    api_call,
)
from botenv.render.gates import TESTS_PREFIX

# A ConfigMap holds at most 1 MiB; leave room for its metadata.
MAX_PROJECT_BYTES = 900 * 1024
_KEY = re.compile(r"[^-._a-zA-Z0-9]")
_NAME = re.compile(r"[^-a-z0-9]")


class ProjectError(ValueError):
    """The folder is not a project `botenv train` can send."""


def pack_project(root: Path) -> dict[str, str]:
    """config.yml, domain.yml and every YAML file under data/ as ConfigMap keys (data files
    flattened to their path with '__' for '/'), and those under tests/ (test stories, NLU
    test data for spec.test) as tests__PATH."""
    if not root.is_dir():
        raise ProjectError(f"{root}: not a directory")
    files: dict[str, str] = {}
    for required in ("config.yml", "domain.yml"):
        path = root / required
        if not path.is_file():
            hint = (
                " (a domain/ directory is not supported: merge it into domain.yml)"
                if required == "domain.yml" and (root / "domain").is_dir()
                else ""
            )
            raise ProjectError(f"{root}: no {required}{hint}")
        files[required] = path.read_text()
    data = root / "data"
    found = (
        sorted(p for p in data.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())
        if data.is_dir()
        else []
    )
    if not found:
        raise ProjectError(f"{root}: no training data (YAML files under data/)")
    tests = root / "tests"
    test_files = (
        sorted(p for p in tests.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())
        if tests.is_dir()
        else []
    )
    for folder, prefix, paths in ((data, "", found), (tests, TESTS_PREFIX, test_files)):
        for path in paths:
            key = prefix + _KEY.sub("-", path.relative_to(folder).as_posix().replace("/", "__"))
            if not prefix and key.startswith(TESTS_PREFIX):
                raise ProjectError(
                    f"{path}: its ConfigMap key {key!r} would put it in the project's tests/ "
                    "folder: rename that folder under data/"
                )
            if key in files:
                raise ProjectError(f"{path}: its ConfigMap key {key!r} is taken by another file")
            files[key] = path.read_text()
    size = sum(len(v.encode()) for v in files.values())
    if size > MAX_PROJECT_BYTES:
        raise ProjectError(
            f"{root}: the project is {size // 1024} KiB; a ConfigMap holds "
            f"at most about {MAX_PROJECT_BYTES // 1024} KiB"
        )
    return files


def training_name(base: str, now: datetime.datetime) -> str:
    name = _NAME.sub("-", base.lower()).strip("-")[:40] or "training"
    return f"{name}-{now:%Y%m%d-%H%M%S}"


def training_body(
    name: str,
    namespace: str,
    *,
    project: str,
    storage: dict,
    tag: str,
    image: str,
    model_name: str,
    gates: dict | None = None,
) -> dict:
    spec: dict = {"source": {"configMap": {"name": project}}, "output": {"storage": storage}}
    spec.update(gates or {})
    if tag:
        spec["tag"] = tag
    if image:
        spec["image"] = image
    if model_name:
        spec["output"]["modelName"] = model_name
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelTraining",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def progress_line(status: dict) -> str:
    phase = status.get("phase") or "Pending"
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return f"{phase}: {ready.get('message') or status.get('message') or ''}".rstrip(": ")


def cmd_train(args: argparse.Namespace) -> int:
    try:
        files = pack_project(Path(args.project))
    except ProjectError as exc:
        raise CliError(EXIT_USAGE, str(exc)) from None
    storage_from = args.storage_from or args.tag
    if not storage_from:
        raise CliError(
            EXIT_USAGE,
            "--tag or --storage-from TAG is required: the model is "
            "stored where that ModelTag's models are",
        )
    session = Session(args)
    namespace = session.namespace
    tag = session.tag(storage_from)
    storage = dict((tag.get("spec") or {}).get("storage") or {})
    name = args.name or training_name(
        args.tag or Path(args.project).resolve().name, datetime.datetime.now(datetime.UTC)
    )
    body = training_body(
        name,
        namespace,
        project=f"{name}-project",
        storage=storage,
        tag=args.tag,
        image=args.image,
        # A generated name carries the time already: the model is named after it (the
        # operator's default would add the time a second time).
        model_name=args.model_name or ("" if args.name else f"{name}.tar.gz"),
        gates=gates_of(args),
    )
    with api_call("create", "ModelTraining", namespace, name, server=session.server):
        created = session.kube.create(body, field_manager=CLI_FIELD_MANAGER)
    if created is None:
        raise CliError(
            EXIT_FAILED,
            f"modeltraining '{name}' already exists in namespace "
            f"'{namespace}': pick another --name",
        )
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{name}-project",
            "namespace": namespace,
            "labels": {"botenv.dev/training": name},
            # deleted with its training
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "ModelTraining",
                    "name": name,
                    "uid": created["metadata"]["uid"],
                }
            ],
        },
        "data": files,
    }
    with api_call("create", "ConfigMap", namespace, f"{name}-project", server=session.server):
        session.kube.create(configmap, field_manager=CLI_FIELD_MANAGER)
    print(
        f"modeltraining '{name}' created in namespace '{namespace}' ({len(files)} files"
        f"{f', tag {args.tag}' if args.tag else ''})",
        flush=True,
    )
    if args.no_follow:
        return EXIT_OK
    deadline = time.monotonic() + args.timeout
    last = ""
    while time.monotonic() < deadline:
        with api_call("get", "ModelTraining", namespace, name, server=session.server):
            current = session.kube.get_object(API_VERSION, "ModelTraining", namespace, name)
        status = current.get("status") or {}
        line = progress_line(status)
        if line != last:
            print(f"  {line}", flush=True)
            last = line
        if status.get("phase") == "Succeeded" and status.get("observedGeneration") == current[
            "metadata"
        ].get("generation"):
            return EXIT_OK
        if status.get("phase") == "Failed":
            if status.get("logTail"):
                print(status["logTail"], file=sys.stderr)
            raise CliError(
                EXIT_FAILED, f"training failed: {status.get('reason')}: {status.get('message')}"
            )
        time.sleep(2)
    raise CliError(
        EXIT_FAILED, f"timed out after {args.timeout:g}s; `botenv status` shows how it goes on"
    )


def gates_of(args: argparse.Namespace) -> dict:
    """The ModelTraining's spec.validate, failOnWarnings and test from the gate flags."""
    gates: dict = {}
    if args.validate:
        gates["validate"] = True
    if args.fail_on_warnings:
        gates["failOnWarnings"] = True
    thresholds = {
        k: v
        for k, v in (
            ("minIntentF1", args.min_intent_f1),
            ("minStoryAccuracy", args.min_story_accuracy),
        )
        if v is not None
    }
    if args.test or thresholds:
        gates["test"] = thresholds
    return gates


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}")
    return value


def add_train_arguments(train: argparse.ArgumentParser) -> None:
    train.add_argument(
        "project", metavar="DIR", help="a Rasa project: config.yml, domain.yml and data/*.yml"
    )
    train.add_argument(
        "--tag",
        default="",
        help="the ModelTag to create or move to the new model (e.g. "
        "experimental); its storage is the output unless --storage-from",
    )
    train.add_argument(
        "--storage-from",
        default="",
        metavar="TAG",
        help="store the model where this ModelTag's models are (default: --tag)",
    )
    train.add_argument(
        "--name",
        default="",
        help="the ModelTraining's name (default: the tag or folder name and the time)",
    )
    train.add_argument(
        "--model-name",
        default="",
        metavar="NAME.tar.gz",
        help="the model file name (default: derived, unique)",
    )
    train.add_argument("--image", default="", help="the Rasa image that trains")
    gates = train.add_argument_group(
        "gates", "checks the model must pass before it is stored and the tag moves"
    )
    gates.add_argument(
        "--validate", action="store_true", help="run rasa data validate before training"
    )
    gates.add_argument(
        "--fail-on-warnings",
        action="store_true",
        help="with --validate: rasa data validate's warnings fail the gate too",
    )
    gates.add_argument(
        "--test",
        action="store_true",
        help="run rasa test on the model with the project's tests/ (implied by a threshold)",
    )
    gates.add_argument(
        "--min-intent-f1", type=_fraction, metavar="F", help="least intent F1 (0 to 1)"
    )
    gates.add_argument(
        "--min-story-accuracy",
        type=_fraction,
        metavar="F",
        help="least share of test stories predicted right (0 to 1)",
    )
    train.add_argument("--timeout", type=float, default=3600.0, metavar="SECONDS")
    train.add_argument(
        "--no-follow", action="store_true", help="create it and return; do not wait for the result"
    )
