"""An app that enables faulthandler at import (tests/test_containment.py): it
needs a file descriptor behind sys.stderr, whatever the app's destination."""

import faulthandler
import os
import sys

faulthandler.enable()


def application(environ, start_response):
    # A C-level dump, as a crash would write it: straight to the descriptor.
    faulthandler.dump_traceback(file=sys.stderr, all_threads=False)
    body = f"{os.environ.get('APP_ID')} fd={sys.stderr.fileno()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
