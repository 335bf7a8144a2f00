"""A fixture app (alpha or beta): answers which app each of its modules belongs to. Same file in both."""
import json
import os

import config
import models
import pkg.sub.mod
import settings
import utils

LOADED_BY_PID = os.getpid()


def owners():
    import lazy  # the first request imports it
    from utils import text
    return {
        "config": config.OWNER, "settings": settings.OWNER, "models": models.OWNER,
        "utils": utils.OWNER, "utils.text": text.OWNER, "utils.text->config": text.CONFIG_OWNER,
        "pkg": pkg.OWNER, "pkg.sub": pkg.sub.OWNER, "pkg.sub.mod": pkg.sub.mod.OWNER,
        "pkg.sub.mod->..other": pkg.sub.mod.OTHER_THING, "lazy": lazy.OWNER,
    }


def application(environ, start_response):
    body = json.dumps({"owners": owners(), "pid": os.getpid(),
                       "loaded_by_pid": LOADED_BY_PID}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
