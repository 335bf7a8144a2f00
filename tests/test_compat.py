"""The compatibility corpus: real third-party WSGI apps and frameworks in one server.

Twelve apps of ten projects from the package index (pinned by the ``compat`` extra in
pyproject.toml), each with the entry module a user would write
(tests/compat/*/wsgi.py, every one of them called ``wsgi``), are served
together by ONE ``ctxserve serve`` — once with each engine, gunicorn and
granian — and driven over real HTTP:

* two WsgiDAV instances over different directories (the twins: a file put
  into one never appears in the other), parsing XML bodies (PROPFIND, LOCK)
  through defusedxml;
* Radicale (CalDAV: MKCALENDAR, PUT, REPORT, XML through defusedxml);
* two Django projects with ``django.contrib.admin`` and the whitenoise
  add-on, each with its own settings, database and static files;
* a Flask app with Flask-SQLAlchemy and Flask-Login (a login cookie, rows
  in its own sqlite file);
* Pyramid, Falcon, CherryPy, and two pypiserver instances (a real Bottle
  app) over different directories.

Then every app is requested again by 8 client threads at once, each answer
checked against its own app. The run writes docs/compatibility.md from what
it drove; the last test fails when the committed file differs (and leaves
the new one in place, to be committed). ``pytest -m compat``; .ci/run runs
it once. The apps must be installed: ``pip install -e '.[test,compat]'``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from support import ROOT, TEST_APPS, Server, hammer, serve_command, start_server, toml_text

COMPAT = Path(__file__).parent / "compat"
DOC = ROOT / "docs" / "compatibility.md"

pytestmark = [
    pytest.mark.compat,
    pytest.mark.server,
    pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in
                           ("wsgidav", "radicale", "whitenoise", "pyramid", "falcon", "pypiserver",
                            "cherrypy", "flask_sqlalchemy", "flask_login")),
                       reason="the compat apps are not installed: pip install -e '.[test,compat]'"),
]


@dataclass
class Entry:
    """One app of the corpus: its config table and what the doc says of it."""

    name: str
    what: str                          # the app or framework, as the doc names it
    packages: tuple[str, ...]          # the distributions it is (versions in the doc)
    table: Callable[[Path], dict[str, Any]]
    twin: str = "—"                    # what shows its data stays apart from its twin's
    notes: str = "—"                   # workarounds, and what the user must know
    cause: str = ""                    # why ctxserve reports what it reports of it, if it does
    steps: list[str] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)   # what ctxserve said of it at load


def site(directory: str, name: str, **environ: str) -> Callable[[Path], dict[str, Any]]:
    return lambda tmp: {"app": "wsgi:application", "mount": f"/{name}",
                        "path": [str(COMPAT / directory)],
                        "environ": {key: value.format(tmp=tmp) for key, value in environ.items()}}


def django(name: str) -> Callable[[Path], dict[str, Any]]:
    def table(tmp: Path) -> dict[str, Any]:
        static = tmp / f"static_{name}"
        static.mkdir(exist_ok=True)
        (static / "site.css").write_text(f"/* {DJANGO_TITLE[name]} */\n")
        return {"app": "wsgi:application", "mount": f"/{name}",
                "path": [str(TEST_APPS / f"django_{name}")], "isolate": ["django", "whitenoise"],
                "environ": {"DJANGO_DB": str(tmp / f"{name}.sqlite3"),
                            "DJANGO_STATIC_ROOT": str(static)}}
    return table


DJANGO_TITLE = {"one": "Project One", "two": "Project Two"}
COOKIES = ("Apps mounted on one host share its cookies: {cookie} has path \"/\" by default, "
           "so two such apps overwrite each other's; give each its mount ({setting}).")

CORPUS = [
    Entry("dav_a", "WsgiDAV (WebDAV server)", ("wsgidav", "defusedxml"),
          site("webdav", "dav_a", DAV_ROOT="{tmp}/dav_a", DAV_MOUNT="/dav_a"),
          twin="dav_b (same app, another directory) never sees dav_a's file: GET 404, "
               "PROPFIND lists only its own",
          notes="WsgiDAV writes hrefs from its `mount_path` setting, not from `SCRIPT_NAME`: "
                "set it to the mount, as under any WSGI dispatcher."),
    Entry("dav_b", "WsgiDAV, second instance", ("wsgidav",),
          site("webdav", "dav_b", DAV_ROOT="{tmp}/dav_b", DAV_MOUNT="/dav_b"),
          twin="dav_a never sees dav_b's file", notes="As dav_a."),
    Entry("calendar", "Radicale (CalDAV/CardDAV server)", ("radicale", "defusedxml"),
          site("caldav", "calendar", RADICALE_ROOT="{tmp}/radicale"),
          cause="(Radicale imports `six`, which adds its meta-path importer to `sys.meta_path` "
                "when first imported: the same in a process of its own, and harmless.)"),
    Entry("one", "Django project with django.contrib.admin and whitenoise", ("django", "whitenoise"),
          django("one"),
          twin="two answers with its own settings, database and static file",
          notes='`isolate = ["django", "whitenoise"]`. With `["django"]` alone, ctxserve says at '
                'load: `shared package \'whitenoise\' imported \'django\', which this app '
                'isolates, ... add \'whitenoise\' to isolate` (without it, project two would '
                'serve project one\'s static files). '
                + COOKIES.format(cookie="`sessionid`/`csrftoken`",
                                 setting="`SESSION_COOKIE_PATH`, `CSRF_COOKIE_PATH`")),
    Entry("two", "Django project, second", ("django", "whitenoise"), django("two"),
          twin="one answers with its own", notes="As one."),
    Entry("notes", "Flask with Flask-SQLAlchemy and Flask-Login",
          ("flask", "flask-sqlalchemy", "flask-login", "sqlalchemy"),
          site("flask_notes", "notes", FLASK_SECRET="compat-notes", FLASK_DB="{tmp}/notes.sqlite3",
               COOKIE_PATH="/notes"),
          notes=COOKIES.format(cookie="Flask's `session` cookie",
                               setting="`SESSION_COOKIE_PATH`, here from the app's environ")),
    Entry("pyramid", "Pyramid", ("pyramid",), site("pyramid_hello", "pyramid", SITE="pyramid"),
          cause="(Pyramid imports `pkg_resources`, which adds its vendored-package importer to "
                "`sys.meta_path`: harmless.)"),
    Entry("falcon", "Falcon", ("falcon",), site("falcon_items", "falcon")),
    Entry("pypi", "pypiserver (a Bottle app: a package index)", ("pypiserver",),
          site("package_index", "pypi", PYPI_ROOT="{tmp}/packages"),
          twin="pypi_b (same app, another directory) lists only its own packages",
          cause="(pypiserver's vendored Bottle adds its `bottle.ext` import redirect to "
                "`sys.meta_path`: harmless.)",
          notes="Each `pypiserver.app()` pops `pypiserver._app` from `sys.modules` and imports "
                "a fresh one (its configuration lives in that module's globals): inside an app "
                "`sys.modules` behaves as a dict, so two instances share nothing."),
    Entry("pypi_b", "pypiserver, second instance", ("pypiserver",),
          site("package_index", "pypi_b", PYPI_ROOT="{tmp}/packages_b"),
          twin="pypi never lists pypi_b's packages", notes="As pypi."),
    Entry("cherry", "CherryPy", ("cherrypy",), site("cherrypy_hello", "cherry", SITE="cherry"),
          notes="`cherrypy.Application(root, script_name=None)`: the mount comes from "
                "`SCRIPT_NAME`; CherryPy's own server and engine are not used."),
]
BY_NAME = {entry.name: entry for entry in CORPUS}


@pytest.fixture(scope="module", autouse=True)
def _only_when_asked(request: pytest.FixtureRequest) -> None:
    if "compat" not in (request.config.getoption("markexpr", "") or ""):
        pytest.skip("the compatibility corpus runs once, deliberately: pytest -m compat")


ENGINES = ("gunicorn", "granian")


@pytest.fixture(scope="module", params=ENGINES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The whole corpus in one server, once with each engine."""
    tmp = tmp_path_factory.mktemp(f"compat-{request.param}")
    for directory in ("dav_a", "dav_b", "radicale", "packages", "packages_b"):
        (tmp / directory).mkdir()
    (tmp / "packages" / "demo-1.0.tar.gz").write_bytes(b"not really a tarball\n")
    (tmp / "packages_b" / "other-2.0.tar.gz").write_bytes(b"another one\n")
    config = tmp / "ctxserve.toml"
    config.write_text(toml_text({"engine": request.param, "worker_class": "gthread", "threads": 8},
                                {entry.name: entry.table(tmp) for entry in CORPUS}))
    running = start_server(serve_command(config), tmp, timeout=120)
    yield running
    running.stop()


