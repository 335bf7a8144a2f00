"""Two Django projects served side by side from one ctxserve process.

tests/apps/django_one and tests/apps/django_two are the same project with
other values: modules ``wsgi``, ``settings``, ``urls``, ``views`` and the
Django app ``notes`` (one model, ``Note``, with its migration and its admin)
of the same names in both, with ``django.contrib`` admin, auth,
contenttypes, sessions and messages installed. Each project's
``SITE_TITLE`` (also the admin's site title), ``TIME_ZONE``, admin user and
number of seeded notes differ, and each has its own sqlite file
(``DJANGO_DB``, from the app's own ``environ``). ``wsgi.py`` runs
``django.setup()`` and ``migrate`` and seeds the notes and the user when the
app is imported, inside its context.

With ``isolate = ["django"]`` each app has its own copy of Django (its own
``django.conf.settings``, app registry, URL resolver cache, database
connections) and every page answers with its own project's values, under
concurrent load. Without it both apps share one Django, which is set up
once: the first project's settings and database serve both, and the URL
resolver cached by the first request serves both — the case ``isolate``
exists for.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from support import TEST_APPS, hammer

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(importlib.util.find_spec("django") is None, reason="django is not installed"),
]

NAMES = ("one", "two")
TITLE = {"one": "Project One", "two": "Project Two"}
TIME_ZONE = {"one": "Europe/Paris", "two": "Asia/Tokyo"}
SEEDED = {"one": 3, "two": 5}
ADMIN_LOGIN_TITLE = "<title>Log in | {}</title>"

needs_gevent = pytest.mark.skipif(importlib.util.find_spec("gevent") is None,
                                  reason="gevent is not installed")
WORKER_CLASSES = [
    pytest.param(("--worker-class", "gthread", "--threads", "8"), id="gthread"),
    pytest.param(("--worker-class", "gevent"), id="gevent", marks=needs_gevent),
]


def project(name: str, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """The table of Django project *name* (tests/apps/django_<name>), mounted at /<name>."""
    return {"app": "wsgi:application", "mount": f"/{name}",
            "path": [str(TEST_APPS / f"django_{name}")],
            "environ": {"DJANGO_DB": str(tmp_path / f"{name}.sqlite3")}, **extra}


def page(name: str, tmp_path: Path) -> dict[str, Any]:
    """What project *name*'s page answers when it runs on its own Django (minus ``django_id``)."""
    here = TEST_APPS / f"django_{name}"
    return {
        "title": TITLE[name],
        "settings_module": "settings",
        "settings_file": str(here / "settings.py"),
        "time_zone": TIME_ZONE[name],
        "notes": SEEDED[name],
        "note_texts": [f"{TITLE[name]} note {i}" for i in range(SEEDED[name])],
        "users": [f"admin-{name}"],
        "database_file": str(tmp_path / f"{name}.sqlite3"),
        "reverse": f"/{name}/",
        "views_file": str(here / "views.py"),
        "django_file": importlib.util.find_spec("django").origin,
    }


