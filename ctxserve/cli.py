"""``ctxserve serve | check`` and ``--version``.

Exit codes: 0 success; 1 an app failed to load (``check``); 2 bad
configuration or usage — in which case nothing was started.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from . import config as _config
from .server import Server, build, print_table

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ctxserve",
        description="Serve several WSGI apps in one process, each in its own context.")
    parser.add_argument("--version", action="version", version=f"ctxserve {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the apps with gunicorn")
    serve.add_argument("config", nargs="?", default="ctxserve.toml", metavar="CONFIG",
                       help="config file (default: ./ctxserve.toml)")
    serve.add_argument("--bind", action="append", metavar="ADDR",
                       help="address to listen on (repeatable); replaces [server] bind")
    serve.add_argument("--workers", type=int, metavar="N")
    serve.add_argument("--threads", type=int, metavar="N")
    serve.add_argument("--worker-class", metavar="K", help="sync, gthread or gevent")

    check = commands.add_parser("check", help="validate the config and load every app")
    check.add_argument("config", nargs="?", default="ctxserve.toml", metavar="CONFIG")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = _config.load(args.config)
        if args.command == "serve":
            changes = {"bind": args.bind, "workers": args.workers, "threads": args.threads,
                       "worker_class": args.worker_class}
            overrides = {k: v for k, v in changes.items() if v is not None}
            config = _config.override_server(config, **overrides)
            Server(config, overrides).run()
            return 0
        dispatcher = build(config, strict=False)
    except _config.ConfigError as exc:
        print(f"ctxserve: {exc}", file=sys.stderr)
        return 2
    print_table(dispatcher.apps)
    return 0 if all(app.loaded for app in dispatcher.apps) else 1


if __name__ == "__main__":
    sys.exit(main())