class Client:
    """Requests to one app, each recorded as a step for the doc."""

    def __init__(self, server: Server, entry: Entry, **session: Any) -> None:
        self.url = f"{server.url}/{entry.name}"
        self.entry = entry
        self.session = requests.Session()
        for key, value in session.items():
            setattr(self.session, key, value)

    def __call__(self, method: str, path: str, expect: int, what: str = "",
                 **kwargs: Any) -> requests.Response:
        response = self.session.request(method, self.url + path, timeout=30, **kwargs)
        assert response.status_code == expect, \
            f"{self.entry.name}: {method} {path}: {response.status_code} {response.text[:800]}"
        step = f"{method} {path}{' (' + what + ')' if what else ''} → {expect}"
        if step not in self.entry.steps:
            self.entry.steps.append(step)
        return response


# -- each app, driven -------------------------------------------------------------------

PROPFIND = ('<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:"><d:prop>'
            "<d:getcontentlength/><d:resourcetype/></d:prop></d:propfind>")
LOCK = ('<?xml version="1.0" encoding="utf-8"?><d:lockinfo xmlns:d="DAV:"><d:lockscope>'
        "<d:exclusive/></d:lockscope><d:locktype><d:write/></d:locktype>"
        "<d:owner>compat</d:owner></d:lockinfo>")


