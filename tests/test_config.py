"""Tests for ctxserve.config: the ctxserve.toml contract."""

from __future__ import annotations

import dataclasses
import decimal
import os
import re
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gunicorn import config as gunicorn_config

from ctxserve.cli import main
from ctxserve.apps import load_callable
from ctxserve.config import (
    REQUIRED,
    SETTINGS,
    Address,
    AppConfig,
    AppSpec,
    Config,
    ConfigError,
    ServerConfig,
    granian_settings,
    gunicorn_settings,
    load,
    override_server,
    parse,
    parse_address,
    parse_app_spec,
    reference_markdown,
    serve_options,
    wrap_keys,
)

MINIMAL_APP = """
[apps.blog]
app = "blog.wsgi:application"
mount = "/blog"
"""


@pytest.fixture
def write_config(tmp_path: Path):
    """Write TOML text (dedented) to tmp_path/ctxserve.toml and return its path."""

    def write(text: str, name: str = "ctxserve.toml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load(path)
    return str(info.value)


# -- defaults and a good config ------------------------------------------------


def test_minimal_config_gets_documented_defaults(write_config):
    config = load(write_config(MINIMAL_APP))

    assert config.server == ServerConfig()
    assert config.server.bind == ("127.0.0.1:8000",)
    assert config.server.worker_class == "gthread"
    (app,) = config.apps
    assert app == AppConfig(
        name="blog",
        app="blog.wsgi:application",
        mount="/blog",
        host=(),
        path=(),
        environ={},
        inherit_environ=True,
        stdout="inherit",
        stderr="inherit",
        argv=("blog",),
        decimal={},
        isolate=(),
        max_concurrency=0,
        queue_timeout=0.0,
        globals="warn",  # not set: the [server] default
    )
    assert app.decimal_context() is None


def test_dataclass_fields_are_exactly_the_declared_keys():
    server_keys = [s.name for s in SETTINGS if s.section == "server"]
    app_keys = [s.name for s in SETTINGS if s.section == "apps.NAME"]
    assert [f.name for f in dataclasses.fields(ServerConfig)] == server_keys
    assert [f.name for f in dataclasses.fields(AppConfig)] == ["name", *app_keys]


def test_full_config_round_trip(write_config, tmp_path):
    (tmp_path / "apps" / "blog").mkdir(parents=True)
    (tmp_path / "logs").mkdir()
    path = write_config(
        """
        [server]
        bind = ["0.0.0.0:8080", "[::1]:8081", "unix:/run/ctx.sock", "fd://3"]
        workers = 4
        threads = 2
        worker_class = "sync"
        timeout = 0
        strict = true
        admin = "127.0.0.1:9100"
        access_log = "logs/access.log"

        [server.gunicorn]
        preload_app = true
        keepalive = 5

        [apps.blog]
        app = "blog.wsgi:create_app('prod', debug=False)"
        mount = "/blog/"
        host = ["Blog.Example.com", "*.example.org"]
        path = "apps/blog"
        environ = { BLOG_TITLE = "My blog" }
        inherit_environ = ["PATH", "HOME"]
        stdout = "logs/blog.out"
        stderr = "logging"
        argv = ["blog", "--fast"]
        decimal = { prec = 6, rounding = "ROUND_HALF_UP", traps = ["DivisionByZero"] }
        isolate = ["django"]
        max_concurrency = 10
        queue_timeout = 2.5

        [apps.root]
        app = "site:app"
        mount = "/"
        inherit_environ = false
        stdout = "null"
        """
    )

    config = load(path)

    assert config.path == path
    server = config.server
    assert server.bind == ("0.0.0.0:8080", "[::1]:8081", "unix:/run/ctx.sock", "fd://3")
    assert (server.workers, server.threads, server.worker_class, server.timeout) == (4, 2, "sync", 0)
    assert server.strict is True
    assert server.admin == "127.0.0.1:9100"
    assert server.access_log == str(tmp_path / "logs" / "access.log")
    assert server.gunicorn == {"preload_app": True, "keepalive": 5}
    blog, root = config.apps
    assert blog.app == "blog.wsgi:create_app('prod', debug=False)"
    assert blog.mount == "/blog"
    assert blog.host == ("blog.example.com", "*.example.org")
    assert blog.path == (str(tmp_path / "apps" / "blog"),)
    assert blog.environ == {"BLOG_TITLE": "My blog"}
    assert blog.inherit_environ == ("PATH", "HOME")
    assert blog.stdout == str(tmp_path / "logs" / "blog.out")
    assert blog.stderr == "logging"
    assert blog.argv == ("blog", "--fast")
    assert blog.decimal == {"prec": 6, "rounding": "ROUND_HALF_UP", "traps": ["DivisionByZero"]}
    assert blog.isolate == ("django",)
    assert (blog.max_concurrency, blog.queue_timeout) == (10, 2.5)
    assert (root.name, root.mount, root.inherit_environ, root.stdout) == ("root", "/", False, "null")


def test_decimal_context_is_new_each_time_and_configured(write_config):
    path = write_config(
        MINIMAL_APP + 'decimal = { prec = 6, rounding = "ROUND_HALF_UP", Emin = -10, traps = ["Inexact"] }\n'
    )
    (app,) = load(path).apps

    context = app.decimal_context()

    assert context is not app.decimal_context()
    assert context.prec == 6
    assert context.rounding == decimal.ROUND_HALF_UP
    assert context.Emin == -10
    assert context.traps[decimal.Inexact] and not context.traps[decimal.DivisionByZero]


def test_host_only_app_is_mounted_at_root(write_config):
    path = write_config('[apps.shop]\napp = "shop:app"\nhost = "shop.example.com"\n')
    (app,) = load(path).apps
    assert (app.mount, app.host) == ("/", ("shop.example.com",))


def test_same_mount_on_different_hosts_is_fine(write_config):
    path = write_config(
        '[apps.a]\napp = "a:app"\nhost = "a.example.com"\n[apps.b]\napp = "b:app"\nhost = "b.example.com"\n'
    )
    assert [app.name for app in load(path).apps] == ["a", "b"]


def test_apps_keep_file_order(write_config):
    path = write_config('[apps.z]\napp = "z:app"\nmount = "/z"\n[apps.a]\napp = "a:app"\nmount = "/a"\n')
    assert [app.name for app in load(path).apps] == ["z", "a"]


# -- paths -----------------------------------------------------------------------


def test_relative_paths_are_relative_to_the_config_file_not_the_cwd(write_config, tmp_path, monkeypatch):
    (tmp_path / "deploy" / "lib").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write_config(
        MINIMAL_APP + 'path = ["lib"]\nstdout = "blog.log"\n[server]\naccess_log = "access.log"\n',
        name="deploy/ctxserve.toml",
    )

    config = load(path)

    assert config.apps[0].path == (str(tmp_path / "deploy" / "lib"),)
    assert config.apps[0].stdout == str(tmp_path / "deploy" / "blog.log")
    assert config.server.access_log == str(tmp_path / "deploy" / "access.log")


def test_messages_name_the_file_as_the_user_gave_it(write_config, tmp_path, monkeypatch):
    write_config(MINIMAL_APP + "workers = 2\n", name="deploy/ctxserve.toml")
    monkeypatch.chdir(tmp_path)

    with pytest.raises(ConfigError) as info:
        load("deploy/ctxserve.toml")

    assert str(info.value).startswith("deploy/ctxserve.toml: apps.blog.workers: unknown key")


def test_config_path_is_absolute(write_config, tmp_path, monkeypatch):
    write_config(MINIMAL_APP)
    monkeypatch.chdir(tmp_path)
    assert load("ctxserve.toml").path == tmp_path / "ctxserve.toml"


# -- bad configs -------------------------------------------------------------------

BAD_CONFIGS = [
    # (toml text, key path that the message must name)
    (MINIMAL_APP + 'decimal = { prec = "six" }', "apps.blog.decimal.prec"),
    (MINIMAL_APP + "decimal = { prec = 0 }", "apps.blog.decimal.prec"),
    (MINIMAL_APP + 'decimal = { rounding = "HALF_UP" }', "apps.blog.decimal.rounding"),
    (MINIMAL_APP + "decimal = { Emin = 5 }", "apps.blog.decimal.Emin"),
    (MINIMAL_APP + "decimal = { clamp = true }", "apps.blog.decimal.clamp"),
    (MINIMAL_APP + 'decimal = { traps = ["DivByZero"] }', "apps.blog.decimal.traps[0]"),
    (MINIMAL_APP + "decimal = { precision = 6 }", "apps.blog.decimal.precision"),
    (MINIMAL_APP + "decimal = { prec = 1000000000000000000000 }", "apps.blog.decimal.prec"),
    (MINIMAL_APP + 'moutn = "/x"', "apps.blog.moutn"),
    ('[apps.blog]\nmount = "/blog"', "apps.blog.app"),
    ('[apps.blog]\napp = "blog"\nmount = "/blog"', "apps.blog.app"),
    ('[apps.blog]\napp = "blog-x:app"\nmount = "/blog"', "apps.blog.app"),
    ('[apps.blog]\napp = "blog:make(open(\'x\'))"\nmount = "/blog"', "apps.blog.app"),
    ('[apps.blog]\napp = "blog:make(*args)"\nmount = "/blog"', "apps.blog.app"),
    ('[apps.blog]\napp = "blog:app"', "apps.blog"),
    ('[apps.blog]\napp = "blog:app"\nmount = "blog"', "apps.blog.mount"),
    ('[apps.blog]\napp = "blog:app"\nmount = "/a/../b"', "apps.blog.mount"),
    ('[apps.blog]\napp = "blog:app"\nhost = "blog.example.com:8000"', "apps.blog.host"),
    ('[apps.blog]\napp = "blog:app"\nhost = ["ok.example.com", "bad host"]', "apps.blog.host[1]"),
    ('[apps."my blog"]\napp = "blog:app"\nmount = "/blog"', 'apps."my blog"'),
    (MINIMAL_APP + 'path = "no/such/dir"', "apps.blog.path"),
    (MINIMAL_APP + 'path = ["."]\npath2 = 1', "apps.blog.path2"),
    (MINIMAL_APP + "environ = { PORT = 8000 }", "apps.blog.environ.PORT"),
    (MINIMAL_APP + 'environ = { "A=B" = "x" }', 'apps.blog.environ."A=B"'),
    (MINIMAL_APP + 'inherit_environ = "yes"', "apps.blog.inherit_environ"),
    (MINIMAL_APP + 'stdout = "no/such/dir/out.log"', "apps.blog.stdout"),
    (MINIMAL_APP + "stderr = 1", "apps.blog.stderr"),
    (MINIMAL_APP + 'argv = "blog"', "apps.blog.argv"),
    (MINIMAL_APP + "argv = [1]", "apps.blog.argv[0]"),
    (MINIMAL_APP + 'isolate = ["django.db"]', "apps.blog.isolate[0]"),
    (MINIMAL_APP + "max_concurrency = -1", "apps.blog.max_concurrency"),
    (MINIMAL_APP + "max_concurrency = true", "apps.blog.max_concurrency"),
    (MINIMAL_APP + "queue_timeout = -0.5", "apps.blog.queue_timeout"),
    (MINIMAL_APP + "queue_timeout = nan", "apps.blog.queue_timeout"),
    (MINIMAL_APP + "[server]\nworkers = 0", "server.workers"),
    (MINIMAL_APP + "[server]\nworkers = true", "server.workers"),
    (MINIMAL_APP + '[server]\nworkers = "4"', "server.workers"),
    (MINIMAL_APP + "[server]\nthreads = 0", "server.threads"),
    (MINIMAL_APP + "[server]\ntimeout = -1", "server.timeout"),
    (MINIMAL_APP + '[server]\nworker_class = "eventlet"', "server.worker_class"),
    (MINIMAL_APP + '[server]\nbind = "localhost"', "server.bind"),
    (MINIMAL_APP + '[server]\nbind = ["127.0.0.1:80", "127.0.0.1:70000"]', "server.bind[1]"),
    (MINIMAL_APP + "[server]\nbind = []", "server.bind"),
    (MINIMAL_APP + "[server]\nstrict = 1", "server.strict"),
    (MINIMAL_APP + '[server]\nadmin = "nope"', "server.admin"),
    (MINIMAL_APP + '[server]\nadmin = "127.0.0.1:8000"', "server.admin"),
    (MINIMAL_APP + '[server]\naccess_log = "no/such/dir/a.log"', "server.access_log"),
    (MINIMAL_APP + "[server]\nworkerz = 2", "server.workerz"),
    (MINIMAL_APP + "[server.gunicorn]\npreload_ap = true", "server.gunicorn.preload_ap"),
    (MINIMAL_APP + "[server.gunicorn]\nworkers = 3", "server.gunicorn.workers"),
    (MINIMAL_APP + '[server.gunicorn]\nbacklog = "lots"', "server.gunicorn.backlog"),
    (MINIMAL_APP + "[server.gunicorn]\nbacklog = true", "server.gunicorn.backlog"),
    (MINIMAL_APP + "[server.gunicorn]\nkeepalive = -1", "server.gunicorn.keepalive"),
    (MINIMAL_APP + "[srever]\nworkers = 2", "srever"),
    ("[server]\nworkers = 2", "apps"),
    ("apps = {}", "apps"),
    ('apps = { blog = "blog:app" }', "apps.blog"),
    (MINIMAL_APP + '[apps.other]\napp = "o:app"\nmount = "/blog/"', "apps.other.mount"),
]


@pytest.mark.parametrize(("text", "key_path"), BAD_CONFIGS, ids=[case[1] for case in BAD_CONFIGS])
def test_bad_config_is_refused_naming_file_and_key_path(write_config, text, key_path):
    path = write_config(text)
    assert error_of(path).startswith(f"{path}: {key_path}: ")


def test_message_says_what_was_expected_and_what_was_got(write_config):
    path = write_config(MINIMAL_APP + 'decimal = { prec = "six" }')
    assert error_of(path) == f'{path}: apps.blog.decimal.prec: expected an integer >= 1, got "six"'


def test_unknown_key_suggests_the_closest_known_key(write_config):
    path = write_config(MINIMAL_APP + 'moutn = "/x"')
    assert error_of(path) == f'{path}: apps.blog.moutn: unknown key; did you mean "mount"?'


def test_unknown_key_without_close_match_lists_known_keys(write_config):
    path = write_config(MINIMAL_APP + "[server]\nzzz = 1")
    assert "unknown key; expected one of: bind, workers," in error_of(path)


def test_unknown_decimal_key_suggests_case_correct_name(write_config):
    path = write_config(MINIMAL_APP + "decimal = { emax = 5 }")
    assert error_of(path).endswith('apps.blog.decimal.emax: unknown key; did you mean "Emax"?')


def test_gunicorn_setting_in_server_table_points_to_server_gunicorn(write_config):
    path = write_config(MINIMAL_APP + "[server]\npreload_app = true")
    assert "gunicorn settings go in [server.gunicorn]" in error_of(path)


def test_gunicorn_key_owned_by_ctxserve_points_to_server_key(write_config):
    path = write_config(MINIMAL_APP + '[server.gunicorn]\naccesslog = "-"')
    assert error_of(path) == f"{path}: server.gunicorn.accesslog: set by ctxserve; use access_log = ... in [server] instead"


def test_unknown_gunicorn_setting_suggests_one(write_config):
    path = write_config(MINIMAL_APP + "[server.gunicorn]\npreload_ap = true")
    assert error_of(path).endswith('not a gunicorn setting; did you mean "preload_app"?')


def test_number_in_environ_says_to_quote_it(write_config):
    path = write_config(MINIMAL_APP + "environ = { PORT = 8000 }")
    assert error_of(path).endswith('expected a string, got 8000; quote it: PORT = "8000"')


def test_host_with_port_says_ports_are_not_allowed(write_config):
    path = write_config('[apps.blog]\napp = "b:app"\nhost = "blog.example.com:8000"')
    assert "without a port" in error_of(path)


def test_duplicate_mount_names_both_apps(write_config):
    path = write_config(MINIMAL_APP + '[apps.shop]\napp = "shop:app"\nmount = "/blog"\n')
    assert error_of(path) == (
        f'{path}: apps.shop.mount: apps "blog" and "shop" both use mount "/blog"; '
        "give each app its own mount or host"
    )


def test_duplicate_host_and_mount_names_both_apps(write_config):
    path = write_config(
        '[apps.a]\napp = "a:app"\nhost = "x.example.com"\n'
        '[apps.b]\napp = "b:app"\nhost = ["y.example.com", "X.example.com"]\nmount = "/"\n'
    )
    message = error_of(path)
    assert message.startswith(f"{path}: apps.b.host: ")
    assert '"a" and "b"' in message and '"x.example.com"' in message


def test_app_without_mount_or_host_is_refused(write_config):
    path = write_config('[apps.blog]\napp = "blog:app"\n')
    assert error_of(path) == f'{path}: apps.blog: needs mount, host, or both; e.g. mount = "/blog"'


def test_missing_path_directory_shows_where_it_looked(write_config, tmp_path):
    path = write_config(MINIMAL_APP + 'path = "../nowhere"')
    message = error_of(path)
    assert str(tmp_path.parent / "nowhere") in message
    assert "relative to the directory of" in message


@pytest.mark.parametrize("missing", ["gevent", "packaging.version"])
def test_gevent_worker_without_its_packages_says_how_to_install(write_config, monkeypatch, missing):
    # gunicorn's gevent worker imports gevent and packaging; a None entry makes
    # an import fail, and the worker module is imported afresh.
    monkeypatch.delitem(sys.modules, "gunicorn.workers.ggevent", raising=False)
    monkeypatch.setitem(sys.modules, missing, None)
    path = write_config(MINIMAL_APP + '[server]\nworker_class = "gevent"')
    message = error_of(path)
    assert "pip install 'ctxserve[gevent]'" in message and missing in message


def test_worker_class_typo_suggests_the_right_one(write_config):
    path = write_config(MINIMAL_APP + '[server]\nworker_class = "gthreads"')
    assert error_of(path).endswith('did you mean "gthread"?')


def test_app_table_outside_apps_is_pointed_at(write_config):
    path = write_config('[blog]\napp = "blog:app"\nmount = "/blog"\n')
    assert error_of(path) == f"{path}: blog: unknown key; app tables are written [apps.blog]"


# -- file-level errors ---------------------------------------------------------------


def test_toml_syntax_error_gives_line_and_column(write_config):
    path = write_config(MINIMAL_APP + "workers = \n")
    message = error_of(path)
    assert message.startswith(f"{path}: invalid TOML: ")
    assert "line 5" in message and "column" in message


def test_missing_file_is_one_clear_message(tmp_path):
    message = error_of(tmp_path / "nope.toml")
    assert message.startswith(f"{tmp_path / 'nope.toml'}: no such file")


def test_directory_instead_of_file_is_one_clear_message(tmp_path):
    assert "is a directory" in error_of(tmp_path)


def test_non_utf8_file_is_one_clear_message(tmp_path):
    path = tmp_path / "ctxserve.toml"
    path.write_bytes(b'[apps.blog]\napp = "\xff"\n')
    assert "not valid UTF-8" in error_of(path)


# -- parse ------------------------------------------------------------------------


def test_parse_resolves_relative_paths_against_the_given_path(tmp_path):
    (tmp_path / "lib").mkdir()
    data = {"apps": {"blog": {"app": "blog:app", "mount": "/", "path": "lib"}}}
    config = parse(data, tmp_path / "ctxserve.toml")
    assert config.apps[0].path == (str(tmp_path / "lib"),)


def test_parse_names_the_path_in_messages():
    with pytest.raises(ConfigError, match=r"^virtual\.toml: apps: "):
        parse({}, "virtual.toml")


# -- override_server ----------------------------------------------------------------


@pytest.fixture
def config(write_config) -> Config:
    return load(write_config(MINIMAL_APP))


def test_override_server_returns_new_config_with_changes(config):
    changed = override_server(config, bind=["0.0.0.0:80", "unix:/tmp/s"], workers=3, threads=1, worker_class="sync")
    assert changed.server.bind == ("0.0.0.0:80", "unix:/tmp/s")
    assert (changed.server.workers, changed.server.threads, changed.server.worker_class) == (3, 1, "sync")
    assert changed.apps == config.apps
    assert config.server == ServerConfig()


def test_override_server_ignores_options_not_given(config):
    assert override_server(config, workers=None, bind=None) == config


def test_override_server_accepts_integers_as_text(config):
    assert override_server(config, workers="4").server.workers == 4


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"workers": 0}, "--workers: expected an integer from 1 to 256, got 0"),
        ({"workers": "many"}, '--workers: expected an integer from 1 to 256, got "many"'),
        ({"threads": True}, "--threads: expected an integer from 1 to 1024, got true"),
        ({"worker_class": "async"}, '--worker-class: expected one of "sync", "gthread", "gevent", got "async"'),
        ({"bind": "nowhere"}, "--bind: expected an address"),
    ],
)
def test_override_server_validates_with_the_same_declarations(config, changes, message):
    with pytest.raises(ConfigError) as info:
        override_server(config, **changes)
    assert str(info.value).startswith(message)


