"""Serve one model file from a local directory as one tag, in a process of its own.

    python -m tests.modelserver.serve_dir MODELS_DIR MODEL CACHE_DIR [options]

The pull token comes from the BOTENV_PULL_TOKEN environment variable (not argv, which
`ps` shows). Prints `PORT <n>` once listening; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from botenv.modelserver.catalog import StaticCatalog
from botenv.modelserver.server import run
from tests.modelserver.doubles import DirStorage, resolution


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", type=Path)
    parser.add_argument("model")
    parser.add_argument("cache", type=Path)
    parser.add_argument("--namespace", default="bots")
    parser.add_argument("--tag", default="production")
    parser.add_argument("--cache-max-bytes", type=int, default=4 << 30)
    parser.add_argument("--answer-within", type=float, default=4.0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    storage = DirStorage(args.models)
    catalog = StaticCatalog([resolution(storage, args.namespace, args.tag, args.model)])
    catalog.add_token(args.namespace, args.tag, os.environ["BOTENV_PULL_TOKEN"])
    run(
        catalog,
        host="127.0.0.1",
        port=args.port,
        cache_dir=args.cache,
        cache_max_bytes=args.cache_max_bytes,
        answer_within=args.answer_within,
        on_started=lambda port: print(f"PORT {port}", flush=True),
    )


if __name__ == "__main__":
    main()
