"""Private module namespaces (``ctxserve/namespaces.py``), in-process.

Two fixture apps, ``alpha`` and ``beta`` (tests/apps/ns/), have modules and
packages of the same names — ``app``, ``config``, ``settings``, ``models``,
``utils/``, ``pkg/sub/mod`` — whose ``OWNER`` names the app they belong
to. Both are loaded from one config (``ctxserve.from_config``), then
called through ``werkzeug.test.Client`` or run with ``app.context.run``.
``ways.py`` (the same file in both apps) holds one function per way the
app's own code imports or looks a module up.

The real-gunicorn tests are in ``test_namespaces_server.py``.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import importlib.machinery
import importlib.util
import inspect
import json
import logging
import pickle
import shutil
import sys
import threading
import traceback
import typing
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import werkzeug
from werkzeug.test import Client

import ctxserve
from support import TEST_APPS
from ctxserve.apps import App
from ctxserve.namespaces import Alias, real_modules

NS = TEST_APPS / "ns"
SITEPKGS = NS / "sitepkgs"


# -- helpers -----------------------------------------------------------------------

def fixture_app(directory: str, name: str | None = None, **extra: Any) -> dict[str, Any]:
    """The table of a fixture app in tests/apps/ns/<directory>, mounted at /<name>."""
    return {"app": "app:application", "mount": f"/{name or directory}",
            "path": [str(NS / directory)], **extra}


class Loaded:
    """The apps of one config, loaded: ``loaded["alpha"]`` is an App, ``loaded.get(url)`` a response."""

    def __init__(self, config: Path) -> None:
        self.dispatcher = ctxserve.from_config(config)
        self.apps = {app.name: app for app in self.dispatcher.apps}
        self.client = Client(self.dispatcher)

    def __getitem__(self, name: str) -> App:
        return self.apps[name]

    def get(self, url: str) -> Any:
        return self.client.get(url)


def private(app: App, name: str) -> Any:
    """The app's own private module *name* (``None`` if it has none)."""
    return app.binding.modules.modules.get(name)


def call_in(app: App, function: str, *args: Any) -> Any:
    """Run ``ways.<function>(*args)`` — the app's own code — inside the app's context."""
    ways = app.context.run(importlib.import_module, "ways")
    return app.context.run(getattr(ways, function), *args)


def in_app(app: App, fn: Callable[..., Any], *args: Any) -> Any:
    """Run *fn* (code that is not the app's: like a shared library) in the app's context."""
    return app.context.run(fn, *args)


@pytest.fixture(autouse=True)
def forget_fixture_modules(tmp_path: Path) -> Iterator[None]:
    """After each test, drop from the real sys.modules what the test's apps left there.

    Each test loads new apps (new private modules); this keeps the shared
    ``nsregistry`` and the aliases of one test from being seen by the next.
    """
    before = set(real_modules)
    yield
    roots = (str(NS), str(tmp_path))
    for name in set(real_modules) - before:
        module = real_modules.get(name)
        if type(module) is Alias or str(getattr(module, "__file__", None) or "").startswith(roots):
            del real_modules[name]


@pytest.fixture
def load(make_config: Callable[..., Path]) -> Callable[..., Loaded]:
    """``load(alpha=table, beta=table, ...)``: write a config with these apps and load it."""
    return lambda **apps: Loaded(make_config(apps))


@pytest.fixture
def two_apps(load: Callable[..., Loaded]) -> Loaded:
    """alpha at /alpha and beta at /beta: colliding module names, nothing isolated."""
    return load(alpha=fixture_app("alpha"), beta=fixture_app("beta"))


BOTH = ("alpha", "beta")


# -- colliding names -----------------------------------------------------------------

def test_each_app_answers_with_its_own_modules_of_the_same_names(two_apps):
    for name in BOTH:
        response = two_apps.get(f"/{name}/")
        assert response.status_code == 200
        owners = response.json["owners"]
        assert owners == {
            "config": name, "settings": name, "models": name, "utils": name, "utils.text": name,
            "utils.text->config": name, "pkg": name, "pkg.sub": name, "pkg.sub.mod": name,
            "pkg.sub.mod->..other": f"the thing of {name}", "lazy": name,
        }


def test_private_modules_are_loaded_from_the_apps_own_directory(two_apps):
    for name in BOTH:
        two_apps.get(f"/{name}/")
        modules = two_apps[name].binding.modules.modules
        assert {"app", "config", "settings", "models", "utils", "utils.text", "pkg", "pkg.sub",
                "pkg.sub.mod", "pkg.sub.leaf", "pkg.other", "lazy"} <= set(modules)
        for module in modules.values():
            assert Path(module.__file__).is_relative_to(NS / name), module


