"""Each app's decimal context, against a real gunicorn under load, and in-process.

Every request starts with a fresh copy of its app's configured context, so
``1/7`` has exactly the app's number of digits, and whatever a request does
to its context is gone for the next one.
"""

from __future__ import annotations

import decimal
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import ENGINES, Server, hammer, probe_app, serve_command, start_server, toml_text
from ctxserve.apps import App
from ctxserve.config import parse


def seventh(**context: object) -> str:
    """``str(Decimal(1) / Decimal(7))`` as computed under ``decimal.Context(**context)``."""
    return str(decimal.Context(**context).divide(decimal.Decimal(1), decimal.Decimal(7)))


EXPECTED = {  # app -> (prec, rounding, 1/7)
    "six": (6, "ROUND_HALF_EVEN", seventh(prec=6)),
    "fifty": (50, "ROUND_HALF_EVEN", seventh(prec=50)),
    "up": (6, "ROUND_UP", seventh(prec=6, rounding=decimal.ROUND_UP)),
    "default": (28, "ROUND_HALF_EVEN", seventh()),
}


@pytest.fixture(scope="module", params=ENGINES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("decimal")
    config = tmp / "ctxserve.toml"
    config.write_text(toml_text({"worker_class": "gthread", "threads": 8}, {
        "six": probe_app("six", "/six", decimal={"prec": 6}),
        "fifty": probe_app("fifty", "/fifty", decimal={"prec": 50}),
        "up": probe_app("up", "/up", decimal={"prec": 6, "rounding": "ROUND_UP"}),
        "default": probe_app("default", "/default"),
    }))
    srv = start_server(serve_command(config, engine=request.param), tmp)
    yield srv
    srv.stop()


def check_whoami(app: str, seen: dict) -> None:
    prec, rounding, digits = EXPECTED[app]
    assert (seen["id"], seen["prec"], seen["rounding"], seen["seventh"]) == (app, prec, rounding, digits)


def test_expected_values_differ_as_the_tests_need():
    assert EXPECTED["six"][2] == "0.142857" and EXPECTED["up"][2] == "0.142858"
    assert len(EXPECTED["fifty"][2]) == 52 and len(EXPECTED["default"][2]) == 30


@pytest.mark.server
def test_each_app_divides_with_its_own_precision_under_concurrent_load(server):
    def request(session, t: int, i: int) -> None:
        app = ("six", "fifty")[(t + i) % 2]
        check_whoami(app, session.get(f"{server.url}/{app}/whoami", timeout=30).json())

    assert hammer(request, threads=8, per_thread=200, timeout=120) == 1600


@pytest.mark.server
def test_a_precision_set_by_a_request_leaks_to_no_later_request(server):
    """Half the requests set prec=2, of both configured apps and of the unconfigured one."""
    apps = ("six", "fifty", "default")

    def request(session, t: int, i: int) -> None:
        app = apps[(t + i) % 3]
        if t % 2:
            r = session.get(f"{server.url}/{app}/setprec", params={"prec": "2"}, timeout=30)
            assert r.json() == {"seventh": "0.14"}
        else:
            check_whoami(app, session.get(f"{server.url}/{app}/whoami", timeout=30).json())

    assert hammer(request, threads=8, per_thread=60, timeout=120) == 480
    for app in apps:
        check_whoami(app, server.get(f"/{app}/whoami").json())


@pytest.mark.server
def test_the_configured_rounding_is_honoured(server):
    check_whoami("up", server.get("/up/whoami").json())
    check_whoami("six", server.get("/six/whoami").json())


@pytest.mark.server
def test_an_app_without_a_decimal_table_gets_pythons_default_context(server):
    check_whoami("default", server.get("/default/whoami").json())


@pytest.mark.server
def test_a_thread_the_app_starts_gets_the_apps_decimal_context(server):
    assert server.get("/six/thread").json()["prec"] == 6
    assert server.get("/fifty/thread").json()["prec"] == 50


# -- in-process ---------------------------------------------------------------------

def test_a_request_change_does_not_leak_when_the_apps_import_touched_decimal(tmp_path: Path):
    """Libraries often call decimal.getcontext() at import: that must not become shared."""
    (tmp_path / "touchy.py").write_text(textwrap.dedent("""
        import decimal
        AT_IMPORT = decimal.getcontext()

        def application(environ, start_response):
            start_response("200 OK", [])
            if environ["PATH_INFO"] == "/set":
                decimal.getcontext().prec = 2
            return [str(decimal.getcontext().prec).encode()]
    """))
    config = parse({"apps": {"touchy": {"app": "touchy:application", "mount": "/",
                                        "path": [str(tmp_path)], "stdout": "null"}}},
                   tmp_path / "ctxserve.toml")
    app = App(config.apps[0])
    try:
        assert app.load(), app.error

        def call(path: str) -> bytes:
            return b"".join(app({"PATH_INFO": path}, lambda *args: None))

        outside = decimal.getcontext().prec
        assert call("/set") == b"2"
        assert call("/") == b"28"
        assert decimal.getcontext().prec == outside
    finally:
        sys.modules.pop("touchy", None)  # the process-wide alias of the app's private module
