"""Imports `cext`, a package with a C extension module (made by the test in its tmp dir)."""
import cext


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [cext.__name__.encode()]
