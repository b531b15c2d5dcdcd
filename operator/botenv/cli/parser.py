"""botenv's one parser: every subcommand registered in the order `botenv --help` lists
them, `main()` (the console script botenv, `python -m botenv`) and `kubectl_main()` (the
console script kubectl-botenv)."""

from __future__ import annotations

import argparse
import importlib.metadata

from botenv.cli.completion import add_completion_command
from botenv.cli.jobsteps.fetch import add_fetch_command
from botenv.cli.jobsteps.gates import add_gates_command
from botenv.cli.jobsteps.upload import add_upload_command
from botenv.cli.launchers import add_launcher_commands
from botenv.cli.people import add_people_commands

DESCRIPTION = (
    "`botenv` command line: the operator, the model server, and status, promote, "
    "rollback\nand history for people."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="botenv", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    add_launcher_commands(sub)  # operator, model-server
    version = sub.add_parser("version", help="print botenv's version")
    version.set_defaults(func=lambda _: print(importlib.metadata.version("botenv")) or 0)
    add_fetch_command(sub)  # a training Job's first steps
    add_gates_command(sub)
    add_upload_command(sub)
    add_people_commands(parser, sub)  # status, promote, rollback, history, train
    add_completion_command(sub, parser)
    _hide(sub, JOB_STEPS)
    return parser


# Run inside a training Job, not by people: they work, but --help does not list them.
JOB_STEPS = ("fetch-project", "check-gates", "upload")


def _hide(sub: argparse._SubParsersAction, names: tuple[str, ...]) -> None:
    """Leave `names` out of the subcommand list and the {a,b,...} choices in --help."""
    sub._choices_actions = [a for a in sub._choices_actions if a.dest not in names]
    sub.metavar = "{" + ",".join(a.dest for a in sub._choices_actions) + "}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


def _rename(parser: argparse.ArgumentParser, old: str, new: str) -> None:
    parser.prog = parser.prog.replace(old, new, 1)
    for action in parser._actions:  # argparse keeps subcommands' parsers only here
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                _rename(child, old, new)


def kubectl_main(argv: list[str] | None = None) -> int:
    """`kubectl botenv ...` (the console script kubectl-botenv): botenv's CLI, named as
    kubectl shows it."""
    parser = build_parser()
    _rename(parser, "botenv", "kubectl botenv")
    args = parser.parse_args(argv)
    return args.func(args)
