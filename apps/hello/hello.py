"""The plainest WSGI app: a greeting taken from its own environment."""

import os


def application(environ, start_response):
    greeting = os.environ.get("GREETING", "hello")
    print(f"greeted {environ.get('REMOTE_ADDR', '?')}")
    body = f"{greeting} from {environ['SCRIPT_NAME'] or '/'}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]