def test_override_server_refuses_unknown_names(config):
    with pytest.raises(TypeError):
        override_server(config, wokers=2)


# -- what derives from SETTINGS: the dataclasses, the serve options, gunicorn's settings --


def test_dataclass_defaults_are_the_checked_declared_defaults():
    for cls, section in ((ServerConfig, "server"), (AppConfig, "apps.NAME")):
        for f in dataclasses.fields(cls):
            setting = {s.name: s for s in SETTINGS if s.section == section}.get(f.name)
            if setting is None or setting.default is REQUIRED:
                assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                continue
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            expected = None if setting.default is None else setting.check(setting.default, _at(f.name))
            assert default == expected, f.name


def _at(key: str):
    from ctxserve.config import _At  # the checks' own location type

    return _At("", key, Path.cwd())


def test_serve_takes_one_option_per_declared_flag(capsys):
    options = serve_options()
    assert {s.name for s in options} >= {"bind", "workers", "threads", "worker_class"}
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    usage = capsys.readouterr().out
    for setting in options:
        assert f"{setting.option} {setting.flag}" in usage


@pytest.mark.parametrize("setting", serve_options(), ids=lambda s: s.name)
def test_every_serve_option_is_checked_by_its_declaration(write_config, capsys, setting):
    path = write_config(MINIMAL_APP)
    assert main(["serve", str(path), setting.option, "\0"]) == 2
    assert capsys.readouterr().err.startswith(f"ctxserve: {setting.option}: expected ")


