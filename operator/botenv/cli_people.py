"""`botenv status|promote|rollback|history`: the commands release managers use, also run as a
kubectl plugin (`kubectl botenv ...`). They talk to the API server through botenv.kube.client
with the person's kubeconfig; what they print is made in botenv.cli_format."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from botenv import API_VERSION
from botenv import cli_format as fmt

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_FORBIDDEN, EXIT_UNREACHABLE = range(6)

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
    "applies Git's value again.")

T = TypeVar("T")


def _text(*paragraphs: str) -> str:
    return "\n\n".join(textwrap.fill(p, 88) for p in paragraphs)


PLURALS = {"ModelTag": "modeltags.botenv.dev", "BotEnvironment": "botenvironments.botenv.dev",
           "ModelTraining": "modeltrainings.botenv.dev"}


class CliError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@contextmanager
def _api(verb: str, kind: str, namespace: str, name: str = "", *, server: str = ""
         ) -> Iterator[None]:
    """Turn an API failure into a CliError that names the verb and the object."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    resource = PLURALS.get(kind, kind)
    scope = f"in namespace '{namespace}'" if namespace else "in any namespace"
    what = f"{kind.lower()} '{name}' {scope}" if name else f"{resource} {scope}"
    try:
        yield
    except ApiException as exc:
        detail = _server_message(exc)
        if exc.status == 404:
            if name and _names_object(exc):
                raise CliError(EXIT_NOT_FOUND, f"{kind.lower()} '{name}' not found {scope}"
                               ) from None
            raise CliError(EXIT_NOT_FOUND, f"the botenv CRDs are not installed in this "
                                           f"cluster: {resource} does not exist") from None
        if exc.status == 403:
            detail = detail.partition(" is forbidden: ")[2] or detail
            raise CliError(EXIT_FORBIDDEN, f"forbidden: cannot {verb} {resource}"
                                           f"{f' {name!r}' if name else ''} {scope}: "
                                           f"{detail}") from None
        if exc.status == 401:
            raise CliError(EXIT_FORBIDDEN, f"unauthorized: the cluster rejected the "
                                           f"credentials (while trying to {verb} {resource}): "
                                           f"{detail}") from None
        raise CliError(EXIT_FAILED, f"cannot {verb} {what}: {exc.status} {exc.reason}: "
                                    f"{detail}") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        at = f" at {server}" if server else ""
        raise CliError(EXIT_UNREACHABLE, f"cannot reach the cluster{at}: {reason}") from None


def _status_body(exc: Exception) -> dict:
    try:
        body = json.loads(getattr(exc, "body", "") or "")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _server_message(exc: Exception) -> str:
    return _status_body(exc).get("message") or str(getattr(exc, "body", "") or "").strip()


def _names_object(exc: Exception) -> bool:
    """A 404 Status about an object (details.name set), not a path the server lacks."""
    return bool((_status_body(exc).get("details") or {}).get("name"))


class Session:
    """A person's connection: the client and the namespace the commands act in."""

    def __init__(self, args: argparse.Namespace) -> None:
        from botenv.kube.client import NoKubeconfig, connect

        try:
            self.kube, default_namespace = connect(args.kubeconfig or "", args.context or "")
        except NoKubeconfig as exc:
            raise CliError(EXIT_UNREACHABLE, str(exc)) from None
        self.all_namespaces = bool(getattr(args, "all_namespaces", False))
        self.namespace = args.namespace or default_namespace
        self.server = self.kube.api.configuration.host

    def tag(self, name: str) -> dict:
        with _api("get", "ModelTag", self.namespace, name, server=self.server):
            return self.kube.get_object(API_VERSION, "ModelTag", self.namespace, name)

    def list(self, kind: str) -> list[dict]:
        namespace = "" if self.all_namespaces else self.namespace
        with _api("list", kind, namespace, server=self.server):
            items = self.kube.list_objects(API_VERSION, kind, namespace)
        return sorted(items, key=lambda o: (o["metadata"].get("namespace", ""),
                                            o["metadata"]["name"]))

    def set_model(self, name: str, model: str, *, dry_run: bool,
                  action_server_image: str | None = None) -> dict:
        """Move the tag; with `action_server_image`, its actions in the same patch ("" unsets
        it), so model and actions never move apart."""
        spec: dict = {"model": model}
        if action_server_image is not None:
            spec["actionServerImage"] = action_server_image or None
        with _api("patch", "ModelTag", self.namespace, name, server=self.server):
            return self.kube.merge_patch(API_VERSION, "ModelTag", self.namespace, name,
                                         {"spec": spec},
                                         field_manager=fmt.CLI_FIELD_MANAGER, dry_run=dry_run)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# --- commands ------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    session = Session(args)
    environments = [fmt.environment_summary(b) for b in session.list("BotEnvironment")]
    tags = [fmt.tag_summary(b) for b in session.list("ModelTag")]
    trainings = [fmt.training_summary(b) for b in session.list("ModelTraining")]
    namespace = None if session.all_namespaces else session.namespace
    if args.output == "json":
        _print_json({"namespace": namespace, "environments": environments, "tags": tags,
                     "trainings": trainings})
    else:
        print(fmt.status_text(environments, tags, namespace=namespace, now=_now(),
                              trainings=trainings))
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    session = Session(args)
    body = session.tag(args.tag)
    if args.output == "json":
        _print_json({"namespace": session.namespace, "tag": args.tag,
                     "specModel": (body.get("spec") or {}).get("model", ""),
                     "history": fmt.history_rows(body)})
    else:
        print(fmt.history_text(body, _now()))
    return EXIT_OK


