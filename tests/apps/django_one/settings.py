"""Django project one's settings (django_two has a module of the same name, other values)."""
import os

SITE_TITLE = "Project One"
ADMIN_USERNAME = "admin-one"
SEED_ROWS = 3
TIME_ZONE = "Europe/Paris"
USE_TZ = True

SECRET_KEY = "django-one-test-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "notes",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
ROOT_URLCONF = "urls"
STATIC_URL = "static/"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["DJANGO_DB"]}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

if os.environ.get("DJANGO_STATIC_ROOT"):  # static files served by the whitenoise add-on
    STATIC_ROOT = os.environ["DJANGO_STATIC_ROOT"]
    MIDDLEWARE.insert(0, "whitenoise.middleware.WhiteNoiseMiddleware")