# -- every way of importing -----------------------------------------------------------

def test_import_statement_binds_the_apps_own_module(two_apps):
    for name in BOTH:
        config = call_in(two_apps[name], "import_statement")
        assert config is private(two_apps[name], "config")
        assert config.OWNER == name


def test_import_of_a_dotted_name_binds_the_apps_own_top_level_package(two_apps):
    for name in BOTH:
        pkg = call_in(two_apps[name], "import_dotted")
        assert pkg is private(two_apps[name], "pkg")
        assert pkg.sub.mod.OWNER == name


def test_from_import_binds_the_apps_own_submodule(two_apps):
    for name in BOTH:
        text = call_in(two_apps[name], "from_import")
        assert text is private(two_apps[name], "utils.text")
        assert text.OWNER == name


def test_from_import_of_globals_named_like_sys_attributes_gets_the_modules_own_objects(two_apps):
    # `from django.urls import path`: a module's `path`, `modules` or `argv` is its own.
    for name in BOTH:
        path, modules, argv = call_in(two_apps[name], "from_import_of_names_like_sys_attributes")
        assert callable(path) and path() == f"the path() of {name}'s routes"
        assert modules == f"the modules of {name}'s routes"
        assert argv == f"the argv of {name}'s routes"


def test_relative_import_from_dot_binds_the_apps_own_sibling(two_apps):
    for name in BOTH:
        app = two_apps[name]
        mod = call_in(app, "import_module_absolute")
        assert mod.leaf is private(app, "pkg.sub.leaf")  # `from . import leaf` at import time
        assert private(app, "pkg.sub").mod is mod  # `from . import mod` in pkg/sub/__init__.py
        assert in_app(app, mod.sibling_now) is private(app, "pkg.sub.leaf")  # ... at call time
        assert mod.leaf.OWNER == name


def test_relative_import_from_parent_binds_the_apps_own_name(two_apps):
    for name in BOTH:
        mod = call_in(two_apps[name], "import_module_absolute")
        assert mod.OTHER_THING == f"the thing of {name}"  # `from ..other import thing` at import
        assert in_app(two_apps[name], mod.parent_sibling_now) == f"the thing of {name}"  # at call


def test_import_module_with_an_absolute_name_returns_the_apps_own_module(two_apps):
    for name in BOTH:
        mod = call_in(two_apps[name], "import_module_absolute")
        assert mod is private(two_apps[name], "pkg.sub.mod")
        assert mod.OWNER == name


def test_import_module_with_a_relative_name_and_package_returns_the_apps_own_module(two_apps):
    for name in BOTH:
        mod = call_in(two_apps[name], "import_module_relative")
        assert mod is private(two_apps[name], "pkg.sub.mod")
        assert mod.OWNER == name


def test_import_module_called_by_shared_code_in_the_app_returns_the_apps_own_module(two_apps):
    for name in BOTH:
        config = in_app(two_apps[name], importlib.import_module, "config")
        assert config is private(two_apps[name], "config")


def test_dunder_import_in_app_code_returns_the_apps_own_module(two_apps):
    for name in BOTH:
        app = two_apps[name]
        assert call_in(app, "dunder_import") is private(app, "config")
        assert call_in(app, "dunder_import_fromlist") is private(app, "pkg.sub")


def test_reload_reexecutes_only_the_apps_own_module_in_place(two_apps):
    alpha_config = private(two_apps["alpha"], "config")
    reloaded = call_in(two_apps["alpha"], "reload_config")
    assert reloaded is alpha_config
    assert (reloaded.OWNER, reloaded.RELOADS) == ("alpha", 1)
    assert in_app(two_apps["alpha"], lambda: sys.modules["config"]) is alpha_config
    assert private(two_apps["beta"], "config").RELOADS == 0


def test_a_module_first_imported_in_a_request_handler_is_private_to_the_app(two_apps):
    assert private(two_apps["alpha"], "lazy") is None
    two_apps.get("/alpha/")
    alpha_lazy = private(two_apps["alpha"], "lazy")
    assert alpha_lazy.OWNER == "alpha"
    assert private(two_apps["beta"], "lazy") is None
    two_apps.get("/beta/")
    assert private(two_apps["beta"], "lazy").OWNER == "beta"
    assert type(real_modules["lazy"]) is Alias