def test_every_gunicorn_key_reaches_gunicorn_and_gunicorn_accepts_it():
    server = ServerConfig(admin="127.0.0.1:9100", access_log="-", gunicorn={"keepalive": 7})
    settings = gunicorn_settings(server)
    owned = [s.gunicorn for s in SETTINGS if s.section == "server" and s.gunicorn]
    assert set(owned) <= set(settings)
    assert settings["bind"] == ["127.0.0.1:8000", "127.0.0.1:9100"]
    assert settings["keepalive"] == 7
    assert "app=%({ctxserve.app}e)s" in settings["access_log_format"]
    gunicorn = gunicorn_config.Config()
    for name, value in settings.items():
        gunicorn.set(name, value)
    assert gunicorn.worker_class_str == "ctxserve.workers.ThreadWorker"


def test_every_granian_key_reaches_granian_and_granian_accepts_it():
    granian_server = pytest.importorskip("granian.server")
    server = ServerConfig(engine="granian", workers=2, threads=3, timeout=0, granian={"backlog": 256})
    settings = granian_settings(server)
    assert settings == {"workers": 2, "blocking_threads": 3, "workers_kill_timeout": None, "backlog": 256}
    owned = {s.granian for s in SETTINGS if s.section == "server" and s.granian}
    assert owned <= set(settings)
    assert granian_settings(dataclasses.replace(server, granian={"workers_kill_timeout": 9}))[
        "workers_kill_timeout"] == 9, "[server.granian] comes last and wins"
    granian = granian_server.Server("ctxserve", **settings)
    assert (granian.workers, granian.blocking_threads, granian.backlog) == (2, 3, 256)


