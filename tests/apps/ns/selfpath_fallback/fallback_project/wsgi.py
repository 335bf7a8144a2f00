"""The fallback form of the idiom: try the import, add this file's directory if it fails."""
import os
import sys

try:
    import fallback_helpers
except ImportError:
    sys.path.insert(0, os.path.dirname(__file__))
    import fallback_helpers


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [fallback_helpers.OWNER.encode()]