def test_a_module_imported_in_a_thread_the_app_started_is_private_to_the_app(two_apps):
    for name in BOTH:
        threaded = call_in(two_apps[name], "import_in_thread")
        assert threaded is private(two_apps[name], "threaded")
        assert threaded.OWNER == name
    assert type(real_modules["threaded"]) is Alias


def test_two_apps_importing_their_own_modules_of_the_same_names_in_opposite_orders_both_succeed(
        load, sitepkgs_on_process_path):
    loaded = load(crossing_a=fixture_app("crossing_a"), crossing_b=fixture_app("crossing_b"))
    owners: dict[str, str] = {}

    def import_in(app: str, module: str) -> None:
        try:
            owners[app] = in_app(loaded[app], importlib.import_module, module).OWNER
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            owners[app] = repr(exc)

    threads = [threading.Thread(target=import_in, args=("crossing_a", "xmod")),  # xmod -> ymod
               threading.Thread(target=import_in, args=("crossing_b", "ymod"))]  # ymod -> xmod
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert owners == {"crossing_a": "crossing_a", "crossing_b": "crossing_b"}


# -- consumers of sys.modules ------------------------------------------------------------

def test_sys_modules_of_dunder_name_is_the_module_itself(two_apps):
    for name in BOTH:
        assert call_in(two_apps[name], "this_module") is private(two_apps[name], "ways")


def test_sys_modules_get_returns_the_apps_own_module(two_apps):
    for name in BOTH:
        app = two_apps[name]
        assert call_in(app, "get_module", "utils.text") is private(app, "utils.text")
        assert call_in(app, "get_module", "no_such_module_anywhere") is None


@pytest.fixture(params=["C pickle", "pure-Python pickle"])
def pickling(request) -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
    """``(dumps, loads)``: the C ``_pickle`` or ``pickle._Pickler``/``_Unpickler``."""
    if request.param == "C pickle":
        return pickle.dumps, pickle.loads
    return pickle._dumps, pickle._loads  # type: ignore[attr-defined]


def test_pickle_round_trip_gives_the_apps_own_class(two_apps, pickling):
    dumps, loads = pickling
    for name in BOTH:
        app = two_apps[name]
        Thing = private(app, "config").Thing
        copy_ = in_app(app, lambda: loads(dumps(Thing(7))))
        assert type(copy_) is Thing
        assert (copy_.value, copy_.owner()) == (7, name)


def test_a_pickle_made_in_one_app_loads_as_the_other_apps_own_class(two_apps, pickling):
    dumps, loads = pickling
    alpha, beta = two_apps["alpha"], two_apps["beta"]
    data = in_app(alpha, dumps, private(alpha, "config").Thing(7))
    loaded = in_app(beta, loads, data)
    assert type(loaded) is private(beta, "config").Thing
    assert (loaded.value, loaded.owner()) == (7, "beta")


def test_deepcopy_gives_the_apps_own_class(two_apps):
    for name in BOTH:
        app = two_apps[name]
        record = private(app, "models").Record(private(app, "config").Thing(1))
        copied = in_app(app, copy.deepcopy, record)
        assert type(copied) is private(app, "models").Record
        assert type(copied.thing) is private(app, "config").Thing


def test_dataclass_with_quoted_annotations_tells_class_variables_from_fields(two_apps):
    # dataclasses reads sys.modules[cls.__module__] to resolve "ClassVar[str]".
    for name in BOTH:
        Quoted = private(two_apps[name], "settings").Quoted
        assert [f.name for f in dataclasses.fields(Quoted)] == ["thing", "label"]
        assert Quoted(None).label == name


def test_dataclass_under_future_annotations_tells_class_variables_from_fields(two_apps):
    for name in BOTH:
        Record = private(two_apps[name], "models").Record
        assert [f.name for f in dataclasses.fields(Record)] == ["thing", "label"]
        assert Record(None).label == name


def test_get_type_hints_resolves_string_annotations_to_the_apps_own_classes(two_apps):
    for name in BOTH:
        app = two_apps[name]
        Thing = private(app, "config").Thing
        for cls in (private(app, "models").Record, private(app, "settings").Quoted):
            hints = in_app(app, typing.get_type_hints, cls)
            assert hints["thing"] is Thing
            assert hints["label"] is str