def test_sync_means_one_thread_and_no_access_log_leaves_gunicorns_default():
    settings = gunicorn_settings(ServerConfig(worker_class="sync", threads=8))
    assert settings["threads"] == 1
    assert "accesslog" not in settings and "access_log_format" not in settings


# -- the one app-spec parser and the one address parser -------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("blog.wsgi:application", AppSpec("blog.wsgi", ("application",))),
        ("blog:app.wsgi_app", AppSpec("blog", ("app", "wsgi_app"))),
        ("blog:create_app()", AppSpec("blog", ("create_app",), ())),
        ("blog:create_app('prod', debug=False, n=[1, 2])",
         AppSpec("blog", ("create_app",), ("prod",), {"debug": False, "n": [1, 2]})),
        ("blog:factories.make(1)", AppSpec("blog", ("factories", "make"), (1,))),
    ],
)
def test_parse_app_spec(text, expected):
    assert parse_app_spec(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("blog", "module:attribute"),
        ("blog-x:app", "module:attribute"),
        ("blog:", "module:attribute"),
        ("blog: app", "module:attribute"),
        ("blog:class", "module:attribute"),
        ("blog:make(open('x'))", "factory arguments that are Python literals"),
        ("blog:make(*args)", "factory arguments that are Python literals"),
        ("blog:make(**kw)", "factory arguments that are Python literals"),
        ("blog:make(1)(2)", "factory arguments that are Python literals"),
        ("blog:make(1", "factory arguments that are Python literals"),
    ],
)
def test_parse_app_spec_refuses(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_app_spec(text)


def test_the_loader_reads_the_spec_with_the_same_parser(tmp_path, monkeypatch):
    (tmp_path / "specmod.py").write_text("def make(tag, *, n=0):\n    return lambda e, s: [tag * n]\n"
                                         "class inner:\n    app = staticmethod(lambda e, s: [b'in'])\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_callable("specmod:make(b'x', n=2)")(None, None) == [b"xx"]
    assert load_callable("specmod:inner.app")(None, None) == [b"in"]
    with pytest.raises(ValueError, match="factory arguments"):
        load_callable("specmod:make(__import__('os'))")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8000", Address("127.0.0.1:8000", host="127.0.0.1", port=8000)),
        ("Example.COM:80", Address("Example.COM:80", host="example.com", port=80)),
        ("[::1]:9100", Address("[::1]:9100", host="::1", port=9100)),
        ("0.0.0.0:0", Address("0.0.0.0:0", host="0.0.0.0", port=0)),
        ("unix:/run/ctx.sock", Address("unix:/run/ctx.sock", path="/run/ctx.sock")),
        ("unix:///run/ctx.sock", Address("unix:///run/ctx.sock", path="/run/ctx.sock")),
        ("fd://3", Address("fd://3", fd=3)),
    ],
)
def test_parse_address(text, expected):
    address = parse_address(text)
    assert address == expected
    assert address.is_tcp == (expected.path == "" and expected.fd is None)