def cmd_promote(args: argparse.Namespace) -> int:
    session = Session(args)
    body = session.tag(args.tag)
    if args.from_tag:
        if args.from_tag == args.tag:
            raise CliError(EXIT_USAGE, "--from names the tag being promoted")
        source = session.tag(args.from_tag)
        model = _refused_is_failure(lambda: fmt.promote_source(source))
        image = fmt.source_action_image(source)
        note = f"copied from modeltag '{args.from_tag}', which resolves to it"
        if (source.get("spec") or {}).get("storage") != (body.get("spec") or {}).get("storage"):
            note += (f"; the tags use different storage, so {model} must also exist in "
                     f"the storage of modeltag '{args.tag}'")
    else:
        model, note, image = args.model, "", None
    return _move(session, body, model, note, args, action_server_image=image)


def cmd_rollback(args: argparse.Namespace) -> int:
    session = Session(args)
    body = session.tag(args.tag)
    target = _refused_is_failure(lambda: fmt.rollback_target(body))
    return _move(session, body, target.model, target.why, args,
                 action_server_image=target.action_server_image)


def _refused_is_failure(choose: Callable[[], T]) -> T:
    try:
        return choose()
    except fmt.Refused as exc:
        raise CliError(EXIT_FAILED, str(exc)) from None


def _move(session: Session, body: dict, model: str, note: str, args: argparse.Namespace,
          *, action_server_image: str | None = None) -> int:
    """Set spec.model, print what changed, and --wait. `action_server_image` is the image
    that went with `model` where it comes from (None: unknown, left as it is); it is set in
    the same patch, so a rollback or a promotion from another tag moves the pair."""
    meta = body["metadata"]
    spec_image = (body.get("spec") or {}).get("actionServerImage", "")
    image = (action_server_image if action_server_image is not None
             and action_server_image != spec_image else None)
    move = fmt.Move(namespace=session.namespace, tag=meta["name"],
                    old=(body.get("spec") or {}).get("model", ""), new=model, note=note,
                    image_change=fmt.image_change(spec_image, image))
    owner = fmt.gitops_owner(body)
    if owner and move.changes:
        _warn(f"modeltag '{move.tag}' is managed by {owner}: its next sync sets spec.model "
              "back to what Git says. Under GitOps, commit the change instead.")
    generation = meta.get("generation", 0)
    if move.changes:
        patched = session.set_model(move.tag, move.new, dry_run=args.dry_run,
                                    action_server_image=image)
        generation = patched["metadata"].get("generation", generation)
    suffix = " (dry run: nothing changed)" if args.dry_run and move.changes else ""
    print(move.describe() + suffix)
    if move.note:
        print(f"  {move.note}")
    if move.image_change:
        print(f"  {move.image_change}")
    environments = ((body.get("status") or {}).get("environments")) or []
    if move.changes:
        verb = "would follow" if args.dry_run else "follow"
        print(f"  environments that {verb} the tag: {', '.join(environments) or 'none'}")
    if args.wait and not args.dry_run:
        return _wait(session, move, generation, args.timeout)
    return EXIT_OK


