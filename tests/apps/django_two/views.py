"""The page of the project: what its settings, database and Django are."""
import sys

import django
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.http import JsonResponse
from django.urls import reverse
from django.utils import timezone

from notes.models import Note


def index(request):
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA database_list")  # the file this connection really opened
        database_file = cursor.fetchone()[2]
    return JsonResponse({
        "title": settings.SITE_TITLE,
        "settings_module": settings.SETTINGS_MODULE,
        "settings_file": getattr(sys.modules.get(settings.SETTINGS_MODULE), "__file__", None),
        "time_zone": timezone.get_current_timezone_name(),
        "notes": Note.objects.count(),
        "note_texts": sorted(Note.objects.values_list("text", flat=True)),
        "users": sorted(get_user_model().objects.values_list("username", flat=True)),
        "database_file": database_file,
        "reverse": reverse("index"),
        "views_file": __file__,
        "django_id": id(django),
        "django_file": django.__file__,
    })