def test_an_address_netloc_is_written_as_a_url_writes_it():
    assert parse_address("[::1]:9100").netloc == "[::1]:9100"
    assert parse_address("localhost:9100").netloc == "localhost:9100"


@pytest.mark.parametrize(
    "text", ["localhost", "[::1]", "::1:80", "host:port", ":80", "unix:", "fd://x", "fd://-1",
             "a b:80", "127.0.0.1:80\0", ""])
def test_parse_address_refuses(text):
    with pytest.raises(ValueError, match="an address"):
        parse_address(text)


def test_parse_address_refuses_a_port_out_of_range():
    with pytest.raises(ValueError, match="a port from 0 to 65535"):
        parse_address("127.0.0.1:70000")


@pytest.mark.parametrize("admin", ["127.0.0.1:8000", "[::1]:8081", "LOCALHOST:8082"])
def test_the_admin_address_may_not_be_a_bind_address_however_written(write_config, admin):
    path = write_config(MINIMAL_APP + f'[server]\nbind = ["127.0.0.1:8000", "[0:0::1]:8081", "localhost:8082"]\n'
                                      f'admin = "{admin}"\n')
    assert "is also in bind; the admin listener needs its own address" in error_of(path)


# -- reference ---------------------------------------------------------------------

DOCUMENTED_KEYS = {
    "[server]": "bind workers threads worker_class timeout strict admin access_log gunicorn",
    "[apps.NAME]": "app mount host path environ inherit_environ stdout stderr argv decimal isolate "
    "max_concurrency queue_timeout",
    "[apps.NAME.decimal]": "prec rounding Emin Emax capitals clamp traps flags",
}


