"""Every way the app's own code imports or looks a module up. Same file in alpha and beta."""
import importlib
import sys
import threading
import warnings


def import_statement():
    import config
    return config


def import_dotted():
    import pkg.sub.mod
    return pkg


def from_import():
    from utils import text
    return text


def from_import_of_names_like_sys_attributes():
    from routes import argv, modules, path
    return path, modules, argv


def import_module_absolute():
    return importlib.import_module("pkg.sub.mod")


def import_module_relative():
    return importlib.import_module(".mod", package="pkg.sub")


def dunder_import():
    return __import__("config")


def dunder_import_fromlist():
    return __import__("pkg.sub", fromlist=["mod"])


def reload_config():
    import config
    return importlib.reload(config)


def import_in_thread():
    found = {}

    def work():
        import threaded
        found["module"] = threaded

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return found["module"]


def this_module():
    return sys.modules[__name__]


def get_module(name):
    return sys.modules.get(name)


def import_json():
    import json
    return json


def import_werkzeug():
    import werkzeug
    return werkzeug


def register(value):
    """Add *value* to nsregistry's module-level list (tests/apps/ns/sitepkgs)."""
    import nsregistry
    return nsregistry, nsregistry.register(value)


def warn():
    warnings.warn("a warning raised by the app's own code", UserWarning)


def fail():
    raise ValueError("failure raised by the app's own code")
