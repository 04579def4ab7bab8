"""``python -m agent serve --port 8700 --secret-file FILE [--host 127.0.0.1] [--root DIR]``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from .server import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent", description="mPanel node agent")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="serve the node's operations over signed HTTP")
    run.add_argument("--host", default=os.environ.get("MPANEL_AGENT_HOST", "127.0.0.1"))
    run.add_argument("--port", type=int, default=int(os.environ.get("MPANEL_AGENT_PORT", "8700")))
    run.add_argument("--secret-file", default=os.environ.get("MPANEL_AGENT_SECRET_FILE"), required=False)
    run.add_argument(
        "--root",
        default=os.environ.get("MPANEL_NODE_ROOT") or os.path.join(os.environ.get("MPANEL_VAR_DIR", "./var"), "node"),
        help="where bundles, images and runc state live (default $MPANEL_VAR_DIR/node)",
    )
    run.add_argument("--runc", default="runc")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not args.secret_file:
        parser.error("--secret-file (or MPANEL_AGENT_SECRET_FILE) is required")
    with open(args.secret_file) as fh:
        secret = fh.read().strip()
    if len(secret) < 32:
        parser.error("the secret file must hold the node's secret (at least 32 characters)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(args.host, args.port, secret, args.root, runc=args.runc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
