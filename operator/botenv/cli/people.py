"""`botenv status|promote|rollback|history|train`: the commands release managers use, also
run as a kubectl plugin (`kubectl botenv ...`). They talk to the API server through
botenv.kube.client with the person's kubeconfig (botenv.cli.shared.Session); what they print
is made in botenv.cli.output, what they choose in botenv.cli.decisions."""

from __future__ import annotations

import argparse
import datetime
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from botenv.cli import decisions, output
from botenv.cli.chat import add_chat_arguments, cmd_chat
from botenv.cli.shared import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, Session
from botenv.cli.train import add_train_arguments, cmd_train

EXIT_CODES = """\
exit codes:
  0  ok
  1  the operation failed (a tag not Ready, no history to roll back to, --wait timed out
     or the tag reported a failure)
  2  usage error
  3  not found (a tag, or the botenv CRDs)
  4  forbidden or unauthorized (RBAC: the message names the verb and resource)
  5  cannot reach the cluster (no kubeconfig, unknown context, connection failed)"""

GITOPS_NOTE = (
    "Under GitOps (Argo CD, Flux) the commit is the promotion: change spec.model in Git, "
    "since the next sync sets it back to what Git says (botenv warns when a GitOps tool "
    "manages the tag). The change is a JSON merge patch of spec.model alone, field manager "
    "botenv-cli: it needs no force and does not make botenv-cli an applier of the field. "
    "Like any write, it makes botenv-cli the owner of spec.model until the GitOps tool "
    "applies Git's value again."
)

T = TypeVar("T")

# -o: kubectl's formats; `table` is the default view, `wide` adds columns.
OUTPUTS = ("table", "wide", "yaml", "json", "name")
# Seconds between two looks at the cluster under `status --watch`.
WATCH_INTERVAL = 2.0
STATUS_KINDS = ("BotEnvironment", "ModelTag", "ModelTraining")


def _text(*paragraphs: str) -> str:
    return "\n\n".join(textwrap.fill(p, 88) for p in paragraphs)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# --- commands ------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    session = Session(args)
    namespace = None if session.all_namespaces else session.namespace

    def snapshot() -> list[tuple[str, dict]]:
        return [(kind, body) for kind in STATUS_KINDS for body in session.list(kind)]

    def view(objects: list[tuple[str, dict]]) -> object:
        """What the output shows of the objects, without the time: a change of it is a
        change to print under --watch."""
        if args.output in ("yaml", "json"):
            return output.documents(objects)
        if args.output == "name":
            return output.names(objects)
        return _summaries(objects)

    def show(objects: list[tuple[str, dict]], first: bool) -> None:
        if args.output in ("yaml", "json"):
            if not first and args.output == "yaml":
                print("---")
            print(output.render_document(output.documents(objects), args.output))
            return
        if args.output == "name":
            print(output.names(objects))
            return
        environments, tags, trainings = _summaries(objects)
        if not first:
            print()
        text = output.status_text(
            environments,
            tags,
            namespace=namespace,
            now=_now(),
            trainings=trainings,
            wide=args.output == "wide",
            no_headers=args.no_headers,
        )
        if text:
            print(text)

    if not args.watch:
        show(snapshot(), True)
        return EXIT_OK
    shown = 0

    def show_next(objects: list[tuple[str, dict]]) -> None:
        nonlocal shown
        show(objects, shown == 0)
        shown += 1
        sys.stdout.flush()

    return watch(_every(WATCH_INTERVAL, snapshot), key=view, show=show_next)


def _summaries(objects: list[tuple[str, dict]]) -> tuple[list[dict], list[dict], list[dict]]:
    summary = {
        "BotEnvironment": output.environment_summary,
        "ModelTag": output.tag_summary,
        "ModelTraining": output.training_summary,
    }
    rows: dict[str, list[dict]] = {kind: [] for kind in STATUS_KINDS}
    for kind, body in objects:
        rows[kind].append(summary[kind](body))
    return rows["BotEnvironment"], rows["ModelTag"], rows["ModelTraining"]


def _every(interval: float, look: Callable[[], T]) -> Iterator[T]:
    """`look()` now and then every `interval` seconds, for ever."""
    while True:
        yield look()
        time.sleep(interval)


