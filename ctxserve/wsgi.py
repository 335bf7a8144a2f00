"""``gunicorn 'ctxserve.wsgi:application'``: the apps of ``$CTXSERVE_CONFIG``.

The config defaults to ``./ctxserve.toml``. Every gunicorn flag applies;
the ``[server]`` table is not read here (use ``deploy/gunicorn.conf.py`` to
take it from the config file too).
"""

import os

from . import from_config

application = from_config(os.environ.get("CTXSERVE_CONFIG", "ctxserve.toml"))
