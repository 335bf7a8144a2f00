"""Imports nothing at load: the test imports xmod and ymod itself, in two threads."""


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
