"""The admin listener: its routes only on its address, readiness, the status page, SIGHUP, access log.

Every server is a real ``ctxserve serve`` on 127.0.0.1 with ephemeral ports
for both the public and the admin address (read from gunicorn's
"Listening at" line: the admin address is bound last).
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from support import ROOT, Server, probe_app, wait_for
from ctxserve.workers import RequestScope
from ctxserve.config import ConfigError, parse
from ctxserve.admin import Front
from ctxserve.dispatch import Dispatcher
from ctxserve.server import application

pytestmark = pytest.mark.server

ADMIN = {"admin": "127.0.0.1:0"}
NOT_FOUND = "Not Found: no app is mounted at this path\n"


def admin_get(server: Server, path: str, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("timeout", 30)
    return server.session.get(server.admin_url + path, **kwargs)


def failing_app(tmp_path: Path, message: str = "no database", code: str = "") -> dict[str, Any]:
    """An app whose import fails: ``raise RuntimeError(message)``, or *code*."""
    (tmp_path / "broken").mkdir(exist_ok=True)
    (tmp_path / "broken" / "broken.py").write_text((code or f"raise RuntimeError({message!r})") + "\n")
    return {"app": "broken:application", "mount": "/broken", "path": [str(tmp_path / "broken")]}


def status_rows(server: Server) -> dict[str, dict[str, Any]]:
    answer = admin_get(server, "/status", headers={"Accept": "application/json"})
    assert answer.headers["Content-Type"] == "application/json"
    return {row["name"]: row for row in answer.json()["apps"]}


# -- in process: the choice is made once, when the apps are built ------------------------

def test_admin_off_serves_the_dispatcher_itself(tmp_path: Path) -> None:
    config = parse({"apps": {"a": probe_app("a", "/a")}}, tmp_path / "ctxserve.toml")
    app = application(config)
    assert type(app) is Dispatcher
    assert app.routes.fast["/a"] == ("a", app.apps[0].serve)  # router → app context: not metered


def test_admin_on_meters_each_app_once(tmp_path: Path) -> None:
    config = parse({"server": ADMIN, "apps": {"a": probe_app("a", "/a")}}, tmp_path / "ctxserve.toml")
    front = application(config)
    assert type(front) is Front and type(front.public) is Dispatcher
    name, hop = front.public.routes.fast["/a"]
    assert name == "a" and hop != front.apps[0].serve and [m.name for m in front.metrics.meters] == ["a"]


def test_admin_may_be_any_address_but_not_a_public_one(tmp_path: Path) -> None:
    for address in ("unix:/tmp/admin.sock", "[::1]:9100"):
        parse({"server": {"admin": address}, "apps": {"a": probe_app("a", "/a")}}, "x.toml")
    parse({"server": {"admin": "fd://4", "bind": "fd://3"}, "apps": {"a": probe_app("a", "/a")}}, "x.toml")
    # gunicorn listens on inherited descriptors only, or on addresses only.
    for admin, bind in (("fd://4", "127.0.0.1:8000"), ("127.0.0.1:9100", "fd://3")):
        with pytest.raises(ConfigError, match="server.admin: .*fd://N, or none of them"):
            parse({"server": {"admin": admin, "bind": [bind]}, "apps": {"a": probe_app("a", "/a")}}, "x.toml")
    for admin, bind in (("unix:/tmp/s.sock", "unix:/tmp/s.sock"), ("fd://3", "fd://3"),
                        ("127.0.0.1:9100", "127.0.0.1:9100")):
        with pytest.raises(ConfigError, match="server.admin: .*also in bind"):
            parse({"server": {"admin": admin, "bind": [bind]}, "apps": {"a": probe_app("a", "/a")}}, "x.toml")
    # An ephemeral port may appear in both: each listener gets its own port.
    parse({"server": {"admin": "127.0.0.1:0", "bind": "127.0.0.1:0"}, "apps": {"a": probe_app("a", "/a")}},
          "x.toml")


# -- route separation --------------------------------------------------------------------

def test_admin_routes_only_on_the_admin_address_and_app_routes_never_there(serve, make_config, engine) -> None:
    config = make_config({"a": probe_app("a", "/a"), "root": probe_app("root", "/")}, ADMIN)
    server = serve(config)
    assert len(server.urls) == 2 and server.url == server.urls[0]

    # The admin address answers its routes and nothing else, not even the root app.
    assert admin_get(server, "/healthz").text == "ok\n"
    assert admin_get(server, "/readyz").status_code == 200
    assert admin_get(server, "/metrics").status_code == 200
    assert admin_get(server, "/status").status_code == 200
    for path in ("/a/whoami", "/whoami", "/", "/healthz/x"):
        answer = admin_get(server, path)
        assert answer.status_code == 404, path
        assert answer.text.startswith("Not Found: the admin listener answers GET /healthz")
    answer = admin_get(server, "/apps/a/reload")  # the reload route takes POST only
    assert answer.status_code == 405 and answer.headers["Allow"] == "POST"
    answer = server.session.post(server.admin_url + "/healthz", timeout=30)
    assert answer.status_code == 405 and "GET" in answer.headers["Allow"]
    assert server.session.head(server.admin_url + "/healthz", timeout=30).status_code == 200

    # On the public address the admin paths are ordinary paths: here the root app's.
    assert server.get("/a/whoami").json()["id"] == "a"
    for path in ("/healthz", "/readyz", "/metrics", "/status"):
        answer = server.get(path)
        assert answer.status_code == 404 and answer.json() == {"error": f"no route {path}"}, path
    answer = server.session.post(server.url + "/apps/a/reload", timeout=30)
    assert answer.status_code == 404 and answer.json() == {"error": "no route /apps/a/reload"}

    # The listener is told by the socket's own address, not by the Host header.
    admin_host = server.admin_url.removeprefix("http://")
    answer = server.get("/healthz", headers={"Host": admin_host})
    assert answer.json() == {"error": "no route /healthz"}


def test_admin_paths_are_404_on_the_public_address_without_a_root_app(serve, make_config, engine) -> None:
    server = serve(make_config({"a": probe_app("a", "/a")}, ADMIN))
    for path in ("/healthz", "/readyz", "/metrics", "/status"):
        answer = server.get(path)
        assert (answer.status_code, answer.text) == (404, NOT_FOUND), path


# -- readiness -------------------------------------------------------------------------------

def test_readyz_names_the_apps_that_failed(serve, make_config, tmp_path: Path, engine) -> None:
    server = serve(make_config({"a": probe_app("a", "/a"), "broken": failing_app(tmp_path)}, ADMIN))
    assert admin_get(server, "/healthz").status_code == 200  # the worker serves
    answer = admin_get(server, "/readyz")
    assert answer.status_code == 503
    assert "1 of 2 apps failed" in answer.text
    assert "broken: failed: RuntimeError: no database" in answer.text
    assert "a:" not in answer.text.replace("apps failed", "")
    assert server.get("/broken/").status_code == 503 and server.get("/a/whoami").status_code == 200


# -- status page -------------------------------------------------------------------------------

def test_status_json_and_html(serve, make_config, tmp_path: Path, engine) -> None:
    apps = {"a": probe_app("a", "/a"), "b": probe_app("b", "/b", host=["b.example"]),
            "broken": failing_app(tmp_path, "<script>alert(1)</script> & more")}
    server = serve(make_config(apps, ADMIN))
    for _ in range(3):
        assert server.get("/a/whoami").status_code == 200
    assert server.get("/a/boom").status_code == 500

    by_name = wait_for(lambda: (rows := status_rows(server))["a"]["requests"] == 4 and rows)
    assert list(by_name) == ["a", "b", "broken"]
    a, b, broken = by_name["a"], by_name["b"], by_name["broken"]
    assert (a["route"], a["status"], a["requests"], a["errors"], a["in_flight"]) == ("/a", "loaded", 4, 1, 0)
    assert 0 < a["p50_seconds"] <= a["p99_seconds"] < 5
    assert b["route"] == "b.example/b" and b["requests"] == 0 and b["p50_seconds"] is None
    assert broken["status"].startswith("failed: RuntimeError: <script>") and not broken["loaded"]

    page = admin_get(server, "/status")
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    html = page.text
    assert html.count("<tr><td>") == 3
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html
    assert "http://" not in html and "https://" not in html  # no external assets
    row_a = html[html.index("<b>a</b>"):].partition("</tr>")[0]
    assert ">4<" in row_a and ">1<" in row_a and "loaded" in row_a


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_status_page_in_a_headless_browser(serve, make_config, tmp_path: Path) -> None:
    """Screenshot of /status in headless Chromium; CTXSERVE_UPDATE_SCREENSHOT=1 refreshes docs/status.png."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install -y chromium)")
    apps = {"blog": probe_app("blog", "/blog"), "shop": probe_app("shop", "/shop", host=["shop.example"]),
            "legacy": {**failing_app(tmp_path, code="import oldlib"), "mount": "/legacy"}}
    server = serve(make_config(apps, ADMIN))
    for i in range(40):
        server.get("/blog/whoami" if i % 8 else "/blog/boom")
    for i in range(12):
        server.get("/shop/whoami?sleep=0.01", headers={"Host": "shop.example"})
    assert wait_for(lambda: [row["requests"] for row in status_rows(server).values()] == [40, 12, 0])
    shot = tmp_path / "status.png"
    profile = tmp_path / "chromium-profile"
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1200,600",
         server.admin_url + "/status"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(tmp_path)})
    assert shot.exists(), f"no screenshot: {result.returncode}\n{result.stderr[-2000:]}"
    data = shot.read_bytes()
    assert _png_size(data) == (1200, 600)
    assert len(data) > 10_000, "the screenshot looks blank"
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}", "--dump-dom",
         server.admin_url + "/status"], capture_output=True, text=True, timeout=60,
        env={**os.environ, "HOME": str(tmp_path)}).stdout
    assert dom.count("<tr><td>") == 3 and "shop.example/shop" in dom
    if os.environ.get("CTXSERVE_UPDATE_SCREENSHOT") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, ROOT / "docs" / "status.png")