def test_reference_markdown_has_a_table_row_for_every_key():
    markdown = reference_markdown()
    for section, keys in DOCUMENTED_KEYS.items():
        body = markdown.split(f"## `{section}`", 1)[1].split("\n## ", 1)[0]
        assert "| key | default | meaning |" in body
        for key in keys.split():
            assert f"| `{key}` |" in body, (section, key)


def test_reference_markdown_shows_defaults():
    markdown = reference_markdown()
    assert '| `bind` | `"127.0.0.1:8000"` |' in markdown
    assert "| `app` | required |" in markdown


# -- property: parse never fails with anything but ConfigError ---------------------------

KEYS = st.sampled_from(
    [s.name for s in SETTINGS] + ["server", "apps", "gunicorn", "preload_app", "keepalive", "proc_name", "blog"]
) | st.text(max_size=8)
SCALARS = (
    st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["/", "/blog", "a:b", "a.b:c(1, x=2)", "127.0.0.1:80", "inherit", ".", "ROUND_UP", "Inexact"])
    | st.datetimes()
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=12,
)
APP_NAMES = st.sampled_from(["blog", "shop"]) | st.text(max_size=6)
RANDOM_DOCUMENTS = st.fixed_dictionaries(
    {},
    optional={
        "server": st.dictionaries(KEYS, VALUES, max_size=4) | VALUES,
        "apps": st.dictionaries(APP_NAMES, st.dictionaries(KEYS, VALUES, max_size=6) | VALUES, max_size=3) | VALUES,
    },
)


