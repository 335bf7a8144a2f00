"""The bare WSGI apps that every in-process and HTTP comparison runs.

Each is as cheap as a WSGI app can be, so that what is measured around it
is the price of the layer in front of it (werkzeug's DispatcherMiddleware,
ctxserve's Dispatcher + context binding, gunicorn), not the app.
"""

import os

BODY = b"Hello, world!\n"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def application(environ, start_response):
    """A list body: nothing of the app runs while the server iterates it."""
    start_response("200 OK", HEADERS)
    return [BODY]


def generator(environ, start_response):
    """A generator body: app code runs while the server iterates it."""
    start_response("200 OK", HEADERS)
    yield BODY


def environ_reader(environ, start_response):
    """A list body after one ``os.environ`` lookup (the app's own environ)."""
    os.environ.get("BENCH_KEY")
    start_response("200 OK", HEADERS)
    return [BODY]
