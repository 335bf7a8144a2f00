"""Private module namespaces under a real gunicorn: concurrent load, preloading.

The fixture apps are those of ``test_namespaces.py`` (tests/apps/ns/):
``alpha`` and ``beta`` with modules of the same names whose ``OWNER``
names their app, and two Flask apps whose modules are all called ``app``,
``views`` and ``config``. Every response of the load is checked. The
first requests race to import ``lazy`` (imported in the request handler)
in both apps at once.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
import requests

from support import TEST_APPS, hammer

NS = TEST_APPS / "ns"
BOTH = ("alpha", "beta")

needs_gevent = pytest.mark.skipif(importlib.util.find_spec("gevent") is None,
                                  reason="gevent is not installed")
WORKER_CLASSES = [
    pytest.param(("--worker-class", "gthread", "--threads", "8"), id="gthread"),
    pytest.param(("--worker-class", "gevent"), id="gevent", marks=needs_gevent),
    pytest.param(("--engine", "granian", "--threads", "8"), id="granian"),
]


def fixture_app(directory: str, name: str | None = None, **extra: Any) -> dict[str, Any]:
    """The table of a fixture app in tests/apps/ns/<directory>, mounted at /<name>."""
    return {"app": "app:application", "mount": f"/{name or directory}",
            "path": [str(NS / directory)], **extra}


def owners(name: str) -> dict[str, str]:
    """What app alpha or beta answers: every module of it is its own."""
    return {"config": name, "settings": name, "models": name, "utils": name, "utils.text": name,
            "utils.text->config": name, "pkg": name, "pkg.sub": name, "pkg.sub.mod": name,
            "pkg.sub.mod->..other": f"the thing of {name}", "lazy": name}


@pytest.mark.server
@pytest.mark.parametrize("worker_flags", WORKER_CLASSES)
def test_apps_with_colliding_module_names_each_answer_with_their_own_under_load(
        make_config, serve, worker_flags):
    config = make_config({name: fixture_app(name) for name in BOTH})
    server = serve(config, *worker_flags)

    def request(session: requests.Session, t: int, i: int) -> None:
        name = BOTH[(t + i) % 2]
        response = session.get(f"{server.url}/{name}/", timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["owners"] == owners(name)

    assert hammer(request, threads=8, per_thread=200, timeout=60) == 1600


@pytest.mark.server
@pytest.mark.parametrize("worker_flags", WORKER_CLASSES)
def test_two_flask_apps_with_the_same_module_names_each_answer_with_their_own_under_load(
        make_config, serve, worker_flags):
    config = make_config({name: fixture_app(f"flask_{name}", name, app="app:app")
                          for name in ("one", "two")})
    server = serve(config, *worker_flags)

    def request(session: requests.Session, t: int, i: int) -> None:
        name = ("one", "two")[(t + i) % 2]
        response = session.get(f"{server.url}/{name}/", timeout=30)
        assert response.status_code == 200, response.text
        assert response.json() == {"app": name, "greeting": f"hello from {name}",
                                   "page": f"page of {name}",
                                   "views_file": str(NS / f"flask_{name}" / "views.py")}

    assert hammer(request, threads=8, per_thread=200, timeout=60) == 1600


@pytest.mark.server
def test_apps_preloaded_in_the_master_keep_their_namespaces_in_two_workers(make_config, serve):
    config = make_config({name: fixture_app(name) for name in BOTH},
                         server={"workers": 2, "threads": 8, "gunicorn": {"preload_app": True}})
    server = serve(config)
    master = server.proc.pid
    answered: dict[int, int] = {}

    def check(response: requests.Response, name: str) -> None:
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["owners"] == owners(name)
        assert body["loaded_by_pid"] == master  # imported once, in the master
        assert body["pid"] != master  # served by a forked worker
        answered[body["pid"]] = answered.get(body["pid"], 0) + 1

    def request(session: requests.Session, t: int, i: int) -> None:
        name = BOTH[(t + i) % 2]
        check(session.get(f"{server.url}/{name}/", timeout=30), name)

    assert hammer(request, threads=8, per_thread=200, timeout=60) == 1600
    for attempt in range(200):  # a new connection each time, until both workers answered
        if len(answered) == 2:
            break
        check(requests.get(f"{server.url}/{BOTH[attempt % 2]}/", timeout=30), BOTH[attempt % 2])
    assert len(answered) == 2, answered


@pytest.mark.server
@pytest.mark.parametrize("worker_flags", WORKER_CLASSES)
def test_an_app_parses_xml_bodies_through_defusedxml(make_config, serve, worker_flags):
    """defusedxml blocks ``_elementtree`` with a None entry in sys.modules while it
    imports the pure-Python parser; inside an app that block must hold."""
    config = make_config({"feeds": fixture_app("xmlfeed", "feeds"), "alpha": fixture_app("alpha")})
    server = serve(config, *worker_flags)

    def request(session: requests.Session, t: int, i: int) -> None:
        if (t + i) % 2:
            assert session.get(f"{server.url}/alpha/", timeout=30).json()["owners"] == owners("alpha")
            return
        response = session.post(f"{server.url}/feeds/", timeout=30,
                                data=f"<feed><item>{t}</item><item>{i}</item></feed>".encode())
        assert response.status_code == 200, response.text
        assert response.json() == {"root": "feed", "items": [str(t), str(i)]}

    assert hammer(request, threads=8, per_thread=40, timeout=60) == 320
    bomb = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]>'
            b"<x>&b;</x>")
    refused = requests.post(f"{server.url}/feeds/", data=bomb, timeout=10)
    assert (refused.status_code, refused.text) == (400, "refused: EntitiesForbidden\n")
    assert requests.get(f"{server.url}/alpha/", timeout=10).json()["owners"]["config"] == "alpha"


def _two_sites(tmp_path) -> dict[str, Any]:
    """Two apps whose modules share names (``wsgi``, ``config``), each in its own directory."""
    apps = {}
    for name in ("a", "b"):
        site = tmp_path / f"site_{name}"
        site.mkdir()
        (site / "config.py").write_text(f"NAME = {name!r}\n")
        (site / "wsgi.py").write_text(
            "import config\n\n"
            "def application(environ, start_response):\n"
            "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
            "    return [f'{config.NAME} {__file__}'.encode()]\n")
        apps[name] = {"app": "wsgi:application", "mount": f"/{name}", "path": [str(site)]}
    return apps


@pytest.mark.server
@pytest.mark.parametrize("where, worker_flags", [
    pytest.param("PYTHONPATH=a", ("--worker-class", "gthread", "--threads", "8"), id="PYTHONPATH=a-gthread"),
    pytest.param("PYTHONPATH=b", ("--worker-class", "gevent"), id="PYTHONPATH=b-gevent", marks=needs_gevent),
    pytest.param("cwd=a", ("--worker-class", "gthread", "--threads", "8"), id="cwd=a-gthread"),
])
def test_each_app_serves_its_own_modules_when_one_apps_directory_is_on_the_process_path(
        tmp_path, make_config, serve, where, worker_flags):
    apps = _two_sites(tmp_path)
    config = make_config(apps)
    kind, _, site = where.partition("=")
    directory = apps[site]["path"][0]
    if kind == "PYTHONPATH":
        server = serve(config, *worker_flags, env={"PYTHONPATH": directory})
    else:  # python -m ctxserve puts the current directory first on sys.path
        server = serve(config, *worker_flags, cwd=directory)

    def request(session: requests.Session, t: int, i: int) -> None:
        name = ("a", "b")[(t + i) % 2]
        response = session.get(f"{server.url}/{name}/", timeout=30)
        assert response.status_code == 200, response.text
        assert response.text == f"{name} {apps[name]['path'][0]}/wsgi.py"

    assert hammer(request, threads=8, per_thread=50, timeout=60) == 400