# -- SIGHUP ------------------------------------------------------------------------------------

def test_sighup_rereads_the_config_and_keeps_serving_on_a_bad_one(serve, make_config, engine) -> None:
    config = make_config({"a": probe_app("a", "/a")}, ADMIN)
    server = serve(config)
    assert server.get("/a/whoami").json()["id"] == "a"

    good = config.read_text()
    config.write_text(good.replace('admin = "127.0.0.1:0"', 'admin = "127.0.0.1:0"\nworkers = "many"'))
    server.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "config not reloaded" in server.stderr(), timeout=15), server.stderr()
    assert "server.workers: expected an integer from 1 to 256" in server.stderr()
    booted = {"gunicorn": "Booting worker", "granian": "Spawning worker"}[engine]
    assert wait_for(lambda: booted in server.stderr().partition("config not reloaded")[2], timeout=15)
    assert server.proc.poll() is None
    assert server.get("/a/whoami").json()["id"] == "a"
    assert admin_get(server, "/healthz").status_code == 200

    # A good file is taken: the new workers load the apps as it says.
    assert '"APP_ID" = "a"' in good
    config.write_text(good.replace('"APP_ID" = "a"', '"APP_ID" = "a2"'))
    server.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: server.get("/a/whoami").json()["id"] == "a2", timeout=20)
    assert admin_get(server, "/readyz").status_code == 200
    assert server.proc.poll() is None


