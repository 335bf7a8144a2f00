"""The idiom: put this file's own directory first on sys.path, then import a sibling."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import helpers  # noqa: E402  (found only through the entry inserted above)


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [helpers.OWNER.encode()]