def drive_webdav(server: Server, me: str, twin: str) -> None:
    dav = Client(server, BY_NAME[me])
    dav("PUT", f"/{me}.txt", 201, data=f"the file of {me}".encode())
    assert dav("GET", f"/{me}.txt", 200).text == f"the file of {me}"
    listing = dav("PROPFIND", "/", 207, "XML body", data=PROPFIND, headers={"Depth": "1"}).text
    assert f"<href>/{me}/{me}.txt</href>" in listing
    lock = dav("LOCK", f"/{me}.txt", 200, "XML body", data=LOCK, headers={"Timeout": "Second-60"})
    dav("UNLOCK", f"/{me}.txt", 204, headers={"Lock-Token": lock.headers["Lock-Token"]})
    # The twin: the same app and modules, its own directory.
    assert requests.get(f"{server.url}/{twin}/{me}.txt", timeout=30).status_code == 404
    twin_listing = requests.request("PROPFIND", f"{server.url}/{twin}/", data=PROPFIND,
                                    headers={"Depth": "1"}, timeout=30).text
    assert f"{me}.txt" not in twin_listing


def drive_dav_a(server: Server) -> None:
    drive_webdav(server, "dav_a", "dav_b")


def drive_dav_b(server: Server) -> None:
    drive_webdav(server, "dav_b", "dav_a")


EVENT = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//ctxserve//compat//EN\r\nBEGIN:VEVENT\r\n"
         "UID:standup-1\r\nDTSTAMP:20260101T090000Z\r\nDTSTART:20260105T090000Z\r\n"
         "DTEND:20260105T093000Z\r\nSUMMARY:Standup\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


