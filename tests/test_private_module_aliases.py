"""Outside every app, the Alias of an app-private module behaves like a module object
for code that scans sys.modules: ``getattr(m, "__file__", None)`` and ``hasattr``."""

from __future__ import annotations

import sys
import textwrap
import time

import pytest

from support import probe_app, wait_for
from ctxserve.apps import App
from ctxserve.config import parse
from ctxserve.namespaces import Alias


def test_scanning_sys_modules_outside_apps_passes_over_private_module_aliases(tmp_path):
    (tmp_path / "only_mine.py").write_text(textwrap.dedent("""
        def application(environ, start_response):
            start_response("200 OK", [])
            return [b"ok"]
    """))
    config = parse({"apps": {"mine": {"app": "only_mine:application", "mount": "/",
                                      "path": [str(tmp_path)], "stdout": "null"}}},
                   tmp_path / "ctxserve.toml")
    app = App(config.apps[0])
    assert app.load(), app.error
    try:
        alias = sys.modules["only_mine"]
        assert type(alias) is Alias
        assert getattr(alias, "__file__", None) is None
        assert not hasattr(alias, "application")
        # What gunicorn's reloader does on every tick.
        files = [m.__file__ for m in tuple(sys.modules.values()) if getattr(m, "__file__", None)]
        assert str(tmp_path / "only_mine.py") not in files
    finally:
        sys.modules.pop("only_mine", None)


@pytest.mark.server
def test_gunicorn_reloader_survives_private_modules(make_config, serve):
    server = serve(make_config({"a": probe_app("a", "/a"), "b": probe_app("b", "/b")},
                               {"gunicorn": {"reload": True}}))
    assert server.get("/a/whoami").json()["id"] == "a"
    assert wait_for(lambda: "Reloader is on" in server.stderr())
    time.sleep(0.3)  # the reloader thread scans sys.modules as soon as it starts
    server.stop()
    assert "Traceback" not in server.stderr()
