"""`botenv operator` and `botenv model-server`: the two long-running processes the Helm
chart starts, with their flags."""

from __future__ import annotations

import argparse
import logging
import os

from botenv.cli.shared import EXIT_UNREACHABLE
from botenv.settings import Settings


def _operator(args: argparse.Namespace) -> int:
    import sys
    import threading

    from botenv.kube.config import ClusterUnreachable, check_cluster

    # Once, before kopf: without a cluster kopf would retry forever, a traceback each time.
    try:
        check_cluster()
    except ClusterUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE

    import kopf

    import botenv.runtime  # noqa: F401  (registers the handlers)
    from botenv.kube.client import Kube
    from botenv.kube.config import load_kubernetes_config
    from botenv.leader import LeaderElector
    from botenv.runtime import logformat
    from botenv.runtime.health import serve_health

    config = Settings.from_env()
    namespaces = args.namespace or list(config.namespaces)
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.PLAIN)
    logformat.configure(args.log_format, "debug" if args.verbose else args.log_level)
    if not args.verbose:
        # kopf logs every event handler call; botenv's own log says what it changed.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    elector: LeaderElector | None = None
    if args.leader_elect:
        load_kubernetes_config()
        elector = LeaderElector(
            Kube(),
            namespace=args.leader_election_namespace,
            identity=os.environ.get("POD_NAME") or f"{os.uname().nodename}-{os.getpid()}",
        )
    if args.health_address:
        serve_health(
            args.health_address,
            lambda: elector is None or elector.leading,
            stall_seconds=config.stall_seconds or 3 * config.resync_seconds,
        )
    stop_renewing = threading.Event()
    if elector is not None:
        if not elector.acquire(threading.Event()):
            return 0

        def lost() -> None:
            # Another replica may take over now: stop writing at once, as Kubernetes'
            # own controllers do; the pod restarts and stands by.
            logging.getLogger(__name__).error("leader election lost: exiting")
            os._exit(1)

        threading.Thread(
            target=elector.keep, args=(stop_renewing, lost), name="lease", daemon=True
        ).start()
    try:
        kopf.run(
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=args.liveness or None,
        )
    finally:
        stop_renewing.set()
        if elector is not None:
            elector.release()
    return 0


def _model_server(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    import kopf

    from botenv.kube.client import Kube
    from botenv.kube.config import load_kubernetes_config
    from botenv.modelserver.kube_catalog import KubeCatalog
    from botenv.modelserver.server import serve

    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.PLAIN)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    load_kubernetes_config()
    settings = Settings.from_env()
    namespaces = args.namespace or list(settings.namespaces)

    async def main() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        catalog = KubeCatalog(Kube(), settings.storage)
        await asyncio.gather(
            catalog.run(stop, namespaces),
            serve(
                catalog,
                host=args.host,
                port=args.port,
                cache_dir=args.cache_dir,
                cache_max_bytes=args.cache_max_bytes,
                stop=stop,
                header_timeout=args.header_timeout,
                keepalive_timeout=args.keepalive_timeout,
                max_connections=args.max_connections,
                shutdown_delay=args.shutdown_delay,
            ),
        )

    asyncio.run(main())
    return 0


def _bytes(value: str) -> int:
    from kubernetes.utils.quantity import parse_quantity

    try:
        return int(parse_quantity(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a size: {value!r} (e.g. 10Gi)") from exc


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {value!r}")
    return seconds


def _delay(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"not a number of seconds from 0 to 3600: {value!r}")
    return seconds


def _count(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {value!r}")
    return count


def _env_default(name: str, default: str) -> str:
    # argparse converts a string default with the option's type: a bad value is reported
    # as the option's error, like a bad flag.
    return os.environ.get(f"BOTENV_{name}", "").strip() or default


def add_launcher_commands(sub: argparse._SubParsersAction) -> None:
    """Register `operator` and `model-server` on botenv's subcommands (botenv.cli.parser)."""
    op = sub.add_parser(
        "operator", help="run the operator against the current kubeconfig (or in-cluster config)"
    )
    op.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable; default: all, or BOTENV_NAMESPACES)",
    )
    op.add_argument(
        "--liveness", default="", help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz"
    )
    op.add_argument(
        "--leader-elect",
        action="store_true",
        help="hold a coordination.k8s.io Lease so only one replica reconciles; "
        "the others stand by (identity: $POD_NAME)",
    )
    op.add_argument(
        "--leader-election-namespace",
        default=os.environ.get("POD_NAMESPACE") or "botenv-system",
        help="namespace of the Lease 'botenv-operator' (default: $POD_NAMESPACE)",
    )
    op.add_argument(
        "--health-address",
        default="",
        help="serve /healthz, /readyz and /metrics on HOST:PORT from start-up, standby "
        "included (e.g. 0.0.0.0:8081)",
    )
    op.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=_env_default("LOG_FORMAT", "text"),
        help="log lines as text or JSON, each with time, level, object and reason "
        "(default: $BOTENV_LOG_FORMAT or text)",
    )
    op.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=_env_default("LOG_LEVEL", "info"),
        help="least severe level logged (default: $BOTENV_LOG_LEVEL or info; --verbose: debug)",
    )
    op.add_argument("-v", "--verbose", action="store_true")
    op.set_defaults(func=_operator)
    ms = sub.add_parser(
        "model-server",
        help="serve every tag's model to Rasa (ETag/304), with pull tokens, from the tags' storage",
    )
    ms.add_argument("--host", default="0.0.0.0")
    ms.add_argument("--port", type=int, default=8080)
    ms.add_argument("--cache-dir", default="/var/cache/botenv/models")
    ms.add_argument(
        "--cache-max-bytes",
        type=_bytes,
        default=_bytes("10Gi"),
        help="disk cache bound, e.g. 10Gi (least recently used models go first)",
    )
    ms.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="serve only this namespace's tags (repeatable; default: all)",
    )
    # Slow or idle clients must not hold the connections every Rasa pod pulls through.
    ms.add_argument(
        "--header-timeout",
        type=_seconds,
        default=_env_default("MODEL_SERVER_HEADER_TIMEOUT", "10"),
        help="seconds a client has to send a request's line and headers, from "
        "connecting or from the request's first byte (default 10, or "
        "BOTENV_MODEL_SERVER_HEADER_TIMEOUT); downloads are not bounded",
    )
    ms.add_argument(
        "--keepalive-timeout",
        type=_seconds,
        default=_env_default("MODEL_SERVER_KEEPALIVE_TIMEOUT", "15"),
        help="seconds an idle connection stays open between requests (default "
        "15, or BOTENV_MODEL_SERVER_KEEPALIVE_TIMEOUT)",
    )
    ms.add_argument(
        "--max-connections",
        type=_count,
        default=_env_default("MODEL_SERVER_MAX_CONNECTIONS", "512"),
        help="connections beyond this many are closed at once (default 512, or "
        "BOTENV_MODEL_SERVER_MAX_CONNECTIONS)",
    )
    ms.add_argument(
        "--shutdown-delay",
        type=_delay,
        default=_env_default("MODEL_SERVER_SHUTDOWN_DELAY", "0"),
        help="seconds between SIGTERM and closing the listener, failing /readyz and still "
        "answering, so that a replica leaves its Service before it stops accepting "
        "(default 0, or BOTENV_MODEL_SERVER_SHUTDOWN_DELAY)",
    )
    ms.add_argument("-v", "--verbose", action="store_true")
    ms.set_defaults(func=_model_server)
