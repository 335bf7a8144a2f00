"""Uses the shared add-on ``nsaddon`` (tests/apps/ns/sitepkgs) at import time."""
import json
import os

import nsaddon

nsaddon.add(os.environ["ADDON_USER"])


def application(environ, start_response):
    import nsregistry
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(nsregistry.state.ITEMS).encode()]