def drive_calendar(server: Server) -> None:
    cal = Client(server, BY_NAME["calendar"], auth=("alice", "any"))
    cal("MKCALENDAR", "/alice/work/", 201, "XML body", data=(
        '<?xml version="1.0" encoding="utf-8"?><C:mkcalendar xmlns:D="DAV:" '
        'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop><D:displayname>Work'
        "</D:displayname></D:prop></D:set></C:mkcalendar>"))
    cal("PUT", "/alice/work/standup-1.ics", 201, "an event",
        data=EVENT, headers={"Content-Type": "text/calendar"})
    report = cal("REPORT", "/alice/work/", 207, "calendar-query, XML body", headers={"Depth": "1"},
                 data='<?xml version="1.0" encoding="utf-8"?><C:calendar-query xmlns:D="DAV:" '
                      'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/>'
                      '<C:calendar-data/></D:prop><C:filter><C:comp-filter name="VCALENDAR">'
                      '<C:comp-filter name="VEVENT"/></C:comp-filter></C:filter></C:calendar-query>')
    assert "<href>/calendar/alice/work/standup-1.ics</href>" in report.text
    assert "SUMMARY:Standup" in report.text
    listing = cal("PROPFIND", "/alice/", 207, "XML body", data=PROPFIND, headers={"Depth": "1"})
    assert "/calendar/alice/work/" in listing.text


def drive_django(server: Server, name: str) -> None:
    project = Client(server, BY_NAME[name])
    page = project("GET", "/", 200, "a view over the project's own database").json()
    assert (page["title"], page["reverse"]) == (DJANGO_TITLE[name], f"/{name}/")
    assert page["database_file"].endswith(f"{name}.sqlite3")
    login = project("GET", "/admin/login/", 200, "django.contrib.admin")
    assert f"<title>Log in | {DJANGO_TITLE[name]}</title>" in login.text
    assert f'action="/{name}/admin/login/"' in login.text
    css = project("GET", "/static/site.css", 200, "whitenoise")
    assert css.text == f"/* {DJANGO_TITLE[name]} */\n"


def drive_one(server: Server) -> None:
    drive_django(server, "one")


def drive_two(server: Server) -> None:
    drive_django(server, "two")


def drive_notes(server: Server) -> None:
    notes = Client(server, BY_NAME["notes"])
    notes("GET", "/notes", 401, "before logging in")
    notes("POST", "/login", 200, "Flask-Login", data={"name": "ann"})
    assert [c.path for c in notes.session.cookies if c.name == "session"] == ["/notes"]
    notes("POST", "/notes", 200, "Flask-SQLAlchemy", data={"text": "first"})
    assert notes("GET", "/notes", 200).json() == {"user": "ann", "notes": ["first"]}


def drive_pyramid(server: Server) -> None:
    answer = Client(server, BY_NAME["pyramid"])("GET", "/hello/bob", 200, "route, JSON renderer")
    assert answer.json() == {"hello": "bob", "site": "pyramid",
                             "url": f"{server.url}/pyramid/hello/x"}


def drive_falcon(server: Server) -> None:
    falcon = Client(server, BY_NAME["falcon"])
    assert falcon("POST", "/items", 201, "JSON body", json={"item": "x"}).json() == {"items": ["x"]}
    assert falcon("GET", "/items", 200).json() == {"items": ["x"]}


def drive_package_index(server: Server, me: str, package: str, file: str, content: bytes,
                        twin: str, other: str) -> None:
    pypi = Client(server, BY_NAME[me])
    index = pypi("GET", "/simple/", 200).text
    assert f'<a href="{package}/">{package}</a>' in index and other not in index
    links = pypi("GET", f"/simple/{package}/", 200).text
    assert re.search(rf'href="/{me}/packages/{re.escape(file)}#sha256=[0-9a-f]{{64}}"', links), links
    assert pypi("GET", f"/packages/{file}", 200).content == content
    assert package not in requests.get(f"{server.url}/{twin}/simple/", timeout=30).text


def drive_pypi(server: Server) -> None:
    drive_package_index(server, "pypi", "demo", "demo-1.0.tar.gz", b"not really a tarball\n",
                        "pypi_b", "other")


def drive_pypi_b(server: Server) -> None:
    drive_package_index(server, "pypi_b", "other", "other-2.0.tar.gz", b"another one\n",
                        "pypi", "demo")


def drive_cherry(server: Server) -> None:
    answer = Client(server, BY_NAME["cherry"])("GET", "/?name=z", 200, "an exposed handler, JSON tool")
    assert answer.json() == {"hello": "z", "site": "cherry"}


@pytest.mark.parametrize("name", list(BY_NAME))
def test_each_app_does_its_job_in_the_shared_server(server, name):
    globals()[f"drive_{name}"](server)