def test_inspect_getmodule_finds_the_apps_own_module(two_apps):
    for name in BOTH:
        app = two_apps[name]
        config = private(app, "config")
        assert in_app(app, inspect.getmodule, config.Thing) is config
        assert in_app(app, inspect.getmodule, config.log_something) is config


def test_inspect_getsource_reads_the_apps_own_file(two_apps):
    for name in BOTH:
        app = two_apps[name]
        config = private(app, "config")
        assert in_app(app, inspect.getsourcefile, config.Thing) == str(NS / name / "config.py")
        assert f'OWNER = "{name}"' in in_app(app, inspect.getsource, config)
        assert "def owner(self):" in in_app(app, inspect.getsource, config.Thing)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_logger_of_dunder_name_is_the_apps_own_and_logs_from_its_own_file(two_apps):
    handlers = {}
    for name in BOTH:
        app = two_apps[name]
        logger = in_app(app, logging.getLogger, "config")
        assert logger is private(app, "config").log
        handlers[name] = Records()
        logger.addHandler(handlers[name])
    for name in BOTH:
        app = two_apps[name]
        in_app(app, private(app, "config").log_something, f"logged by {name}")
    for name in BOTH:
        assert [(r.name, r.getMessage(), r.pathname) for r in handlers[name].records] == [
            ("config", f"logged by {name}", str(NS / name / "config.py"))]


def test_records_of_the_apps_own_loggers_reach_the_shared_root_logger(two_apps):
    root = Records()
    logging.getLogger().addHandler(root)
    try:
        for name in BOTH:
            app = two_apps[name]
            in_app(app, private(app, "config").log_something, f"logged by {name}")
    finally:
        logging.getLogger().removeHandler(root)
    assert [r.getMessage() for r in root.records] == [f"logged by {name}" for name in BOTH]


def test_warnings_are_attributed_to_the_apps_own_file(two_apps):
    for name in BOTH:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call_in(two_apps[name], "warn")
        assert [(w.category, w.filename) for w in caught] == [(UserWarning, str(NS / name / "ways.py"))]


def test_tracebacks_show_the_apps_own_file_and_source_line(two_apps):
    for name in BOTH:
        with pytest.raises(ValueError) as raised:
            call_in(two_apps[name], "fail")
        text = "".join(traceback.format_exception(raised.value))
        assert f'File "{NS / name / "ways.py"}", line ' in text
        assert 'raise ValueError("failure raised by the app\'s own code")' in text
        other = "beta" if name == "alpha" else "alpha"
        assert str(NS / other) not in text


# -- shared stays shared ------------------------------------------------------------------

def test_a_stdlib_module_is_one_module_object_for_every_app(two_apps):
    jsons = [call_in(two_apps[name], "import_json") for name in BOTH]
    assert jsons[0] is jsons[1] is json
    assert all(private(two_apps[name], "json") is None for name in BOTH)


def test_a_site_packages_library_is_one_module_object_for_every_app(two_apps):
    libraries = [call_in(two_apps[name], "import_werkzeug") for name in BOTH]
    assert libraries[0] is libraries[1] is werkzeug is real_modules["werkzeug"]
    assert all(private(two_apps[name], "werkzeug") is None for name in BOTH)


# -- isolate ---------------------------------------------------------------------------------