def watch(snapshots: Iterable[T], *, key: Callable[[T], object], show: Callable[[T], None]) -> int:
    """`show` the first snapshot and each one whose `key` differs from the last shown, until
    the snapshots end or Ctrl-C, which is how a watch ends: exit code 0."""
    missing = object()
    last: object = missing
    try:
        for snap in snapshots:
            current = key(snap)
            if last is missing or current != last:
                show(snap)
                last = current
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    session = Session(args)
    body = session.tag(args.tag)
    if args.output in ("yaml", "json"):
        print(output.render_document(output.documents([("ModelTag", body)]), args.output))
    elif args.output == "name":
        print(output.names([("ModelTag", body)]))
    else:
        text = output.history_text(
            body, _now(), wide=args.output == "wide", no_headers=args.no_headers
        )
        if text:
            print(text)
    return EXIT_OK


def cmd_promote(args: argparse.Namespace) -> int:
    session = Session(args)
    body = session.tag(args.tag)
    if args.from_tag:
        if args.from_tag == args.tag:
            raise CliError(EXIT_USAGE, "--from names the tag being promoted")
        source = session.tag(args.from_tag)
        model = _refused_is_failure(lambda: decisions.promote_source(source))
        image = decisions.source_action_image(source)
        note = f"copied from modeltag '{args.from_tag}', which resolves to it"
        if (source.get("spec") or {}).get("storage") != (body.get("spec") or {}).get("storage"):
            note += (
                f"; the tags use different storage, so {model} must also exist in "
                f"the storage of modeltag '{args.tag}'"
            )
    else:
        model, note, image = args.model, "", None
    return _move(session, body, model, note, args, action_server_image=image)


def cmd_rollback(args: argparse.Namespace) -> int:
    session = Session(args)
    body = session.tag(args.tag)
    target = _refused_is_failure(lambda: decisions.rollback_target(body))
    return _move(
        session,
        body,
        target.model,
        target.why,
        args,
        action_server_image=target.action_server_image,
    )


def _refused_is_failure(choose: Callable[[], T]) -> T:
    try:
        return choose()
    except decisions.Refused as exc:
        raise CliError(EXIT_FAILED, str(exc)) from None


def _move(
    session: Session,
    body: dict,
    model: str,
    note: str,
    args: argparse.Namespace,
    *,
    action_server_image: str | None = None,
) -> int:
    """Set spec.model, print what changed, and --wait. `action_server_image` is the image
    that went with `model` where it comes from (None: unknown, left as it is); it is set in
    the same patch, so a rollback or a promotion from another tag moves the pair."""
    meta = body["metadata"]
    spec_image = (body.get("spec") or {}).get("actionServerImage", "")
    image = (
        action_server_image
        if action_server_image is not None and action_server_image != spec_image
        else None
    )
    move = decisions.Move(
        namespace=session.namespace,
        tag=meta["name"],
        old=(body.get("spec") or {}).get("model", ""),
        new=model,
        note=note,
        image_change=decisions.image_change(spec_image, image),
    )
    owner = decisions.gitops_owner(body)
    if owner and move.changes:
        _warn(
            f"modeltag '{move.tag}' is managed by {owner}: its next sync sets spec.model "
            "back to what Git says. Under GitOps, commit the change instead."
        )
    generation = meta.get("generation", 0)
    environments = ((body.get("status") or {}).get("environments")) or []
    # --wait follows the environments that serve now; one that is down stays down.
    serving = (
        [e for e in environments if decisions.serving(session.environment(e) or {})]
        if args.wait and not args.dry_run and move.changes
        else []
    )
    if move.changes:
        patched = session.set_model(
            move.tag, move.new, dry_run=args.dry_run, action_server_image=image
        )
        generation = patched["metadata"].get("generation", generation)
    suffix = " (dry run: nothing changed)" if args.dry_run and move.changes else ""
    print(move.describe() + suffix)
    if move.note:
        print(f"  {move.note}")
    if move.image_change:
        print(f"  {move.image_change}")
    if move.changes:
        verb = "would follow" if args.dry_run else "follow"
        print(f"  environments that {verb} the tag: {', '.join(environments) or 'none'}")
    if args.wait and not args.dry_run:
        deadline = time.monotonic() + args.timeout
        _wait(session, move, generation, args.timeout)
        # An environment whose Rasa cannot load the model does not roll to it: say so now.
        refused = decisions.refusals(session.tag(move.tag))
        for name in serving:
            if name in refused:
                print(f"  botenvironment '{name}' refuses {move.new}: {refused[name]}", flush=True)
        others = [n for n in serving if n not in refused]
        _wait_environments(session, move.new, others, deadline, args.timeout)
        stuck = [n for n in serving if n in refused]
        if stuck:
            raise CliError(
                EXIT_FAILED,
                f"{', '.join(repr(n) for n in stuck)} cannot load {move.new} and stay on "
                "their model (ModelIncompatible): move the tag to a model their Rasa loads",
            )
        return EXIT_OK
    return EXIT_OK