#: One read-only request per app and what its answer must hold: every app
#: at once, from 8 client threads.
READS = {
    "dav_a": ("/dav_a/dav_a.txt", "the file of dav_a"), "dav_b": ("/dav_b/dav_b.txt", "the file of dav_b"),
    "one": ("/one/static/site.css", "Project One"), "two": ("/two/static/site.css", "Project Two"),
    "pyramid": ("/pyramid/hello/c", '"site": "pyramid"'), "falcon": ("/falcon/items", '"items"'),
    "pypi": ("/pypi/simple/", "demo"), "pypi_b": ("/pypi_b/simple/", "other"), "cherry": ("/cherry/?name=c", '"site": "cherry"'),
    "notes": ("/notes/notes", "Unauthorized"), "calendar": ("/calendar/.web/", "Radicale"),
}
CONCURRENT = 8 * 44


def test_every_app_answers_with_its_own_content_under_concurrent_load(server):
    names = list(READS)

    def request(session: requests.Session, t: int, i: int) -> None:
        path, expected = READS[names[(t + i) % len(names)]]
        response = session.get(server.url + path, timeout=30)
        assert expected in response.text, (path, response.status_code, response.text[:300])

    assert hammer(request, threads=8, per_thread=CONCURRENT // 8, timeout=120) == CONCURRENT


def test_the_server_printed_no_warning_and_no_traceback(server):
    """No isolate warning is left (each workaround is applied) and nothing failed;
    the guarded-global reports ctxserve printed go into the doc."""
    output = server.stderr() + server.stdout()
    assert "ctxserve: warning" not in output
    assert "Traceback" not in output
    for match in re.finditer(r'^ctxserve: app "(\w+)" ([^;\n]+)', output, re.MULTILINE):
        report = match[2].strip()
        if report not in BY_NAME[match[1]].reports:
            BY_NAME[match[1]].reports.append(report)


# -- docs/compatibility.md ------------------------------------------------------------

def pinned() -> dict[str, str]:
    """The ``compat`` extra's pins: distribution name -> version."""
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    pins = {}
    for requirement in extra["compat"]:
        name, _, version = requirement.partition("==")
        pins[name.strip().lower()] = version.strip()
    return pins


def render() -> str:
    pins = pinned()
    lines = [
        "# Compatibility: real apps in one ctxserve server",
        "",
        "Written by `pytest -m compat` (tests/test_compat.py), which installs nothing itself: "
        "`pip install -e '.[test,compat]'` first. Every app below was served by **one** "
        "`ctxserve serve`, each from an entry module called `wsgi`, and driven over HTTP as "
        "listed, once with each engine (gunicorn's gthread worker with 8 threads, and "
        "granian); then all of them answered "
        f"{CONCURRENT} requests from 8 client threads at once, each answer checked against "
        "its own app. The server printed no traceback and no `isolate` warning; what it "
        "reported of guarded process globals at load is quoted under notes.",
        "",
        "| app | version | what was driven | twin isolation | notes and workarounds |",
        "| --- | --- | --- | --- | --- |",
    ]
    for entry in CORPUS:
        versions = ", ".join(f"{p} {pins[p]}" for p in entry.packages)
        driven = "; ".join(f"`{step}`" for step in entry.steps)
        notes = " ".join([*([] if entry.notes == "—" else [entry.notes]),
                          *(f"ctxserve reported at load: “{report}”." for report in entry.reports),
                          *([entry.cause] if entry.reports and entry.cause else [])]) or "—"
        lines.append(f"| **{entry.name}**: {entry.what} | {versions} | {driven} | {entry.twin} "
                     f"| {notes} |")
    return "\n".join(lines) + "\n"


def test_the_installed_apps_are_the_pinned_versions():
    for name, version in pinned().items():
        assert importlib.metadata.version(name) == version, name


def test_docs_compatibility_md_is_what_this_run_drove():
    missing = [entry.name for entry in CORPUS if not entry.steps]
    assert not missing, f"not driven (run the whole file): {missing}"
    text = render()
    if DOC.exists() and DOC.read_text() == text:
        return
    DOC.write_text(text)
    pytest.fail(f"{DOC.relative_to(ROOT)} differed from what this run drove; rewritten: commit it")
