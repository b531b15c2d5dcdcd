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


def _model_server(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    import kopf

    from botenv.handlers.operator import load_kubernetes_config
    from botenv.kube.client import Kube
    from botenv.modelserver.kube_catalog import KubeCatalog
    from botenv.modelserver.server import serve

    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.PLAIN)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    load_kubernetes_config()
    namespaces = args.namespace or list(Settings.from_env().namespaces)

    async def main() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        catalog = KubeCatalog(Kube())
        await asyncio.gather(
            catalog.run(stop, namespaces),
            serve(catalog, host=args.host, port=args.port, cache_dir=args.cache_dir,
                  cache_max_bytes=args.cache_max_bytes, stop=stop))

    asyncio.run(main())
    return 0


def _bytes(value: str) -> int:
    from kubernetes.utils.quantity import parse_quantity

    try:
        return int(parse_quantity(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a size: {value!r} (e.g. 10Gi)") from exc


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
    ms = sub.add_parser("model-server", help="serve every tag's model to Rasa (ETag/304), "
                                             "with pull tokens, from the tags' storage")
    ms.add_argument("--host", default="0.0.0.0")
    ms.add_argument("--port", type=int, default=8080)
    ms.add_argument("--cache-dir", default="/var/cache/botenv/models")
    ms.add_argument("--cache-max-bytes", type=_bytes, default=_bytes("10Gi"),
                    help="disk cache bound, e.g. 10Gi (least recently used models go first)")
    ms.add_argument("-n", "--namespace", action="append", default=[],
                    help="serve only this namespace's tags (repeatable; default: all)")
    ms.add_argument("-v", "--verbose", action="store_true")
    ms.set_defaults(func=_model_server)
    version = sub.add_parser("version", help="print botenv's version")
    version.set_defaults(func=lambda _: print(importlib.metadata.version("botenv")) or 0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
