"""Each app's stdout and stderr, against a real gunicorn under concurrent load.

Every probe line names the app that printed it and a tag unique to the
request, so a line that reached the wrong place, was cut, mixed with another
or printed twice is caught by looking at where each tag ended up.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import io
import re
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from support import ENGINES, hammer, probe_app, serve_command, start_server, toml_text, wait_for
from ctxserve.apps import App
from ctxserve.config import parse
from ctxserve.streams import open_destination, reopen_files

pytestmark = pytest.mark.server

INHERIT = ("a", "b", "c")          # stdout/stderr = "inherit": the server's own streams
TO_FILE = ("fa", "fb")             # each its own files
NULL = "quiet"                     # "null"
LOGGED = "logged"                  # "logging": logger ctxserve.app.logged
ECHO_APPS = (*INHERIT, *TO_FILE, NULL, LOGGED)

TAG = r"[A-Za-z]+\d+x\d+"          # the tags these tests make: e.g. "E3x117"


def count_tags(lines: Iterable[str], pattern: str) -> collections.Counter[str]:
    """Tags of the *lines* that match *pattern* in full; any other line fails the test."""
    regex = re.compile(pattern)
    tags: collections.Counter[str] = collections.Counter()
    for line in lines:
        match = regex.fullmatch(line)
        assert match, f"a mixed, cut or misattributed line: {line!r}"
        tags[match["tag"]] += 1
    return tags


def exactly_once(expected: Iterable[str]) -> collections.Counter[str]:
    return collections.Counter(list(expected))


def with_marker(text: str, marker: str) -> list[str]:
    """The lines of *text* that contain *marker* (the tests' own lines)."""
    return [line for line in text.splitlines() if marker in line]


def start(tmp: Path, apps: dict, server: dict | None = None, engine: str | None = None, **kwargs):
    config = tmp / "ctxserve.toml"
    config.write_text(toml_text(server, apps))
    return start_server(serve_command(config, engine=engine), tmp, **kwargs)


# -- 8 client threads x 200 /echo over apps of every destination ------------------

@dataclass
class EchoRun:
    tmp: Path
    stdout: str
    stderr: str
    tags: dict[str, list[str]] = field(default_factory=dict)   # app -> tags it was sent


@pytest.fixture(scope="module", params=ENGINES)
def echo_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> EchoRun:
    """One gthread server, apps of all four destinations, 1600 concurrent /echo.

    /echo writes "APP TAG " and "APP-end\\n" as two writes with a sleep in
    between, then "APP TAG err\\n" to stderr. The server is stopped before
    the tests look at its output.
    """
    tmp = tmp_path_factory.mktemp("echo")
    apps = {name: probe_app(name, f"/{name}") for name in INHERIT}
    for name in TO_FILE:
        apps[name] = probe_app(name, f"/{name}", stdout=str(tmp / f"{name}.out"),
                               stderr=str(tmp / f"{name}.err"))
    apps[NULL] = probe_app(NULL, f"/{NULL}", stdout="null", stderr="null")
    apps[LOGGED] = probe_app(LOGGED, f"/{LOGGED}", stdout="logging", stderr="logging")
    server = start(tmp, apps, {"worker_class": "gthread", "threads": 8}, engine=request.param)
    run = EchoRun(tmp, "", "", {name: [] for name in ECHO_APPS})
    try:
        def request(session, t: int, i: int) -> None:
            app = ECHO_APPS[(t + i) % len(ECHO_APPS)]
            tag = f"E{t}x{i}"
            r = session.get(f"{server.url}/{app}/echo", params={"tag": tag, "sleep": "0.001"},
                            timeout=30)
            assert r.status_code == 200 and r.json() == {"id": app, "tag": tag}, r.text
            run.tags[app].append(tag)

        assert hammer(request, threads=8, per_thread=200, timeout=120) == 1600
    finally:
        server.stop()
    run.stdout, run.stderr = server.stdout(), server.stderr()
    return run


def test_inherit_stdout_lines_are_whole_and_prefixed_with_the_app_that_printed_them(echo_run):
    lines = with_marker(echo_run.stdout, "-end")
    assert lines, "no /echo line reached the server's stdout"
    for line in lines:
        match = re.fullmatch(rf"\[(\w+)\] (\w+) {TAG} (\w+)-end", line)
        assert match, f"a mixed or cut line: {line!r}"
        assert match[1] == match[2] == match[3], f"line printed by one app, prefixed as another: {line!r}"
        assert match[1] in INHERIT, f"an app with another destination leaked here: {line!r}"


def test_every_inherit_stdout_line_appears_exactly_once(echo_run):
    lines = with_marker(echo_run.stdout, "-end")
    for app in INHERIT:
        mine = [line for line in lines if line.startswith(f"[{app}] ")]
        assert count_tags(mine, rf"\[{app}\] {app} (?P<tag>{TAG}) {app}-end") == \
            exactly_once(echo_run.tags[app])


def test_inherit_stderr_lines_are_whole_and_prefixed_with_the_app_that_printed_them(echo_run):
    lines = [line for line in echo_run.stderr.splitlines() if re.search(rf" {TAG}( |$)", line)]
    assert lines, "no /echo line reached the server's stderr"
    inherit = [line for line in lines if "[ctxserve.app." not in line]  # not the logged app's records
    for line in inherit:
        match = re.fullmatch(rf"\[(\w+)\] (\w+) {TAG} err", line)
        assert match, f"a mixed or cut line: {line!r}"
        assert match[1] == match[2] and match[1] in INHERIT, f"misattributed line: {line!r}"


def test_every_inherit_stderr_line_appears_exactly_once(echo_run):
    lines = echo_run.stderr.splitlines()
    for app in INHERIT:
        mine = [line for line in lines if line.startswith(f"[{app}] ")]
        assert count_tags(mine, rf"\[{app}\] {app} (?P<tag>{TAG}) err") == exactly_once(echo_run.tags[app])


def test_file_destination_gets_each_of_its_apps_lines_whole_and_exactly_once(echo_run):
    for app in TO_FILE:
        out = (echo_run.tmp / f"{app}.out").read_text().splitlines()
        err = (echo_run.tmp / f"{app}.err").read_text().splitlines()
        # Every line of the file is this app's own, unprefixed and whole.
        assert count_tags(out, rf"{app} (?P<tag>{TAG}) {app}-end") == exactly_once(echo_run.tags[app])
        assert count_tags(err, rf"{app} (?P<tag>{TAG}) err") == exactly_once(echo_run.tags[app])


def test_file_destination_apps_print_nothing_to_the_server_streams(echo_run):
    for app in TO_FILE:
        leaked = [line for line in (echo_run.stdout + echo_run.stderr).splitlines()
                  if re.search(rf"\b{app} {TAG}\b", line)]
        assert leaked == []


def test_null_destination_output_appears_nowhere(echo_run):
    assert echo_run.tags[NULL], "the null app got no requests"
    everything = [echo_run.stdout, echo_run.stderr,
                  *(path.read_text() for path in echo_run.tmp.glob("f?.*"))]
    for text in everything:
        assert f"{NULL} E" not in text    # "quiet E0x3 quiet-end", "quiet E0x3 err"


def test_logging_destination_emits_one_record_per_line_on_the_apps_logger(echo_run):
    records = [line for line in echo_run.stderr.splitlines() if f"{LOGGED} E" in line]
    out = [r for r in records if r.endswith(f"{LOGGED}-end")]
    err = [r for r in records if r.endswith(" err")]
    assert len(out) + len(err) == len(records)
    logger = re.escape(f"[ctxserve.app.{LOGGED}]")
    assert count_tags(out, rf".*\[INFO\] {logger} {LOGGED} (?P<tag>{TAG}) {LOGGED}-end") == \
        exactly_once(echo_run.tags[LOGGED])
    assert count_tags(err, rf".*\[ERROR\] {logger} {LOGGED} (?P<tag>{TAG}) err") == \
        exactly_once(echo_run.tags[LOGGED])
    assert f"{LOGGED} E" not in echo_run.stdout


# -- environ["wsgi.errors"] is the app's stderr ----------------------------------------

def test_wsgi_errors_goes_to_each_apps_own_stderr_destination(tmp_path):
    """Prefixed for "inherit", the app's file, nowhere for "null", a record for "logging"."""
    apps = {"a": probe_app("a", "/a"), "b": probe_app("b", "/b"),
            "fa": probe_app("fa", "/fa", stderr=str(tmp_path / "fa.err")),
            NULL: probe_app(NULL, f"/{NULL}", stderr="null"),
            LOGGED: probe_app(LOGGED, f"/{LOGGED}", stderr="logging")}
    names = list(apps)
    server = start(tmp_path, apps, {"worker_class": "gthread", "threads": 4})
    sent: dict[str, list[str]] = {name: [] for name in names}
    try:
        def request(session, t: int, i: int) -> None:
            app, tag = names[(t + i) % len(names)], f"W{t}x{i}"
            r = session.get(f"{server.url}/{app}/wsgi-errors", params={"tag": tag}, timeout=30)
            assert r.status_code == 200 and r.json() == {"id": app, "tag": tag}, r.text
            sent[app].append(tag)

        assert hammer(request, threads=4, per_thread=25, timeout=60) == 100
    finally:
        server.stop()
    stderr, stdout = server.stderr(), server.stdout()
    lines = with_marker(stderr, "wsgi-errors")
    for app in ("a", "b"):
        mine = [line for line in lines if line.startswith(f"[{app}] ")]
        assert count_tags(mine, rf"\[{app}\] {app} (?P<tag>{TAG}) wsgi-errors") == exactly_once(sent[app])
    assert count_tags((tmp_path / "fa.err").read_text().splitlines(),
                      rf"fa (?P<tag>{TAG}) wsgi-errors") == exactly_once(sent["fa"])
    logger = re.escape(f"[ctxserve.app.{LOGGED}]")
    records = [line for line in lines if f"{LOGGED} W" in line]
    assert count_tags(records, rf".*\[ERROR\] {logger} {LOGGED} (?P<tag>{TAG}) wsgi-errors") == \
        exactly_once(sent[LOGGED])
    unprefixed = [line for line in (stderr + stdout).splitlines()
                  if re.match(rf"\w+ {TAG} wsgi-errors", line)]
    assert unprefixed == []
    assert f"{NULL} W" not in stderr + stdout


# -- output printed after the app returned, or by code it started -----------------

HANDOFF_APPS = ("a", "b")
HANDOFF_ROUTES = ("stream", "thread", "executor")


@pytest.fixture(scope="module", params=ENGINES)
def handoff_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> EchoRun:
    """Two apps under 8 x 90 concurrent /stream, /thread and /executor requests."""
    tmp = tmp_path_factory.mktemp("handoff")
    apps = {name: probe_app(name, f"/{name}") for name in HANDOFF_APPS}
    server = start(tmp, apps, {"worker_class": "gthread", "threads": 8}, engine=request.param)
    run = EchoRun(tmp, "", "", collections.defaultdict(list))
    try:
        def request(session, t: int, i: int) -> None:
            app = HANDOFF_APPS[t % 2]
            route = HANDOFF_ROUTES[i % 3]
            tag = f"H{t}x{i}"
            r = session.get(f"{server.url}/{app}/{route}", params={"tag": tag}, timeout=30)
            assert r.status_code == 200, r.text
            if route == "stream":
                assert r.text == "".join(f"{app} {n}\n" for n in range(3))
            else:
                assert r.json()["id"] == app
            run.tags[app, route].append(tag)

        assert hammer(request, threads=8, per_thread=90, timeout=120) == 720
    finally:
        server.stop()
    run.stdout, run.stderr = server.stdout(), server.stderr()
    return run


def handoff_lines(run: EchoRun, app: str, kinds: str) -> list[str]:
    return [line for line in run.stdout.splitlines()
            if line.startswith(f"[{app}] ") and re.fullmatch(rf".* (?:{kinds})", line)]


def test_handoff_output_lines_are_whole_and_prefixed_with_their_app(handoff_run):
    lines = with_marker(handoff_run.stdout, " H")
    assert lines
    for line in lines:
        match = re.fullmatch(rf"\[(\w+)\] (\w+) {TAG} (?:chunk[012]|close|thread|executor)", line)
        assert match and match[1] == match[2], f"mixed, cut or misattributed line: {line!r}"


def test_output_while_the_response_is_iterated_and_in_close_reaches_the_apps_stdout(handoff_run):
    for app in HANDOFF_APPS:
        for kind in ("chunk0", "chunk1", "chunk2", "close"):
            lines = handoff_lines(handoff_run, app, kind)
            assert count_tags(lines, rf"\[{app}\] {app} (?P<tag>{TAG}) {kind}") == \
                exactly_once(handoff_run.tags[app, "stream"])


def test_output_of_a_thread_the_app_started_reaches_the_apps_stdout(handoff_run):
    for app in HANDOFF_APPS:
        lines = handoff_lines(handoff_run, app, "thread")
        assert count_tags(lines, rf"\[{app}\] {app} (?P<tag>{TAG}) thread") == \
            exactly_once(handoff_run.tags[app, "thread"])


def test_output_of_an_executor_job_reaches_the_apps_stdout(handoff_run):
    for app in HANDOFF_APPS:
        lines = handoff_lines(handoff_run, app, "executor")
        assert count_tags(lines, rf"\[{app}\] {app} (?P<tag>{TAG}) executor") == \
            exactly_once(handoff_run.tags[app, "executor"])


# -- redirecting stdout inside one request ----------------------------------------

def test_redirect_stdout_in_a_request_captures_only_that_requests_output(make_config, serve):
    """Slow /a/redirect requests hold a redirect while /echo of a and b keeps printing."""
    server = serve(make_config({"a": probe_app("a", "/a"), "b": probe_app("b", "/b")},
                               {"worker_class": "gthread", "threads": 16}))
    echoed: dict[str, list[str]] = {"a": [], "b": []}

    def redirect(n: int) -> tuple[str, str]:
        r = requests.get(f"{server.url}/a/redirect", params={"tag": f"R0x{n}", "sleep": "0.6"},
                         timeout=30)
        return f"R0x{n}", r.json()["captured"]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        redirects = [pool.submit(redirect, n) for n in range(4)]
        time.sleep(0.1)  # the redirects are in place
        deadline = time.monotonic() + 20

        def echo(session, t: int, i: int) -> None:
            if all(f.done() for f in redirects) or time.monotonic() > deadline:
                return  # echo for as long as a redirect is in place, no longer
            app = "ab"[(t + i) % 2]
            tag = f"P{t}x{i}"
            session.get(f"{server.url}/{app}/echo", params={"tag": tag}, timeout=30).raise_for_status()
            echoed[app].append(tag)

        hammer(echo, threads=6, per_thread=300, timeout=30)
        captured = dict(f.result() for f in redirects)
    server.stop()
    assert len(echoed["a"]) + len(echoed["b"]) >= 20, "too few requests ran during the redirects"

    # The redirected text is in the response only; the line after it is on stdout.
    assert captured == {tag: f"a {tag} redirected\n" for tag in captured}
    out = server.stdout()
    assert "redirected" not in out
    assert count_tags([line for line in out.splitlines() if " after" in line],
                      rf"\[a\] a (?P<tag>{TAG}) after") == exactly_once(captured)
    # The other requests' lines, of the same app and the other, all reached stdout.
    for app in "ab":
        lines = [line for line in out.splitlines() if line.endswith(f"{app}-end")]
        assert count_tags(lines, rf"\[{app}\] {app} (?P<tag>{TAG}) {app}-end") == exactly_once(echoed[app])


# -- in-process: the request path of an App, without a server -----------------------

def file_app(tmp_path: Path, wsgi) -> App:
    out = tmp_path / "app.out"
    config = parse({"apps": {"unit": {"app": "unused:app", "mount": "/", "stdout": str(out)}}},
                   tmp_path / "ctxserve.toml")
    app = App(config.apps[0], wsgi=wsgi)
    assert app.load()
    return app


def call(app: App, path: str = "/") -> bytes:
    result = app({"PATH_INFO": path}, lambda status, headers, exc_info=None: None)
    try:
        return b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()


def test_assigning_sys_stdout_in_a_request_lasts_for_that_request_only(tmp_path):
    captured = io.StringIO()

    def wsgi(environ, start_response):
        start_response("200 OK", [])
        if environ["PATH_INFO"] == "/assign":
            sys.stdout = captured          # never restored
        print(f"printed by {environ['PATH_INFO']}")
        return [b""]

    app = file_app(tmp_path, wsgi)
    outside = sys.stdout
    call(app, "/assign")
    call(app, "/next")
    assert captured.getvalue() == "printed by /assign\n"
    assert (tmp_path / "app.out").read_text() == "printed by /next\n"
    assert sys.stdout is outside


def test_sys_stdin_inside_an_app_is_empty(tmp_path):
    seen = {}

    def wsgi(environ, start_response):
        start_response("200 OK", [])
        seen["read"] = sys.stdin.read()
        seen["readline"] = sys.stdin.readline()
        try:
            input()
        except EOFError:
            seen["input"] = "EOFError"
        return [b""]

    call(file_app(tmp_path, wsgi))
    assert seen == {"read": "", "readline": "", "input": "EOFError"}


# -- "logging" with an app that configures logging itself ------------------------------

def test_logging_destination_does_not_feed_records_back_when_the_app_calls_basicconfig(
        make_config, serve, tmp_path):
    """logging.basicConfig() in the app puts the app's stderr on the root logger,
    which also receives the records of ctxserve.app.NAME."""
    (tmp_path / "configures_logging.py").write_text(
        "import logging\n"
        "logging.basicConfig(level=logging.INFO)  # a root handler on the app's sys.stderr\n"
        "def application(environ, start_response):\n"
        "    logging.getLogger('mine').warning('hello %s', environ['QUERY_STRING'])\n"
        "    start_response('200 OK', [])\n"
        "    return [b'ok']\n")
    server = serve(make_config({"lg": {"app": "configures_logging:application", "mount": "/lg",
                                       "path": [str(tmp_path)], "stderr": "logging"}}))
    assert server.get("/lg/?once").status_code == 200
    server.stop()
    records = [line for line in server.stderr().splitlines() if "hello once" in line]
    assert len(records) == 1, records[:3]
    assert records[0].endswith("[ctxserve.app.lg] WARNING:mine:hello once")


def test_log_records_of_one_app_never_reach_another_apps_root_handler(make_config, serve, tmp_path):
    (tmp_path / "configures.py").write_text(
        "import logging\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [b'ok']\n")
    (tmp_path / "logs.py").write_text(
        "import logging\n"
        "def application(environ, start_response):\n"
        "    logging.getLogger('other').warning('a record of app logs')\n"
        "    start_response('200 OK', [])\n"
        "    return [b'ok']\n")
    first_err = tmp_path / "configures.err"
    server = serve(make_config({
        "configures": {"app": "configures:application", "mount": "/configures",
                       "path": [str(tmp_path)], "stderr": str(first_err)},
        "logs": {"app": "logs:application", "mount": "/logs", "path": [str(tmp_path)], "stderr": "null"},
    }))
    assert server.get("/configures/").status_code == 200
    assert server.get("/logs/").status_code == 200
    server.stop()
    assert "a record of app logs" not in first_err.read_text()


# -- log rotation: SIGUSR1 reopens the apps' files, as gunicorn's own ------------------

@pytest.mark.parametrize(("engine", "worker_class"),
                         [("gunicorn", "sync"), ("gunicorn", "gthread"), ("gunicorn", "gevent"),
                          ("granian", "gthread")])
def test_sigusr1_to_the_master_reopens_app_log_files_renamed_by_a_rotation(tmp_path, engine, worker_class):
    """logrotate without copytruncate: rename the files, USR1 to the master, the new files get the lines."""
    logs = tmp_path / "logs"
    logs.mkdir()
    out, err = logs / "rot.out", logs / "rot.err"
    apps = {"rot": probe_app("rot", "/rot", stdout=str(out), stderr=str(err)),
            "other": probe_app("other", "/other", stdout=str(logs / "other.out"))}
    config = tmp_path / "ctxserve.toml"
    config.write_text(toml_text({"workers": 1}, apps))
    server = start_server(serve_command(config, "--worker-class", worker_class, engine=engine), tmp_path)
    try:
        assert server.get("/rot/echo?tag=before").ok and server.get("/other/echo?tag=before").ok
        out.rename(logs / "rot.out.1")
        err.rename(logs / "rot.err.1")
        (logs / "other.out").rename(logs / "other.out.1")
        server.proc.send_signal(signal.SIGUSR1)
        # The worker reopens the files by name as soon as it handles the signal.
        wait_for(lambda: out.exists() and err.exists() and (logs / "other.out").exists(), timeout=15)
        for tag in ("after1", "after2"):
            assert server.get(f"/rot/echo?tag={tag}").ok and server.get(f"/other/echo?tag={tag}").ok
        assert server.proc.poll() is None, "USR1 must not stop the server"
    finally:
        server.stop()
    assert (logs / "rot.out.1").read_text() == "rot before rot-end\n"
    assert (logs / "rot.err.1").read_text() == "rot before err\n"
    assert out.read_text() == "rot after1 rot-end\nrot after2 rot-end\n"
    assert err.read_text() == "rot after1 err\nrot after2 err\n"
    assert (logs / "other.out.1").read_text() == "other before other-end\n"
    assert (logs / "other.out").read_text() == "other after1 other-end\nother after2 other-end\n"


def test_reopening_while_threads_write_loses_and_splits_no_line(tmp_path):
    """reopen_files() may interrupt a write (it runs in a signal handler): never a lost or torn line."""
    path = tmp_path / "busy.log"
    writers = [open_destination(f"w{n}", "stdout", str(path)) for n in range(4)]
    stop = time.monotonic() + 5

    def write(n: int) -> int:
        count = 0
        while count < 3000 and time.monotonic() < stop:
            writers[n].write(f"w{n} {count} " + "x" * 50 + "\n")
            count += 1
        return count

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        counts = pool.map(write, range(4))
        for generation in range(20):
            time.sleep(0.01)
            if path.exists():
                path.rename(tmp_path / f"busy.log.{generation}")
            reopen_files()
        written = list(counts)
    lines = [line for file in tmp_path.glob("busy.log*") for line in file.read_text().splitlines()]
    assert len(list(tmp_path.glob("busy.log.*"))) >= 2, "the files were rotated while written"
    assert sorted(lines) == sorted(f"w{n} {i} " + "x" * 50 for n in range(4) for i in range(written[n]))


def test_flasks_default_logger_writes_to_the_apps_stderr_through_wsgi_errors(tmp_path, monkeypatch):
    """Flask's default handler writes to ``environ['wsgi.errors']`` during a request."""
    import logging

    import flask
    from werkzeug.test import Client

    # As under a server: no handler on the root logger (pytest puts its own
    # there), so Flask gives its logger the default handler.
    monkeypatch.setattr(logging.root, "handlers", [])
    err = tmp_path / "app.err"
    config = parse({"apps": {"flasky": {"app": "unused:app", "mount": "/", "stderr": str(err)}}},
                   tmp_path / "ctxserve.toml")
    web = flask.Flask("flasky")

    @web.route("/")
    def index():
        web.logger.error("logged by flasky's handler")
        return "ok"

    app = App(config.apps[0], wsgi=web)
    assert app.load()
    assert Client(app).get("/").text == "ok"
    assert "logged by flasky's handler" in err.read_text()
