"""A WSGI app that answers any path with who it is and how it was routed.

``id`` is ``APP_ID`` read through ``os.environ``: the context the request
ran in, not merely the app the dispatcher meant (tests/test_routing_edges.py).
"""

import json
import os


def application(environ, start_response):
    body = json.dumps({
        "id": os.environ.get("APP_ID"),
        "script_name": environ.get("SCRIPT_NAME"),
        "path_info": environ.get("PATH_INFO"),
        "host": environ.get("HTTP_HOST"),
        "raw_uri": environ.get("RAW_URI"),
        "pid": os.getpid(),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