def _wait(session: Session, move: fmt.Move, generation: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    state = fmt.WaitState(False, waiting="no answer yet")
    while time.monotonic() < deadline:
        body = session.tag(move.tag)
        state = fmt.wait_state(body, move.new, generation)
        if state.done:
            status = body.get("status") or {}
            print(f"modeltag '{move.tag}' resolves to {move.new} (digest "
                  f"{fmt.short_digest(status.get('digest'))}); environments: "
                  f"{', '.join(status.get('environments') or []) or 'none'}")
            return EXIT_OK
        if state.failed:
            raise CliError(EXIT_FAILED, f"modeltag '{move.tag}' in namespace "
                                        f"'{move.namespace}' did not move to {move.new}: "
                                        f"{state.failed}")
        time.sleep(0.5)
    raise CliError(EXIT_FAILED, f"timed out after {timeout:g}s waiting for modeltag "
                                f"'{move.tag}' to resolve {move.new}: {state.waiting}")


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


def add_people_commands(parser: argparse.ArgumentParser,
                        sub: argparse._SubParsersAction) -> None:
    """Register status, promote, rollback and history on botenv's parser (botenv.cli)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXIT_CODES
    connection = argparse.ArgumentParser(add_help=False)
    group = connection.add_argument_group("cluster")
    group.add_argument("-n", "--namespace", default="",
                       help="the namespace (default: the kubeconfig context's, else default)")
    group.add_argument("--kubeconfig", default="",
                       help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    group.add_argument("--context", default="", help="kubeconfig context (default: current)")

    def add(name: str, help_: str, description: str, epilog: str = EXIT_CODES
            ) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=description, epilog=epilog,
                              parents=[connection],
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    status = add("status", "environments and tags at a glance: models, readiness, replicas",
                 _text("Show the BotEnvironments (tag, model served, Ready/Progressing/"
                       "Degraded with reason, ready/desired replicas) and the ModelTags "
                       "(model, digest, resolved at, Ready) of a namespace, and why anything "
                       "is not Ready."))
    status.add_argument("-A", "--all-namespaces", action="store_true",
                        help="every namespace")
    status.add_argument("-o", "--output", choices=("table", "json"), default="table")
    status.set_defaults(func=_run(cmd_status))

    def moving(p: argparse.ArgumentParser) -> None:
        p.add_argument("--wait", action="store_true",
                       help="wait until the tag resolves the new model; fail with the "
                            "tag's Ready reason (e.g. ModelNotFound) if it cannot")
        p.add_argument("--timeout", type=_positive, default=120.0, metavar="SECONDS",
                       help="how long --wait waits (default: 120)")
        p.add_argument("--dry-run", action="store_true",
                       help="print what would change; the server checks the patch "
                            "(validation, RBAC) and writes nothing")

    promote = add("promote", "move a tag to a model, or to the model another tag serves",
                  _text("Move TAG to a model: set the ModelTag's spec.model. Every "
                        "environment that follows TAG rolls to it once botenv finds the model "
                        "in storage.", GITOPS_NOTE), f"{EXIT_CODES}\n\nexamples:\n"
                  "  botenv promote production --from experimental --wait\n"
                  "  kubectl botenv promote production --model 20190612-090129.tar.gz -n bots")
    promote.add_argument("tag", metavar="TAG", help="the ModelTag to move")
    source = promote.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="NAME",
                        help="the model's object name in the tag's storage")
    source.add_argument("--from", dest="from_tag", metavar="OTHERTAG",
                        help="copy the model OTHERTAG resolves to (status.model); OTHERTAG "
                             "must be Ready")
    moving(promote)
    promote.set_defaults(func=_run(cmd_promote))

    rollback = add("rollback", "move a tag back to its previous model",
                   _text("Move TAG back to the previous model in its status.history (newest "
                         "first: the first entry whose model differs from the one the tag "
                         "resolves to). When spec.model was moved but never resolved (say, a "
                         "missing model), rollback returns to the model the tag still "
                         "resolves to, and no environment rolls.", GITOPS_NOTE))
    rollback.add_argument("tag", metavar="TAG", help="the ModelTag to move back")
    moving(rollback)
    rollback.set_defaults(func=_run(cmd_rollback))

    history = add("history", "the models a tag resolved to, newest first",
                  _text("Show the model TAG resolves to now (marked *) and its earlier models "
                        "from status.history, the rollback targets."))
    history.add_argument("tag", metavar="TAG", help="the ModelTag")
    history.add_argument("-o", "--output", choices=("table", "json"), default="table")
    history.set_defaults(func=_run(cmd_history))

    from botenv import cli_train

    train = add("train", "train a local Rasa project in the cluster and move a tag",
                _text("Pack DIR (config.yml, domain.yml, data/*.yml) into a ConfigMap, create "
                      "a ModelTraining for it and follow it: the operator trains it in a Job, "
                      "stores the model where TAG's models are and moves TAG to it. "
                      "Promoting it further stays an explicit `botenv promote`."),
                f"{EXIT_CODES}\n\nexample:\n  botenv train ./my-bot --tag experimental")
    cli_train.add_arguments(train)
    train.set_defaults(func=_run(cli_train.cmd_train))


def _rename(parser: argparse.ArgumentParser, old: str, new: str) -> None:
    parser.prog = parser.prog.replace(old, new, 1)
    for action in parser._actions:  # argparse keeps subcommands' parsers only here
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                _rename(child, old, new)


def kubectl_main(argv: list[str] | None = None) -> int:
    """`kubectl botenv ...` (the console script kubectl-botenv): botenv's CLI, named as
    kubectl shows it."""
    from botenv import cli

    parser = cli.build_parser()
    _rename(parser, "botenv", "kubectl botenv")
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(kubectl_main())
