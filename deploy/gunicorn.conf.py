"""gunicorn settings taken from a ctxserve.toml, for serving with plain ``gunicorn``.

    CTXSERVE_CONFIG=deploy/ctxserve.toml gunicorn -c deploy/gunicorn.conf.py ctxserve.wsgi:application

This is the same server as ``ctxserve serve deploy/ctxserve.toml``, for
setups that want the ``gunicorn`` command itself (a process manager, a
platform that runs gunicorn, extra gunicorn flags):

* The config file is ``$CTXSERVE_CONFIG``, or ``ctxserve.toml`` next to this
  file. It is read once here with :func:`ctxserve.config.load` (a bad file
  stops gunicorn before anything starts) and ``CTXSERVE_CONFIG`` is set to
  the same path, so ``ctxserve.wsgi:application`` loads the same apps.
* Its ``[server]`` table becomes module-level gunicorn settings through
  :func:`ctxserve.server.gunicorn_settings`, the function ``ctxserve serve``
  uses: bind, workers, threads, worker_class, timeout, the access log and
  format, and everything in ``[server.gunicorn]``.
* gunicorn's own flags still win over this file, e.g.
  ``gunicorn -c deploy/gunicorn.conf.py --bind 0.0.0.0:8000``
  (the app argument may be left out: ``wsgi_app`` is set here).
"""

import os

from ctxserve.config import load
from ctxserve.server import gunicorn_settings, print_table

_path = os.path.abspath(
    os.environ.get("CTXSERVE_CONFIG") or os.path.join(os.path.dirname(__file__), "ctxserve.toml"))
os.environ["CTXSERVE_CONFIG"] = _path

wsgi_app = "ctxserve.wsgi:application"


def post_worker_init(worker):
    """As under ``ctxserve serve``: the app table, once the first worker has loaded the apps."""
    if worker.age == 1 and hasattr(worker.wsgi, "apps"):
        print_table(worker.wsgi.apps)


# Last, so that [server.gunicorn] may replace anything above (a hook included).
globals().update(gunicorn_settings(load(_path)))