@pytest.fixture
def sitepkgs_on_process_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/apps/ns/sitepkgs on the process sys.path: a shared entry, like site-packages."""
    monkeypatch.syspath_prepend(str(SITEPKGS))


def test_an_isolated_package_has_its_own_copy_and_state_in_each_app(load, sitepkgs_on_process_path):
    loaded = load(alpha=fixture_app("alpha", isolate=["nsregistry"]),
                  beta=fixture_app("beta", isolate=["nsregistry"]))
    alpha_registry, alpha_items = call_in(loaded["alpha"], "register", "from alpha")
    beta_registry, beta_items = call_in(loaded["beta"], "register", "from beta")
    assert alpha_items == ["from alpha"]
    assert beta_items == ["from beta"]
    assert alpha_registry is not beta_registry
    assert alpha_registry is private(loaded["alpha"], "nsregistry")
    assert alpha_registry.state is private(loaded["alpha"], "nsregistry.state")
    assert Path(alpha_registry.__file__).is_relative_to(SITEPKGS)
    assert type(real_modules["nsregistry"]) is Alias


def test_a_package_not_isolated_is_one_copy_shared_by_every_app(load, sitepkgs_on_process_path):
    loaded = load(alpha=fixture_app("alpha"), beta=fixture_app("beta"))
    alpha_registry, _ = call_in(loaded["alpha"], "register", "from alpha")
    beta_registry, beta_items = call_in(loaded["beta"], "register", "from beta")
    assert beta_items == ["from alpha", "from beta"]
    assert alpha_registry is beta_registry is real_modules["nsregistry"]
    assert private(loaded["alpha"], "nsregistry") is None


def test_two_flask_apps_with_the_same_module_names_each_serve_their_own(load):
    loaded = load(one=fixture_app("flask_one", "one", app="app:app"),
                  two=fixture_app("flask_two", "two", app="app:app"))
    for name in ("one", "two"):
        assert loaded[name].status == "loaded"
        response = loaded.get(f"/{name}/")
        assert response.status_code == 200
        assert response.json == {"app": name, "greeting": f"hello from {name}",
                                 "page": f"page of {name}",
                                 "views_file": str(NS / f"flask_{name}" / "views.py")}


@pytest.fixture
def cext_on_process_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A shared package ``cext`` holding a copy of a real stdlib C extension; its module name."""
    for name in ("array", "_json", "_struct", "math"):
        origin = importlib.util.find_spec(name).origin
        if origin and origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
            break
    else:
        pytest.skip("no stdlib extension module is a separate file in this Python")
    package = tmp_path / "shared" / "cext"
    package.mkdir(parents=True)
    shutil.copy(origin, package / Path(origin).name)  # the same file name: PyInit_<name> matches
    (package / "__init__.py").write_text(f"from . import {name}\n")
    monkeypatch.syspath_prepend(str(tmp_path / "shared"))
    return name


def test_isolating_a_package_with_a_c_extension_fails_that_app_with_a_clear_error(
        load, cext_on_process_path):
    loaded = load(isolating=fixture_app("cext_user", "isolating", app="cext_app:application",
                                        isolate=["cext"], stderr="null"),
                  alpha=fixture_app("alpha"))
    status = loaded["isolating"].status
    assert status.startswith("failed: ImportError: apps.isolating.isolate: ")
    assert f"'cext.{cext_on_process_path}' is a C extension module" in status
    assert "remove 'cext' from isolate" in status
    assert loaded.get("/isolating/").status_code == 503
    assert private(loaded["isolating"], "cext") is None
    assert f"cext.{cext_on_process_path}" not in real_modules  # not loaded, not even shared
    assert loaded.get("/alpha/").json["owners"]["config"] == "alpha"


def test_a_package_with_a_c_extension_not_isolated_loads_once_shared(load, cext_on_process_path):
    loaded = load(sharing=fixture_app("cext_user", "sharing", app="cext_app:application"),
                  alpha=fixture_app("alpha"))
    assert loaded["sharing"].status == "loaded"
    assert loaded.get("/sharing/").data == b"cext"
    assert private(loaded["sharing"], "cext") is None
    extension = real_modules[f"cext.{cext_on_process_path}"]
    assert type(extension) is not Alias  # the one shared copy
    assert isinstance(extension.__loader__, importlib.machinery.ExtensionFileLoader)


# -- sys.path.insert(0, os.path.dirname(__file__)) -------------------------------------------

def test_sys_path_entry_an_app_inserts_is_seen_by_that_app_only(load):
    loaded = load(selfpath=fixture_app("selfpath", app="project.wsgi:application"),
                  alpha=fixture_app("alpha"))
    entry = str(NS / "selfpath" / "project")
    assert loaded.get("/selfpath/").data == b"selfpath"
    assert in_app(loaded["selfpath"], lambda: sys.path[0]) == entry
    assert entry not in in_app(loaded["alpha"], lambda: list(sys.path))
    assert entry not in sys.path  # the server's


def test_modules_found_through_a_sys_path_entry_the_app_inserts_are_private(load):
    loaded = load(selfpath=fixture_app("selfpath", app="project.wsgi:application"),
                  alpha=fixture_app("alpha"))
    helpers = private(loaded["selfpath"], "helpers")
    assert helpers is not None and helpers.OWNER == "selfpath"
    assert type(real_modules["helpers"]) is Alias
    with pytest.raises(ModuleNotFoundError):
        in_app(loaded["alpha"], importlib.import_module, "helpers")


