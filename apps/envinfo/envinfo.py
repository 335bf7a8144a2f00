"""A werkzeug app that shows what it sees of the process: environ, argv, path."""

import os
import sys

from werkzeug.wrappers import Request, Response


@Request.application
def application(request):
    shown = {k: v for k, v in sorted(os.environ.items()) if k.startswith("ENVINFO_")}
    lines = [
        f"app: envinfo at {request.script_root or '/'}",
        f"argv: {sys.argv}",
        f"path[0]: {os.path.relpath(sys.path[0])}",  # relative to the server's directory
        f"environ has {len(os.environ)} names; ENVINFO_* are:",
        *(f"  {k}={v}" for k, v in shown.items()),
        f"LEDGER_CURRENCY visible: {'LEDGER_CURRENCY' in os.environ}",
    ]
    print(f"{request.method} {request.path}")
    return Response("\n".join(lines) + "\n", mimetype="text/plain")
