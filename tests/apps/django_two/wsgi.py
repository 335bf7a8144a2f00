"""The project's WSGI entry: set Django up, migrate and seed the database, serve.

DJANGO_DB (the sqlite file) comes from the app's own environ in the
ctxserve config; DJANGO_SETTINGS_MODULE is set here, in the app's environ.
"""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import connections  # noqa: E402

call_command("migrate", interactive=False, verbosity=0)

from notes.models import Note  # noqa: E402

if not Note.objects.exists():
    Note.objects.bulk_create(Note(text=f"{settings.SITE_TITLE} note {i}")
                             for i in range(settings.SEED_ROWS))
get_user_model().objects.get_or_create(username=settings.ADMIN_USERNAME)
connections.close_all()

application = get_wsgi_application()