def _changes_to(section: str) -> st.SearchStrategy[dict]:
    """A few of one section's keys set to random values."""
    names = st.sampled_from([s.name for s in SETTINGS if s.section == section])
    return st.dictionaries(names, VALUES, max_size=2)


# Mostly-valid documents with a few random values, to reach every key's check.
NEAR_VALID_DOCUMENTS = st.builds(
    lambda server, apps: {"server": server, "apps": apps},
    st.just({}) | _changes_to("server"),
    st.dictionaries(
        st.sampled_from(["blog", "shop", "my.app-2"]),
        st.builds(lambda changes: {"app": "a:b", "mount": "/", **changes}, _changes_to("apps.NAME")),
        min_size=1,
        max_size=3,
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(RANDOM_DOCUMENTS | NEAR_VALID_DOCUMENTS)
def test_parse_returns_a_config_or_raises_config_error(document):
    try:
        result = parse(document, os.path.join(os.sep, "nonexistent", "ctxserve.toml"))
    except ConfigError as err:
        assert str(err).startswith(os.path.join(os.sep, "nonexistent", "ctxserve.toml") + ": ")
    else:
        assert isinstance(result, Config)


# -- ctxserve.wrap() takes the keys declared wrap=True --------------------------------


def test_wrap_takes_the_declared_keys_with_the_same_checks():
    import ctxserve

    def legacy(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [os.environ.get("LEGACY_TITLE", "?").encode(), str(decimal.getcontext().prec).encode()]

    wrapped = ctxserve.wrap(legacy, "legacy", environ={"LEGACY_TITLE": "old"}, stdout="null",
                            decimal={"prec": 6})
    assert b"".join(wrapped({"PATH_INFO": "/"}, lambda *a: None)) == b"old6"
    assert "LEGACY_TITLE" not in os.environ
    with pytest.raises(TypeError, match=re.escape(str(sorted(wrap_keys())))):
        ctxserve.wrap(legacy, "legacy", mount="/x")
    with pytest.raises(ConfigError, match=r"^ctxserve\.wrap\(\): apps\.legacy\.decimal\.prec: expected an integer"):
        ctxserve.wrap(legacy, "legacy", decimal={"prec": "six"})


# -- engines: settings that only one engine has are refused under the other -------------


def test_engine_defaults_to_gunicorn_and_granian_settings_are_kept(write_config):
    assert load(write_config(MINIMAL_APP)).server.engine == "gunicorn"
    path = write_config(MINIMAL_APP + '[server]\nengine = "granian"\n[server.granian]\nbackpressure = 64\n'
                                      'http = "1"\n')
    server = load(path).server
    assert (server.engine, dict(server.granian)) == ("granian", {"backpressure": 64, "http": "1"})


@pytest.mark.parametrize(("server", "key_path", "says"), [
    ('engine = "uwsgi"', "server.engine", 'expected one of "gunicorn", "granian"'),
    ('engine = "granian"\nworker_class = "gevent"', "server.worker_class", "is a gunicorn worker"),
    ('engine = "granian"\n[server.gunicorn]\npreload_app = true', "server.gunicorn",
     "gunicorn settings do not apply"),
    ('engine = "granian"\nbind = ["127.0.0.1:1", "127.0.0.1:2"]', "server.bind", "listens on one address"),
    ('engine = "granian"\nbind = "fd://3"', "server.bind", "cannot serve an inherited fd://"),
    ('[server.granian]\nbackpressure = 8', "server.granian", 'applies to engine = "granian" only'),
    ('engine = "granian"\n[server.granian]\nbackpresure = 8', "server.granian.backpresure",
     'did you mean "backpressure"?'),
    ('engine = "granian"\n[server.granian]\nworkers_lifetime = 10', "server.granian.workers_lifetime",
     "expected an integer >= 60"),
])
def test_engine_specific_settings_are_refused_in_one_line(write_config, server, key_path, says):
    path = write_config(MINIMAL_APP + "[server]\n" + server)
    message = error_of(path)
    assert message.startswith(f"{path}: {key_path}: ") and says in message and "\n" not in message


def test_engine_on_the_command_line_is_checked_against_the_file(write_config):
    config = load(write_config(MINIMAL_APP + '[server]\nworker_class = "sync"'))
    with pytest.raises(ConfigError, match="is a gunicorn worker"):
        override_server(config, engine="granian")
    assert override_server(config, engine="gunicorn").server.engine == "gunicorn"
