"""Escapes with markupsafe, a package with optional C speedups."""
import markupsafe


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/html")])
    return [str(markupsafe.escape("<b>")).encode()]