def _wait(session: Session, move: decisions.Move, generation: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    state = decisions.WaitState(False, waiting="no answer yet")
    while time.monotonic() < deadline:
        body = session.tag(move.tag)
        state = decisions.wait_state(body, move.new, generation)
        if state.done:
            status = body.get("status") or {}
            print(
                f"modeltag '{move.tag}' resolves to {move.new} (digest "
                f"{output.short_digest(status.get('digest'))}); environments: "
                f"{', '.join(status.get('environments') or []) or 'none'}",
                flush=True,
            )
            return EXIT_OK
        if state.failed:
            raise CliError(
                EXIT_FAILED,
                f"modeltag '{move.tag}' in namespace "
                f"'{move.namespace}' did not move to {move.new}: "
                f"{state.failed}",
            )
        time.sleep(0.5)
    raise CliError(
        EXIT_FAILED,
        f"timed out after {timeout:g}s waiting for modeltag "
        f"'{move.tag}' to resolve {move.new}: {state.waiting}",
    )


def _wait_environments(
    session: Session, model: str, names: list[str], deadline: float, timeout: float
) -> int:
    """Until every environment in `names` (those that served when the tag moved) serves
    `model` on all its replicas; a line whenever one of them moves on."""
    shown: dict[str, str] = {}
    waiting = list(names)
    while waiting:
        for name in list(waiting):
            body = session.environment(name)
            if body is None:  # deleted meanwhile: nothing to wait for
                waiting.remove(name)
                continue
            where = decisions.environment_wait(body, model)
            if not where:
                status = body.get("status") or {}
                print(
                    f"  botenvironment '{name}' serves {model} "
                    f"({status.get('readyReplicas', 0)}/{status.get('replicas', 0)} replicas)",
                    flush=True,
                )
                waiting.remove(name)
            elif shown.get(name) != where:
                print(f"  botenvironment '{name}': {where}", flush=True)
                shown[name] = where
        if waiting and time.monotonic() > deadline:
            raise CliError(
                EXIT_FAILED,
                f"timed out after {timeout:g}s waiting for "
                + ", ".join(f"botenvironment '{n}' ({shown.get(n, '')})" for n in waiting)
                + " to serve "
                + model,
            )
        if waiting:
            time.sleep(1)
    return EXIT_OK


# --- wiring --------------------------------------------------------------------------------


def _run(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except CliError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.code
        except KeyboardInterrupt:
            return 130

    return run


def _positive(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {value!r}")
    return seconds


def output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-o",
        "--output",
        choices=OUTPUTS,
        default="table",
        help="table (default); wide: more columns; yaml, json: the objects as the API "
        "server has them (a List for several), like kubectl; name: kind.group/name lines",
    )
    p.add_argument(
        "--no-headers", action="store_true", help="table and wide: the rows alone, no headers"
    )


def add_people_commands(parser: argparse.ArgumentParser, sub: argparse._SubParsersAction) -> None:
    """Register status, promote, rollback, history and train on botenv's parser
    (botenv.cli.parser)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXIT_CODES
    connection = argparse.ArgumentParser(add_help=False)
    group = connection.add_argument_group("cluster")
    group.add_argument(
        "-n",
        "--namespace",
        default="",
        help="the namespace (default: the kubeconfig context's, else default)",
    )
    group.add_argument(
        "--kubeconfig",
        default="",
        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)",
    )
    group.add_argument("--context", default="", help="kubeconfig context (default: current)")

    def add(
        name: str, help_: str, description: str, epilog: str = EXIT_CODES
    ) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_,
            description=description,
            epilog=epilog,
            parents=[connection],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    status = add(
        "status",
        "environments and tags at a glance: models, readiness, replicas",
        _text(
            "Show the BotEnvironments (tag, model served, Ready/Progressing/"
            "Degraded with reason, ready/desired replicas) and the ModelTags "
            "(model, digest, resolved at, Ready) of a namespace, and why anything "
            "is not Ready."
        ),
    )
    status.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    output_flags(status)
    status.add_argument(
        "-w",
        "--watch",
        action="store_true",
        help=f"after the first view, look again every {WATCH_INTERVAL:g}s and print it again "
        "when something changed; Ctrl-C ends it (exit code 0)",
    )
    status.set_defaults(func=_run(cmd_status))

    def moving(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--wait",
            action="store_true",
            help="wait until the tag resolves the new model (fail with the tag's Ready "
            "reason, e.g. ModelNotFound, if it cannot), then until every environment that "
            "was serving when the tag moved serves it on all its replicas",
        )
        p.add_argument(
            "--timeout",
            type=_positive,
            default=300.0,
            metavar="SECONDS",
            help="how long --wait waits (default: 300)",
        )
        p.add_argument(
            "--dry-run",
            action="store_true",
            help="print what would change; the server checks the patch "
            "(validation, RBAC) and writes nothing",
        )

    promote = add(
        "promote",
        "move a tag to a model, or to the model another tag serves",
        _text(
            "Move TAG to a model: set the ModelTag's spec.model. Every "
            "environment that follows TAG rolls to it once botenv finds the model "
            "in storage.",
            GITOPS_NOTE,
        ),
        f"{EXIT_CODES}\n\nexamples:\n"
        "  botenv promote production --from experimental --wait\n"
        "  kubectl botenv promote production --model 20190612-090129.tar.gz -n bots",
    )
    promote.add_argument("tag", metavar="TAG", help="the ModelTag to move")
    source = promote.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model", metavar="NAME", help="the model's object name in the tag's storage"
    )
    source.add_argument(
        "--from",
        dest="from_tag",
        metavar="OTHERTAG",
        help="copy the model OTHERTAG resolves to (status.model); OTHERTAG must be Ready",
    )
    moving(promote)
    promote.set_defaults(func=_run(cmd_promote))

    rollback = add(
        "rollback",
        "move a tag back to its previous model",
        _text(
            "Move TAG back to the previous model in its status.history (newest "
            "first: the first entry whose model differs from the one the tag "
            "resolves to). When spec.model was moved but never resolved (say, a "
            "missing model), rollback returns to the model the tag still "
            "resolves to, and no environment rolls.",
            GITOPS_NOTE,
        ),
    )
    rollback.add_argument("tag", metavar="TAG", help="the ModelTag to move back")
    moving(rollback)
    rollback.set_defaults(func=_run(cmd_rollback))

    chat = add(
        "chat",
        "talk to an environment's assistant (its REST channel)",
        _text(
            "Send messages to ENV's Rasa through its REST channel and print the answers: "
            "through the API server's proxy to the environment's Service, else straight "
            "to a Ready Rasa pod when its address is reachable from here."
        ),
        f"{EXIT_CODES}\n\nexamples:\n"
        "  botenv chat production -m hello\n"
        "  botenv chat experimental -n bots          (one line per message; Ctrl-D ends)",
    )
    add_chat_arguments(chat)
    chat.set_defaults(func=_run(cmd_chat))

    history = add(
        "history",
        "the models a tag resolved to, newest first",
        _text(
            "Show the model TAG resolves to now (marked *) and its earlier models "
            "from status.history, the rollback targets."
        ),
    )
    history.add_argument("tag", metavar="TAG", help="the ModelTag")
    output_flags(history)
    history.set_defaults(func=_run(cmd_history))

    train = add(
        "train",
        "train a local Rasa project in the cluster and move a tag",
        _text(
            "Pack DIR (config.yml, domain.yml, data/*.yml) into a ConfigMap, create "
            "a ModelTraining for it and follow it: the operator trains it in a Job, "
            "stores the model where TAG's models are and moves TAG to it. "
            "Promoting it further stays an explicit `botenv promote`."
        ),
        f"{EXIT_CODES}\n\nexample:\n  botenv train ./my-bot --tag experimental",
    )
    add_train_arguments(train)
    train.set_defaults(func=_run(cmd_train))
