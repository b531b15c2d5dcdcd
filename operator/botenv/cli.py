"""`botenv` command line: the operator now; model server and promote/rollback later."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import sys

from botenv.settings import Settings


def _operator(args: argparse.Namespace) -> int:
    import kopf

    import botenv.handlers  # noqa: F401  (registers the handlers)

    namespaces = args.namespace or list(Settings.from_env().namespaces)
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.PLAIN)
    if not args.verbose:
        # kopf logs every event handler call; botenv's own log says what it changed.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=args.liveness or None,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="botenv", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    op = sub.add_parser("operator", help="run the operator against the current kubeconfig "
                                         "(or in-cluster config)")
    op.add_argument("-n", "--namespace", action="append", default=[],
                    help="watch only this namespace (repeatable; default: all, or "
                         "BOTENV_NAMESPACES)")
    op.add_argument("--liveness", default="", help="serve a liveness probe, e.g. "
                                                   "http://0.0.0.0:8080/healthz")
    op.add_argument("-v", "--verbose", action="store_true")
    op.set_defaults(func=_operator)
    version = sub.add_parser("version", help="print botenv's version")
    version.set_defaults(func=lambda _: print(importlib.metadata.version("botenv")) or 0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
