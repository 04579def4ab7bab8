"""``python -m agent serve --port 8700 --secret-file FILE [--host 127.0.0.1] [--root DIR] [--tls-dir DIR]
[--plain-http] [--panel-url URL --node-id ID [--interval 60]]``, ``python -m agent report --panel-url URL
--node-id ID --secret-file FILE [--once]`` (the metrics reporter alone, e.g. as its own Procfile line),
``python -m agent fingerprint [--root DIR]`` (makes the node's TLS key if needed and prints the pin to
give the panel) and ``python -m agent rotate-cert [--activate]`` (a new key beside the current one,
then served)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

from . import tls
from .reporter import Reporter
from .runtime import NodeRuntime
from .server import PlainHttpRefused, serve
from .signing import SecretFile


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--secret-file", default=os.environ.get("MPANEL_AGENT_SECRET_FILE"), required=False)
    parser.add_argument("--root", default=_default_root(),
                        help="where bundles, images and runc state live (default $MPANEL_VAR_DIR/node)")  # fmt: skip
    parser.add_argument("--runc", default="runc")
    parser.add_argument("--panel-url", default=os.environ.get("MPANEL_PANEL_URL"), help="where to report metrics")
    parser.add_argument("--node-id", default=os.environ.get("MPANEL_NODE_ID"), help="this node's id in the panel")
    parser.add_argument("--interval", type=float, default=float(os.environ.get("MPANEL_METRICS_INTERVAL", "60")))


def _tls_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=_default_root(), help="the node root (default $MPANEL_VAR_DIR/node)")
    parser.add_argument("--tls-dir", default=os.environ.get("MPANEL_AGENT_TLS_DIR"),
                        help="the agent's key and certificate (default <root>/tls, made on first start)")  # fmt: skip


def _default_root() -> str:
    return os.environ.get("MPANEL_NODE_ROOT") or os.path.join(os.environ.get("MPANEL_VAR_DIR", "./var"), "node")


def _secret(parser: argparse.ArgumentParser, path: str | None) -> SecretFile:
    if not path:
        parser.error("--secret-file (or MPANEL_AGENT_SECRET_FILE) is required")
    try:
        return SecretFile(path)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent", description="mPanel node agent")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="serve the node's operations over signed HTTPS (and report metrics)")
    run.add_argument("--host", default=os.environ.get("MPANEL_AGENT_HOST", "127.0.0.1"))
    run.add_argument("--port", type=int, default=int(os.environ.get("MPANEL_AGENT_PORT", "8700")))
    run.add_argument("--tls-dir", default=os.environ.get("MPANEL_AGENT_TLS_DIR"),
                     help="the agent's key and certificate (default <root>/tls, made on first start)")  # fmt: skip
    run.add_argument("--plain-http", action="store_true", default=os.environ.get("MPANEL_AGENT_PLAIN_HTTP") == "1",
                     help="serve without TLS: refused unless --host is a loopback address")  # fmt: skip
    _common(run)
    report = sub.add_parser("report", help="report this node's metrics to the panel every interval")
    _common(report)
    report.add_argument("--once", action="store_true", help="send one batch, print the panel's answer, exit")
    fingerprint = sub.add_parser("fingerprint", help="print the pin of this node's TLS key (made if missing)")
    _tls_args(fingerprint)
    rotate = sub.add_parser("rotate-cert", help="prepare a new TLS key and print its pin; --activate serves it")
    _tls_args(rotate)
    rotate.add_argument("--activate", action="store_true", help="serve the prepared key from now on")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    tls_dir = getattr(args, "tls_dir", None) or os.path.join(args.root, "tls")
    if args.command == "fingerprint":
        for name, value in tls.fingerprints(tls_dir).items():
            print(f"{name} {tls.shown(value)}", flush=True)
        return 0
    if args.command == "rotate-cert":
        try:
            value = tls.activate_rotation(tls_dir) if args.activate else tls.prepare_rotation(tls_dir)
        except FileNotFoundError as exc:
            parser.error(str(exc))
        print(f"{'current' if args.activate else 'next'} {tls.shown(value)}", flush=True)
        return 0
    secret = _secret(parser, args.secret_file)
    if bool(args.panel_url) != bool(args.node_id):
        parser.error("--panel-url and --node-id go together")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.command == "report":
        if not args.panel_url:
            parser.error("--panel-url and --node-id (or MPANEL_PANEL_URL and MPANEL_NODE_ID) are required")
        reporter = Reporter(panel_url=args.panel_url, node_id=args.node_id, secret=secret,
                            runtime=NodeRuntime(args.root, runc=args.runc), interval=args.interval)  # fmt: skip
        if args.once:
            print(json.dumps(reporter.report_once()), flush=True)
            return 0
        reporter.run()
        return 0
    try:  # plain HTTP off loopback is refused by serve() itself: one rule, whoever starts the agent
        serve(args.host, args.port, secret, args.root, runc=args.runc, tls_dir=tls_dir, plain_http=args.plain_http,
              report={"panel_url": args.panel_url, "node_id": args.node_id, "interval": args.interval}
              if args.panel_url else None)  # fmt: skip
    except PlainHttpRefused as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