# -- access log -----------------------------------------------------------------------------------

@pytest.mark.parametrize("admin", [False, True], ids=["admin-off", "admin-on"])
def test_access_log_lines_name_the_app(serve, make_config, tmp_path: Path, admin: bool, engine) -> None:
    log = tmp_path / "access.log"
    server_table = {"access_log": str(log), **(ADMIN if admin else {})}
    server = serve(make_config({"a": probe_app("a", "/a"), "b": probe_app("b", "/b")}, server_table))
    server.get("/a/whoami?tag=one")
    server.get("/b/boom?tag=two")
    server.get("/nowhere?tag=three")

    def lines() -> dict[str, str]:
        text = log.read_text() if log.exists() else ""
        return {tag: line for line in text.splitlines() for tag in ("one", "two", "three") if f"tag={tag}" in line}

    found = wait_for(lambda: len(lines()) == 3 and lines())
    assert found, log.read_text() if log.exists() else "no access log"
    assert '"GET /a/whoami?tag=one HTTP/1.1" 200' in found["one"] and found["one"].endswith(" app=a")
    assert '"GET /b/boom?tag=two HTTP/1.1" 500' in found["two"] and found["two"].endswith(" app=b")
    assert '"GET /nowhere?tag=three HTTP/1.1" 404' in found["three"] and found["three"].endswith(" app=-")


@pytest.mark.parametrize(
    ("address", "configured"),
    [("127.0.0.1:9100", ("127.0.0.1", 9100)), ("[0:0::1]:9100", ("0:0::1", 9100)),
     ("LocalHost:0", ("localhost", 0)), ("unix:/run/admin.sock", "/run/admin.sock")],
)
def test_a_worker_finds_the_admin_listener_by_its_configured_address(address, configured) -> None:
    """gunicorn's ``cfg_addr`` of each listener, read as the config parser reads the admin address."""

    class Listener:
        def __init__(self, cfg_addr: Any) -> None:
            self.cfg_addr = cfg_addr

        def getsockname(self) -> Any:
            return self.cfg_addr

    public, admin = Listener(("0.0.0.0", 8000)), Listener(configured)
    worker = RequestScope()
    worker.sockets = [public, admin]  # type: ignore[attr-defined]
    assert worker.serve_admin_on(address)
    assert {admin, configured} == worker.admin_listeners
    worker.sockets = [public]  # type: ignore[attr-defined]
    assert not worker.serve_admin_on(address) and not worker.admin_listeners