def test_modules_found_through_an_entry_inserted_after_a_failed_import_are_private(load):
    loaded = load(fallback=fixture_app("selfpath_fallback", "fallback",
                                       app="fallback_project.wsgi:application"),
                  alpha=fixture_app("alpha"))
    assert loaded.get("/fallback/").data == b"selfpath_fallback"
    assert private(loaded["fallback"], "fallback_helpers") is not None
    assert type(real_modules.get("fallback_helpers")) is Alias


# -- failure -----------------------------------------------------------------------------------

BROKEN = {
    "SyntaxError": "def broken(:\n",
    "ImportError": "from fragile_helper import no_such_name\n",
}
FIXED = "VALUE = 'fixed, and not the size of the broken file'\n"


@pytest.fixture(params=sorted(BROKEN))
def fragile(request, tmp_path: Path, load) -> tuple[Loaded, Path]:
    """alpha, and ``fragile`` whose module ``fragile_broken`` raises a SyntaxError or an ImportError."""
    directory = tmp_path / "fragile"
    directory.mkdir()
    (directory / "fragile_helper.py").write_text("HELPED = True\n")
    (directory / "fragile_broken.py").write_text(BROKEN[request.param])
    (directory / "fragile_app.py").write_text(
        "import fragile_helper\n"
        "import fragile_broken\n\n\n"
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [fragile_broken.VALUE.encode()]\n")
    loaded = load(alpha=fixture_app("alpha"),
                  fragile={"app": "fragile_app:application", "mount": "/fragile",
                           "path": [str(directory)], "stderr": "null"})
    assert loaded["fragile"].status.startswith(f"failed: {request.param}")
    return loaded, directory


def test_a_module_failing_in_one_app_leaves_the_other_apps_serving(fragile):
    loaded, _ = fragile
    assert loaded.get("/fragile/").status_code == 503
    response = loaded.get("/alpha/")
    assert response.status_code == 200
    assert set(response.json["owners"].values()) == {"alpha", "the thing of alpha"}


def test_a_module_failing_leaves_no_half_imported_private_module(fragile):
    loaded, _ = fragile
    modules = loaded["fragile"].binding.modules.modules
    assert "fragile_broken" not in modules
    assert "fragile_app" not in modules
    assert modules["fragile_helper"].HELPED  # imported in full before the failure: kept, as in Python
    for name in ("fragile_broken", "fragile_app", "fragile_helper"):
        assert type(real_modules.get(name)) in (Alias, type(None))


def test_after_the_module_is_fixed_loading_the_same_app_again_succeeds(fragile):
    loaded, directory = fragile
    (directory / "fragile_broken.py").write_text(FIXED)
    assert loaded["fragile"].load()
    assert loaded.get("/fragile/").data == b"fixed, and not the size of the broken file"


def test_after_the_module_is_fixed_a_fresh_app_of_the_same_config_loads(fragile):
    loaded, directory = fragile
    (directory / "fragile_broken.py").write_text(FIXED)
    fresh = App(loaded["fragile"].config)
    assert fresh.load(), fresh.status
    assert private(fresh, "fragile_broken").VALUE == "fixed, and not the size of the broken file"


# -- outside every app --------------------------------------------------------------------------

def test_outside_apps_sys_modules_is_the_real_dict(two_apps):
    two_apps.get("/alpha/")
    assert sys.modules is real_modules
    assert type(sys.modules) is dict


def test_outside_apps_importing_a_stdlib_module_is_unaffected(two_apps):
    two_apps.get("/alpha/")
    import json as imported
    assert imported is json is sys.modules["json"]
    assert importlib.import_module("email.utils") is sys.modules["email.utils"]


def test_outside_apps_sys_modules_holds_aliases_and_no_private_module(two_apps):
    for name in BOTH:
        two_apps.get(f"/{name}/")
    for name in BOTH:
        for module_name in two_apps[name].binding.modules.modules:
            assert type(real_modules[module_name]) is Alias, module_name
    for module_name, module in list(real_modules.items()):
        file = getattr(module, "__file__", None) if type(module) is not Alias else None
        assert not (file and Path(file).is_relative_to(NS)), module_name


def test_outside_apps_a_module_named_like_a_private_one_imports_as_in_plain_python(
        two_apps, tmp_path, monkeypatch):
    server_side = tmp_path / "server_side"
    server_side.mkdir()
    (server_side / "models.py").write_text("OWNER = 'the server'\n")
    monkeypatch.syspath_prepend(str(server_side))
    models = importlib.import_module("models")
    assert models.OWNER == "the server"


def test_an_app_module_named_like_an_imported_stdlib_module_does_not_replace_it(tmp_path):
    import calendar
    import ctxserve
    from werkzeug.test import Client

    app_dir = tmp_path / "shadow"
    app_dir.mkdir()
    (app_dir / "calendar.py").write_text("OWNER = 'the app'\n")
    (app_dir / "shadow_app.py").write_text(
        "import calendar, http.cookiejar\n"
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [getattr(calendar, 'OWNER', 'stdlib').encode()]\n")
    config = tmp_path / "ctxserve.toml"
    config.write_text(f'[apps.shadow]\napp = "shadow_app:application"\nmount = "/"\npath = ["{app_dir}"]\n')
    dispatcher = ctxserve.from_config(config)
    assert dispatcher.apps[0].loaded, dispatcher.apps[0].status
    assert Client(dispatcher).get("/").data == b"stdlib"
    assert sys.modules["calendar"] is calendar


# -- sys.modules inside an app is a dict ------------------------------------------------------

#: Names the differential test operates on: alpha's own modules (private) and
#: names that exist nowhere (shared: their entries are the process's).
DICT_KEYS = ("config", "models", "utils.text", "ctxserve_diff_shared_a", "ctxserve_diff_shared_b.sub")


def _dict_op(target: Any, op: tuple[Any, ...]) -> Any:
    """Apply one operation to *target* (a dict or the app's sys.modules);
    the result, with an exception as its type."""
    kind, key, value = op
    try:
        if kind == "getitem":
            return target[key]
        if kind == "contains":
            return key in target
        if kind == "get":
            return target.get(key)
        if kind == "get_default":
            return target.get(key, "default")
        if kind == "pop":
            return target.pop(key)
        if kind == "pop_default":
            return target.pop(key, "default")
        if kind == "setdefault":
            return target.setdefault(key, value)
        if kind == "set":
            target[key] = value
            return "done"
        if kind == "del":
            del target[key]
            return "done"
        if kind == "update":
            target.update({key: value})
            return "done"
        if kind == "ior":
            target |= {key: value}
            return "done"
        if kind == "copy":
            return {k: v for k, v in target.copy().items() if k in DICT_KEYS}
        if kind == "iter":
            return sorted(k for k in target if k in DICT_KEYS)
        if kind == "keys":
            return sorted(k for k in list(target.keys()) if k in DICT_KEYS)
        if kind == "items":
            return {k: v for k, v in list(target.items()) if k in DICT_KEYS}
        if kind == "values":
            return len(list(target.values()))
        if kind == "len":
            return len(target)
    except Exception as exc:  # noqa: BLE001 — the exception's type is the result
        return type(exc)
    raise AssertionError(kind)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(a[k] is b[k] for k in a)
    return a is b or (type(a) is type(b) and not isinstance(a, ModuleType) and a == b)


def test_sys_modules_in_an_app_behaves_as_a_dict_for_any_sequence_of_operations(two_apps):
    """A differential test: the same operations on the app's sys.modules and on a dict."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    app = two_apps["alpha"]
    namespace = app.binding.modules
    app.context.run(lambda: importlib.import_module("app").owners())  # all of alpha's modules imported
    values = [None, *(ModuleType(f"value{i}") for i in range(3))]
    kinds = ["getitem", "contains", "get", "get_default", "pop", "pop_default", "setdefault",
             "set", "del", "update", "ior", "copy", "iter", "keys", "items", "values", "len"]
    operations = st.lists(st.tuples(st.sampled_from(kinds), st.sampled_from(DICT_KEYS),
                                    st.sampled_from(values)), max_size=30)
    saved_private = dict(namespace.modules)

    def restore() -> None:
        namespace.modules.clear()
        namespace.modules.update(saved_private)
        for key in DICT_KEYS[3:]:
            real_modules.pop(key, None)

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(operations)
    def same_as_a_dict(ops: list[tuple[Any, ...]]) -> None:
        restore()
        try:
            sys_modules = app.context.run(lambda: sys.modules)
            assert sys_modules is namespace
            model = {key: sys_modules[key] for key in DICT_KEYS if key in sys_modules}
            offset = app.context.run(len, sys_modules) - len(model)
            for op in ops:
                got = app.context.run(_dict_op, sys_modules, op)
                expected = _dict_op(model, op)
                if op[0] in ("len", "values"):
                    assert got - offset == expected, op
                else:
                    assert _same(got, expected), (op, got, expected)
            final = {key: sys_modules[key] for key in DICT_KEYS if app.context.run(
                sys_modules.__contains__, key)}
            assert _same(final, model)
        finally:
            restore()

    same_as_a_dict()


def test_a_none_entry_blocks_the_import_in_the_app_as_in_plain_python(two_apps):
    app = two_apps["alpha"]

    def blocked() -> str:
        saved = sys.modules.pop("config")
        sys.modules["config"] = None
        try:
            importlib.import_module("config")
        except ImportError as exc:
            return str(exc)
        finally:
            sys.modules["config"] = saved
        return "imported"

    assert app.context.run(blocked) == "import of config halted; None in sys.modules"
    assert app.context.run(lambda: importlib.import_module("config").OWNER) == "alpha"


def test_snapshots_of_sys_modules_never_fail_while_another_thread_imports(two_apps):
    """``list(sys.modules.items())`` while modules come and go, as a dict's snapshot."""
    app = two_apps["alpha"]
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn() -> None:
        while not stop.is_set():
            sys.modules.pop("lazy", None)
            importlib.import_module("lazy")

    def snapshots() -> None:
        try:
            for _ in range(300):
                dict(sys.modules.items())
                list(sys.modules.values())
                [name for name in sys.modules.keys()]
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    churner = threading.Thread(target=app.context.copy().run, args=(churn,))
    churner.start()
    try:
        app.context.run(snapshots)
    finally:
        stop.set()
        churner.join(10)
    assert errors == []


def test_an_apps_own_module_wins_over_one_another_apps_directory_gave_the_process(
        load, monkeypatch):
    """Code outside the apps put alpha's directory on sys.path and imported its
    ``config``: beta, which has a ``config`` of its own, still gets its own."""
    monkeypatch.syspath_prepend(str(NS / "alpha"))
    outside = importlib.import_module("settings")
    assert outside.OWNER == "alpha"
    loaded = load(alpha=fixture_app("alpha"), beta=fixture_app("beta"))
    for name in BOTH:
        owners = loaded.get(f"/{name}/").json["owners"]
        assert {owners[key] for key in ("config", "settings", "models", "lazy")} == {name}
    assert call_in(loaded["beta"], "import_statement").OWNER == "beta"
    assert real_modules["settings"].OWNER == "alpha"  # outside every app: what was imported


# -- what isolate cannot do by itself is said at load ------------------------------------------

def addon_user(name: str, isolate: list[str]) -> dict[str, Any]:
    return fixture_app("addon_user", name, app="addon_app:application", isolate=isolate,
                       environ={"ADDON_USER": name}, stderr="null")


def test_a_shared_package_that_imports_an_isolated_one_is_reported_with_the_fix(
        load, sitepkgs_on_process_path):
    loaded = load(one=addon_user("one", ["nsregistry"]), two=addon_user("two", ["nsregistry"]))
    fix = ("apps.{}.isolate: shared package 'nsaddon' imported 'nsregistry', which this app "
           "isolates, and holds one app's copy of it (nsaddon.register): other apps would use "
           "that copy — add 'nsaddon' to isolate")
    for name in ("one", "two"):
        assert loaded[name].status == f"loaded; warning: {fix.format(name)}"
    # What the warning is about: two's add-on registered into one's registry.
    assert loaded.get("/one/").json == ["via addon: one", "via addon: two"]
    assert loaded.get("/two/").json == []


def test_isolating_the_shared_package_too_gives_each_app_its_own_and_no_warning(
        load, sitepkgs_on_process_path):
    both = ["nsregistry", "nsaddon"]
    loaded = load(one=addon_user("one", both), two=addon_user("two", both))
    for name in ("one", "two"):
        assert loaded[name].status == "loaded"
        assert loaded.get(f"/{name}/").json == [f"via addon: {name}"]


def test_an_isolated_package_that_falls_back_from_its_c_speedups_is_reported(load):
    import markupsafe
    if importlib.util.find_spec("markupsafe._speedups") is None:
        pytest.skip("this markupsafe has no C speedups")
    loaded = load(plain=fixture_app("addon_user", "plain", app="markup_app:application",
                                    isolate=["markupsafe"], stderr="null"))
    assert loaded.get("/plain/").data == b"&lt;b&gt;"
    assert private(loaded["plain"], "markupsafe") is not markupsafe
    assert loaded["plain"].status.startswith("loaded; warning: apps.plain.isolate: 'markupsafe' "
                                             "runs without its C extension markupsafe._speedups")
    assert "remove 'markupsafe' from isolate" in loaded["plain"].status