@pytest.mark.parametrize("worker_flags", WORKER_CLASSES)
def test_two_django_projects_with_isolate_each_answer_with_their_own_settings_and_database_under_load(
        make_config, serve, tmp_path, worker_flags):
    config = make_config({name: project(name, tmp_path, isolate=["django"]) for name in NAMES})
    server = serve(config, *worker_flags)
    expected = {name: page(name, tmp_path) for name in NAMES}
    django_ids: dict[str, set[int]] = {name: set() for name in NAMES}

    def request(session: requests.Session, t: int, i: int) -> None:
        name = NAMES[(t + i) % 2]
        if i % 4 == 3:  # a template-rendered page of django.contrib.admin
            response = session.get(f"{server.url}/{name}/admin/login/", timeout=30)
            assert response.status_code == 200, response.text
            assert ADMIN_LOGIN_TITLE.format(TITLE[name]) in response.text
            assert f'action="/{name}/admin/login/"' in response.text
            return
        response = session.get(f"{server.url}/{name}/", timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        django_ids[name].add(body.pop("django_id"))
        assert body == expected[name]

    assert hammer(request, threads=8, per_thread=100, timeout=90) == 800
    # One worker process: one copy of Django per app, two copies in all,
    # loaded from the same source files.
    assert len(django_ids["one"]) == len(django_ids["two"]) == 1, django_ids
    assert django_ids["one"] != django_ids["two"]
    output = server.stdout() + server.stderr()
    assert "already registered" not in output
    assert "Traceback" not in output
    for name in NAMES:
        assert (tmp_path / f"{name}.sqlite3").is_file()


def test_two_django_projects_sharing_one_django_are_served_by_the_first_ones_settings_and_urls(
        make_config, serve, tmp_path):
    """Without ``isolate``: the motivating case. Django keeps process-wide state
    in its modules (``django.conf.settings``, ``django.apps.apps``, the URL
    resolver cache keyed by ``ROOT_URLCONF``), and both projects' names are
    the same, so the first to set up or to serve wins for both — silently.
    """
    config = make_config({name: project(name, tmp_path) for name in NAMES})
    server = serve(config, "--worker-class", "gthread", "--threads", "8")
    one, two = page("one", tmp_path), page("two", tmp_path)

    # Project two's first request: two's own view (its urls were imported,
    # in its context, when the shared resolver was first used) over project
    # one's settings and database. Two's settings.py was never imported.
    response = server.get("/two/")
    assert response.status_code == 200, response.text
    body = response.json()
    django_id = body.pop("django_id")
    assert body == {**one, "settings_file": None, "reverse": "/two/",
                    "views_file": two["views_file"]}

    # Project one is now served by project two's view: one resolver for both.
    response = server.get("/one/")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body.pop("django_id") == django_id  # one Django
    assert body == {**one, "views_file": two["views_file"]}
    for name in NAMES:  # one admin site, titled after project one's settings
        response = server.get(f"/{name}/admin/login/")
        assert response.status_code == 200, response.text
        assert ADMIN_LOGIN_TITLE.format(TITLE["one"]) in response.text

    # Project two's migrate and seeding ran on project one's database (its
    # admin user is one's): two's own file was never created.
    assert not (tmp_path / "two.sqlite3").exists()
    # Two's models.py registered its Note over one's in the shared registry.
    assert "RuntimeWarning: Model 'notes.note' was already registered" in server.stderr()


def static_project(name: str, tmp_path: Path, isolate: list[str]) -> dict[str, Any]:
    """Project *name* with the whitenoise add-on serving its own static/site.css."""
    root = tmp_path / f"static_{name}"
    root.mkdir(exist_ok=True)
    (root / "site.css").write_text(f"/* {TITLE[name]} */\n")
    table = project(name, tmp_path, isolate=isolate)
    table["environ"]["DJANGO_STATIC_ROOT"] = str(root)
    return table


needs_whitenoise = pytest.mark.skipif(importlib.util.find_spec("whitenoise") is None,
                                      reason="whitenoise is not installed")


@needs_whitenoise
def test_a_shared_django_add_on_under_two_isolated_djangos_is_reported_with_the_fix(
        make_config, serve, tmp_path):
    """whitenoise installed once, ``isolate = ["django"]``: its middleware binds
    the first project's ``settings`` at import; ctxserve says so at load."""
    config = make_config({name: static_project(name, tmp_path, ["django"]) for name in NAMES})
    check = subprocess.run([sys.executable, "-m", "ctxserve", "check", str(config)],
                           capture_output=True, text=True, timeout=120, cwd=tmp_path)
    for name in NAMES:
        fix = (f"apps.{name}.isolate: shared package 'whitenoise' imported 'django', which this "
               f"app isolates")
        assert fix in check.stdout, check.stdout + check.stderr
    assert check.stdout.count("add 'whitenoise' to isolate") == 2, check.stdout
    server = serve(config)
    assert server.get("/one/static/site.css").text == "/* Project One */\n"
    # What the warning is about: project two serves project one's file.
    assert server.get("/two/static/site.css").text == "/* Project One */\n"
    server.stop()
    assert "ctxserve: warning: apps.two.isolate: shared package 'whitenoise'" in server.stderr()


@needs_whitenoise
def test_two_django_projects_with_the_add_on_isolated_too_each_serve_their_own_static_files(
        make_config, serve, tmp_path):
    config = make_config({name: static_project(name, tmp_path, ["django", "whitenoise"])
                          for name in NAMES})
    server = serve(config)
    for name in NAMES:
        response = server.get(f"/{name}/static/site.css")
        assert (response.status_code, response.text) == (200, f"/* {TITLE[name]} */\n")
        assert server.get(f"/{name}/").json()["title"] == TITLE[name]
    server.stop()
    assert "warning" not in server.stdout() + server.stderr()
