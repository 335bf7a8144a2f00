"""Radicale (CalDAV/CardDAV) with its storage in RADICALE_ROOT, no authentication."""
import os

import radicale
import radicale.config

configuration = radicale.config.load()
configuration.update({
    "storage": {"filesystem_folder": os.environ["RADICALE_ROOT"]},
    "auth": {"type": "none"},
    "rights": {"type": "owner_only"},
}, "ctxserve", privileged=True)
application = radicale.Application(configuration)
