"""A fixture app that parses XML request bodies through defusedxml, as WebDAV,
CalDAV, SAML and feed readers do. defusedxml imports the pure-Python
ElementTree by blocking ``_elementtree`` with a ``None`` entry in
``sys.modules`` for the time of that import."""
import json

from defusedxml import ElementTree
from defusedxml.common import EntitiesForbidden


def application(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    try:
        root = ElementTree.fromstring(body)
    except EntitiesForbidden as exc:
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [f"refused: {type(exc).__name__}\n".encode()]
    answer = json.dumps({"root": root.tag, "items": [item.text for item in root.iter("item")]})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [answer.encode()]
