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
* The server hooks of ``ctxserve serve`` come from
  :func:`ctxserve.server.gunicorn_hooks`: the app table and, with the admin
  listener, what it needs (below). A hook given in ``[server.gunicorn]`` is
  called after ctxserve's.

The admin listener (``[server] admin = "127.0.0.1:9100"``) is one more
address in gunicorn's ``bind`` list, the last one. ``--bind``/``-b`` on the
command line replaces the whole list, so **bind the admin address too**::

    gunicorn -c deploy/gunicorn.conf.py -b 0.0.0.0:8000 -b 127.0.0.1:9100

Requests are told to be the admin listener's by the socket they arrived on,
never by request data: ctxserve's workers (``worker_class`` above) know it,
and the ``post_worker_init`` hook names the socket bound at the admin
address (TCP, port 0 included, or ``unix:``). With another worker class the
admin routes are off, and the log says so. For ``/metrics`` summed over the workers,
``PROMETHEUS_MULTIPROC_DIR`` is set to a fresh temporary directory (removed
at exit) unless it is already set; a directory you set is used as it is
(empty it before each start).
"""

import os

from ctxserve.config import load
from ctxserve.server import control_socket_settings, gunicorn_hooks, gunicorn_settings

_path = os.path.abspath(
    os.environ.get("CTXSERVE_CONFIG") or os.path.join(os.path.dirname(__file__), "ctxserve.toml"))
os.environ["CTXSERVE_CONFIG"] = _path

wsgi_app = "ctxserve.wsgi:application"

_config = load(_path)
# Last, so that [server.gunicorn] may replace anything above.
globals().update(gunicorn_settings(_config))
# The hooks of ``ctxserve serve``, each calling a hook of the same name set above after its own work.
globals().update(gunicorn_hooks(_config, globals()))
# gunicorn's control socket: this server's own, in its run directory, or off.
globals().update(control_socket_settings(_config))
