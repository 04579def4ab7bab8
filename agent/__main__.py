"""``python -m agent serve --port 8700 --secret-file FILE [--host 127.0.0.1] [--root DIR]
[--panel-url URL --node-id ID [--interval 60]]`` and ``python -m agent report --panel-url URL
--node-id ID --secret-file FILE [--once]`` (the metrics reporter alone, e.g. as its own Procfile line)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

from .server import serve


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--secret-file", default=os.environ.get("MPANEL_AGENT_SECRET_FILE"), required=False)
    parser.add_argument(
        "--root",
        default=os.environ.get("MPANEL_NODE_ROOT") or os.path.join(os.environ.get("MPANEL_VAR_DIR", "./var"), "node"),
        help="where bundles, images and runc state live (default $MPANEL_VAR_DIR/node)",
    )
    parser.add_argument("--runc", default="runc")
    parser.add_argument("--panel-url", default=os.environ.get("MPANEL_PANEL_URL"), help="where to report metrics")
    parser.add_argument("--node-id", default=os.environ.get("MPANEL_NODE_ID"), help="this node's id in the panel")
    parser.add_argument("--interval", type=float, default=float(os.environ.get("MPANEL_METRICS_INTERVAL", "60")))


def _secret(parser: argparse.ArgumentParser, path: str | None) -> str:
    if not path:
        parser.error("--secret-file (or MPANEL_AGENT_SECRET_FILE) is required")
    with open(path) as fh:
        secret = fh.read().strip()
    if len(secret) < 32:
        parser.error("the secret file must hold the node's secret (at least 32 characters)")
    return secret


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent", description="mPanel node agent")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="serve the node's operations over signed HTTP (and report metrics)")
    run.add_argument("--host", default=os.environ.get("MPANEL_AGENT_HOST", "127.0.0.1"))
    run.add_argument("--port", type=int, default=int(os.environ.get("MPANEL_AGENT_PORT", "8700")))
    _common(run)
    report = sub.add_parser("report", help="report this node's metrics to the panel every interval")
    _common(report)
    report.add_argument("--once", action="store_true", help="send one batch, print the panel's answer, exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    secret = _secret(parser, args.secret_file)
    if bool(args.panel_url) != bool(args.node_id):
        parser.error("--panel-url and --node-id go together")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.command == "report":
        from .reporter import Reporter
        from .runtime import NodeRuntime

        if not args.panel_url:
            parser.error("--panel-url and --node-id (or MPANEL_PANEL_URL and MPANEL_NODE_ID) are required")
        reporter = Reporter(panel_url=args.panel_url, node_id=args.node_id, secret=secret,
                            runtime=NodeRuntime(args.root, runc=args.runc), interval=args.interval)  # fmt: skip
        if args.once:
            print(json.dumps(reporter.report_once()), flush=True)
            return 0
        reporter.run()
        return 0
    serve(args.host, args.port, secret, args.root, runc=args.runc,
          report={"panel_url": args.panel_url, "node_id": args.node_id, "interval": args.interval}
          if args.panel_url else None)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
