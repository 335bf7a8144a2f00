"""``ctxserve serve | check | reload`` and ``--version``.

Exit codes: 0 success; 1 an app failed to load (``check``, ``reload``); 2 bad
configuration or usage — in which case nothing was started.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import socket
import subprocess
import sys
import urllib.parse
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

    serve = commands.add_parser("serve", help="serve the apps with gunicorn or granian")
    serve.add_argument("config", nargs="?", default="ctxserve.toml", metavar="CONFIG",
                       help="config file (default: ./ctxserve.toml)")
    # One option per [server] key declared with a flag; values are checked
    # by the same declarations as the file (config.override_server).
    for setting in _config.serve_options():
        serve.add_argument(setting.option, dest=setting.name, metavar=setting.flag,
                           action="append" if setting.repeat else "store",
                           help=f"{setting.doc}; replaces [server] {setting.name}".replace("%", "%%")
                                + (" (repeatable)" if setting.repeat else ""))

    check = commands.add_parser("check", help="validate the config and load every app")
    check.add_argument("config", nargs="?", default="ctxserve.toml", metavar="CONFIG")

    reload = commands.add_parser(
        "reload", help="re-import the named apps in the running server, in process")
    reload.add_argument("config", metavar="CONFIG")
    reload.add_argument("names", nargs="+", metavar="NAME")
    reload.add_argument("--admin", metavar="ADDR",
                        help="the admin listener to ask (default: [server] admin of CONFIG)")
    reload.add_argument("--timeout", type=float, default=120, metavar="SECONDS")
    return parser


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket: the admin listener at ``unix:PATH``."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def reload_apps(config: _config.Config, names: Sequence[str], admin: str | None,
                timeout: float) -> int:
    """``POST /apps/NAME/reload`` to the admin listener, one app after the other.

    Exit 0 when every worker serves the new versions, 1 when one failed to
    load (the old version keeps serving), 2 when there is no admin listener
    to ask or the server refused the request (bad config, unknown app).
    """
    address = admin or config.server.admin
    if not address:
        print(f"ctxserve: {config.path}: server.admin: no admin listener configured; "
              "set [server] admin (and restart), or give --admin HOST:PORT or unix:PATH", file=sys.stderr)
        return 2
    try:
        parsed = _config.parse_address(address)
    except ValueError as exc:
        print(f"ctxserve: --admin: expected {exc}, got {address!r}", file=sys.stderr)
        return 2
    if parsed.fd is not None:
        print(f"ctxserve: {address}: an inherited descriptor has no address to connect to; "
              "give the admin listener's address with --admin HOST:PORT or --admin unix:PATH",
              file=sys.stderr)
        return 2
    if parsed.is_tcp and parsed.port == 0:
        print(f"ctxserve: {address}: the admin port is chosen when the server starts; "
              "give the real one with --admin HOST:PORT", file=sys.stderr)
        return 2
    # A wildcard listens on every interface: ask it on the loopback one.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(parsed.host, parsed.host)
    netloc = dataclasses.replace(parsed, host=host).netloc if parsed.is_tcp else address
    worst = 0
    for name in names:
        connection = (http.client.HTTPConnection(host, parsed.port, timeout=timeout) if parsed.is_tcp
                      else _UnixHTTPConnection(parsed.path, timeout=timeout))
        try:
            connection.request("POST", f"/apps/{urllib.parse.quote(name, safe='')}/reload", body=b"",
                                headers={"Host": netloc if parsed.is_tcp else "localhost"})
            response = connection.getresponse()
            status, data = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            print(f"ctxserve: cannot reach the admin listener at {netloc}: {exc}",
                  file=sys.stderr)
            return 2
        finally:
            connection.close()
        try:
            answer = json.loads(data or b"{}")
        except ValueError:
            answer = {"error": response.reason}
        if status == 200:
            print(f"{name}: reloaded in {len(answer.get('workers', []))} worker(s)")
            continue
        print(f"ctxserve: {name}: not reloaded{_what_serves(answer.get('before', {}).get(name))}: "
              f"{answer.get('error', status)}", file=sys.stderr)
        worst = max(worst, 2 if status in (400, 404) else 1)
    return worst


def _what_serves(before: str | None) -> str:
    """What a reload that failed leaves serving the app, as the server reported it."""
    return {
        "loaded": ", the old version keeps serving",
        "failed": "; it still answers 503: it has not loaded since the server started",
        "absent": "; nothing serves it: it was not in the running server",
    }.get(before or "", "; nothing was changed")


def _all_apps_load(config: _config.Config) -> bool:
    """``strict = true``: load every app once, before anything is bound.

    In a child process (``ctxserve check``), so that gunicorn's master stays
    free of the apps' imports; its table and errors are shown as they are.
    """
    # The fd:// listeners go along: check looks for them as serve would.
    fds = [fd for fd in (_config.parse_address(bind).fd for bind in config.server.bind) if fd is not None]
    check = subprocess.run([sys.executable, "-m", "ctxserve", "check", str(config.path)],
                           stdin=subprocess.DEVNULL, check=False, pass_fds=fds)
    if check.returncode != 0:
        print(f"ctxserve: {config.path}: server.strict: every app must load; not starting",
              file=sys.stderr)
    return check.returncode == 0


def _line_buffered(stream: object) -> None:
    """The server's stdout, where ``inherit`` apps print, written line by line.

    A block-buffered stdout (a pipe, a file, systemd) would hold up to 8 KiB
    of every app's finished lines in a worker, lost if it is killed (SIGKILL,
    OOM, a segfault); a terminal is line-buffered already.
    """
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(line_buffering=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = _config.load(args.config)
        if args.command == "serve":
            overrides = {setting.name: getattr(args, setting.name) for setting in _config.serve_options()
                         if getattr(args, setting.name) is not None}
            config = _config.override_server(config, **overrides)
            _config.check_inherited(config)
            if config.server.strict and not _all_apps_load(config):
                return 1
            _line_buffered(sys.stdout)
            if config.server.engine == "granian":
                from .granian_server import GranianServer

                GranianServer(config, overrides).run()
            else:
                Server(config, overrides).run()
            return 0
        if args.command == "reload":
            return reload_apps(config, args.names, args.admin, args.timeout)
        _config.check_inherited(config)
        dispatcher = build(config, strict=False)
    except _config.ConfigError as exc:
        print(f"ctxserve: {exc}", file=sys.stderr)
        return 2
    print_table(dispatcher.apps)
    return 0 if all(app.loaded for app in dispatcher.apps) else 1


if __name__ == "__main__":
    sys.exit(main())
