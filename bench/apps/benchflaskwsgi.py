"""One small Flask app as a WSGI file (uWSGI's ``--mount /a0=benchflaskwsgi.py``)."""

from benchflask import create_app

application = create_app("app")
