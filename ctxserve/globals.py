"""The per-app process globals beyond ``os.environ`` and the streams.

Each app gets its own value of these, kept in its binding's ``state`` dict
(made on first use, so an app that never touches a global never pays for
it), and found through the one context variable, ``binding.current``.
Outside every app each of them reads and writes the plain process value.

Three ways to put a stand-in in place, chosen by how CPython reads the
global (each stand-in below says which and why):

* **module attribute** (:class:`ModuleAttribute`): the module's class
  becomes a ``types.ModuleType`` subclass with one data descriptor per
  per-app attribute, as ``sys`` gets in ``virtual.py``. Attribute access —
  from Python code and from C code that uses ``PyObject_GetAttr`` (the
  ``_warnings`` module reads ``warnings.filters`` that way) — sees the
  app's value; the module's own functions, which read their globals from
  the module's ``__dict__``, keep seeing the plain one, so the few of them
  that read a per-app global are replaced by functions that read the
  attribute instead.
* **module function**: where the state lives in an object the module's
  functions close over (``random``'s hidden ``Random`` instance,
  ``mimetypes``' database, ``urllib.request``'s opener), the functions
  dispatch to the app's own object.
* **class method** (``logging.Logger.isEnabledFor``,
  ``socket.socket.__init__``): where the state is read per object.

Each ``install_*`` function here is the installer of a row of the process
layer's table (``process.py``), which runs it once per process.

logging
-------
The root logger's ``level``, ``handlers``, ``filters`` and ``disabled`` are
the app's own (``logging.basicConfig``, ``dictConfig``'s root section,
``root.addHandler``); an app's root starts as a copy of the server's root
when the app first touches it. ``logging.disable`` in an app disables
logging for that app only, and so do the loggers that an app's
``dictConfig``/``fileConfig`` disables (``disable_existing_loggers``). The server's own loggers (``gunicorn.*``,
``ctxserve.*``) are never judged by an app's root or ``disable``, even when
they log from inside an app's request. Named loggers stay one tree per
process (see the table), so their ``isEnabledFor`` cache is kept per app:
the same logger may be enabled in one app and not in another.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import logging.config
import os
import random
import socket
import tempfile
import threading
import types
import warnings
import weakref
from collections.abc import Callable
from typing import Any

from . import binding as _binding

__all__ = ["ModuleAttribute", "own", "SERVER_LOGGERS", "install_random", "install_logging",
           "install_warnings", "install_socket", "install_threading", "install_tempfile",
           "install_mimetypes", "install_urllib", "install_ssl"]

_MISSING: Any = object()

#: Loggers that belong to the server, whatever context they log from.
SERVER_LOGGERS = ("gunicorn", "ctxserve")


def own(binding: _binding.Binding, key: str, initial: Callable[[], Any]) -> Any:
    """The app's own value of the global *key*, made by *initial()* on first use."""
    value = binding.state.get(key, _MISSING)
    if value is _MISSING:
        value = binding.state.setdefault(key, initial())
    return value


class ModuleAttribute:
    """``module.NAME`` is the current app's own value; outside apps, the plain one.

    *initial* makes an app's first value (given the plain one). When the
    module's ``__dict__`` holds a stand-in that the module's own code calls
    (``threading.excepthook``), the plain value is kept here, in *plain*.
    """

    __slots__ = ("name", "key", "initial", "plain", "aside")

    def __init__(self, module: str, name: str, initial: Callable[[Any], Any], *,
                 aside: bool = False) -> None:
        self.name = name
        self.key = f"{module}.{name}"
        self.initial = initial
        self.aside = aside
        self.plain: Any = _MISSING

    def plain_value(self, module: Any) -> Any:
        return self.plain if self.aside else module.__dict__[self.name]

    def __get__(self, module: Any, owner: Any = None) -> Any:
        if module is None:
            return self
        b = _binding.current.get()
        if b is None:
            return self.plain_value(module)
        value = b.state.get(self.key, _MISSING)
        if value is _MISSING:
            value = b.state.setdefault(self.key, self.initial(self.plain_value(module)))
        return value

    def __set__(self, module: Any, value: Any) -> None:
        b = _binding.current.get()
        if b is not None:
            b.state[self.key] = value
        elif self.aside:
            self.plain = value
        else:
            module.__dict__[self.name] = value

    def __delete__(self, module: Any) -> None:
        raise AttributeError(f"ctxserve keeps {self.key}; assign it instead")


def per_app_module(module: types.ModuleType, attributes: dict[str, ModuleAttribute]) -> None:
    """Give *module* a class whose descriptors are *attributes* (see the module docstring).

    ``type(module)(name)`` keeps making a plain module, as for ``sys``.
    """
    for name, attribute in attributes.items():
        if attribute.aside:
            attribute.plain = module.__dict__[name]
    namespace: dict[str, Any] = {**attributes, "__new__": _plain_module,
                                 "__doc__": f"The class of {module.__name__}: per-app attributes."}
    module.__class__ = type(f"PerApp_{module.__name__}", (type(module),), namespace)


def _plain_module(cls: type, *args: Any, **kwargs: Any) -> types.ModuleType:
    return types.ModuleType(*args, **kwargs)


def _same(value: Any) -> Any:
    return value


def _dispatch(plain: Callable[..., Any], key: str, initial: Callable[[], Any],
              method: Callable[..., Any]) -> Callable[..., Any]:
    """A module function that calls *method* on the app's own object, else *plain*."""

    @functools.wraps(plain)
    def call(*args: Any, **kwargs: Any) -> Any:
        b = _binding.current.get()
        if b is None:
            return plain(*args, **kwargs)
        return method(b.state.get(key) or own(b, key, initial), *args, **kwargs)

    return call


# -- random ------------------------------------------------------------------

#: Every app's own ``random.Random``: reseeded after a fork, as ``random``
#: reseeds its hidden instance, so that workers do not share a sequence.
_randoms: weakref.WeakSet[random.Random] = weakref.WeakSet()


def _new_random() -> random.Random:
    instance = random.Random()
    _randoms.add(instance)
    return instance


def _reseed_after_fork() -> None:
    for instance in list(_randoms):
        instance.seed()


def install_random() -> None:
    """``random.seed``, ``random.random``, ... are bound methods of one hidden
    ``Random``; each becomes a function that calls the app's own instance."""
    hidden = random._inst  # type: ignore[attr-defined]
    for name, value in list(vars(random).items()):
        if getattr(value, "__self__", None) is hidden:
            setattr(random, name, _dispatch(value, "random", _new_random, getattr(random.Random, name)))
    os.register_at_fork(after_in_child=_reseed_after_fork)


# -- logging -----------------------------------------------------------------

class _RootState:
    """An app's own root logger state, first copied from the server's root."""

    __slots__ = ("level", "handlers", "filters", "disabled", "disable", "off", "cache", "generation")

    def __init__(self, root: logging.Logger) -> None:
        plain = root.__dict__
        self.level = plain["level"]
        self.handlers = list(plain["handlers"])
        self.filters = list(plain["filters"])
        self.disabled = plain["disabled"]
        self.disable = 0  # logging.disable(level) in this app
        #: Loggers this app's dictConfig/fileConfig disabled (disable_existing_loggers).
        self.off: set[logging.Logger] = set()
        self.cache: dict[tuple[logging.Logger, int], bool] = {}
        self.generation = -1


#: Bumped whenever any logger's level changes (``Manager._clear_cache``),
#: which empties every app's ``isEnabledFor`` cache too.
_log_generation = [0]


def _log_state(b: _binding.Binding) -> _RootState:
    state = b.state.get("logging.root")
    if state is None:
        state = b.state.setdefault("logging.root", _RootState(logging.root))
    return state  # type: ignore[no-any-return]


class _RootAttribute:
    """``logging.root.<name>``: the app's own, unless it is the server's logger walking up."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, root: Any, owner: Any = None) -> Any:
        if root is None:
            return self
        b = _binding.current.get()
        if b is None:
            return root.__dict__[self.name]
        return getattr(_log_state(b), self.name)

    def __set__(self, root: Any, value: Any) -> None:
        b = _binding.current.get()
        if b is None:
            root.__dict__[self.name] = value
        else:
            setattr(_log_state(b), self.name, value)


class _Root(logging.RootLogger):
    """The class of ``logging.root``: its state is the current app's."""

    level = _RootAttribute("level")  # type: ignore[assignment]
    handlers = _RootAttribute("handlers")  # type: ignore[assignment]
    filters = _RootAttribute("filters")  # type: ignore[assignment]
    disabled = _RootAttribute("disabled")  # type: ignore[assignment]


def install_logging() -> None:
    plain_enabled = logging.Logger.isEnabledFor
    plain_clear = logging.Manager._clear_cache
    plain_disable = logging.disable
    plain_existing = logging.config._handle_existing_loggers  # type: ignore[attr-defined]

    @functools.wraps(plain_enabled)
    def isEnabledFor(self: logging.Logger, level: int) -> bool:
        b = _binding.current.get()
        if b is None:
            return plain_enabled(self, level)
        state = b.state.get("logging.root") or _log_state(b)
        if state.generation != _log_generation[0]:
            state.cache.clear()
            state.generation = _log_generation[0]
        enabled = state.cache.get((self, level))
        if enabled is None:
            if self.name.startswith(SERVER_LOGGERS):
                # The server's logger, logging from an app's request: judged
                # by the server's root and disable level, never the app's.
                enabled = contextvars.Context().run(plain_enabled, self, level)
            else:
                enabled = state.disable < level and level >= self.getEffectiveLevel()
            state.cache[self, level] = enabled
        return enabled and not self.disabled and self not in state.off

    @functools.wraps(plain_clear)
    def _clear_cache(self: logging.Manager) -> None:
        _log_generation[0] += 1
        plain_clear(self)

    @functools.wraps(plain_disable)
    def disable(level: int = logging.CRITICAL) -> None:
        b = _binding.current.get()
        if b is None:
            return plain_disable(level)
        _log_state(b).disable = level
        _log_generation[0] += 1

    def _handle_existing_loggers(existing: list[str], child_loggers: list[str], disable_existing: bool) -> None:
        """``disable_existing_loggers`` in an app's ``dictConfig``/``fileConfig``:
        the loggers it disables are disabled for that app only (the server's
        loggers and the other apps' never go quiet)."""
        b = _binding.current.get()
        if b is None:
            return plain_existing(existing, child_loggers, disable_existing)
        plain_existing([name for name in existing if name in child_loggers], child_loggers, disable_existing)
        state, loggers = _log_state(b), logging.root.manager.loggerDict
        for name in existing:
            logger = loggers[name]
            if (name not in child_loggers and isinstance(logger, logging.Logger)
                    and not name.startswith(SERVER_LOGGERS)):
                if disable_existing:
                    state.off.add(logger)
                else:
                    state.off.discard(logger)

    logging.config._handle_existing_loggers = _handle_existing_loggers  # type: ignore[attr-defined]
    logging.Logger.isEnabledFor = isEnabledFor  # type: ignore[method-assign]
    logging.Manager._clear_cache = _clear_cache  # type: ignore[method-assign]
    logging.disable = disable
    logging.root.__class__ = _Root


# -- warnings ----------------------------------------------------------------

def install_warnings() -> None:
    """``warnings.filters`` and the rest are read by ``_warnings`` (C) as module
    attributes; ``filterwarnings``/``simplefilter`` call ``_add_filter`` and
    ``resetwarnings``/``_showwarnmsg`` read module globals, so those three
    read the attributes instead."""
    per_app_module(warnings, {
        "filters": ModuleAttribute("warnings", "filters", list),
        "defaultaction": ModuleAttribute("warnings", "defaultaction", _same),
        "onceregistry": ModuleAttribute("warnings", "onceregistry", lambda plain: {}),
        "showwarning": ModuleAttribute("warnings", "showwarning", _same),
        "_showwarnmsg_impl": ModuleAttribute("warnings", "_showwarnmsg_impl", _same),
    })
    module: Any = warnings

    def _add_filter(*item: Any, append: bool) -> None:
        filters = module.filters
        if not append:
            try:
                filters.remove(item)
            except ValueError:
                pass
            filters.insert(0, item)
        elif item not in filters:
            filters.append(item)
        module._filters_mutated()

    def resetwarnings() -> None:
        """Clear the list of warning filters, so that no filters are active."""
        module.filters[:] = []
        module._filters_mutated()

    def _showwarnmsg(msg: warnings.WarningMessage) -> None:
        show = module.showwarning
        if show is not module._showwarning_orig:
            if not callable(show):
                raise TypeError("warnings.showwarning() must be set to a function or method")
            show(msg.message, msg.category, msg.filename, msg.lineno, msg.file, msg.line)
            return
        module._showwarnmsg_impl(msg)

    module._add_filter = _add_filter
    module.resetwarnings = resetwarnings
    module._showwarnmsg = _showwarnmsg


# -- socket ------------------------------------------------------------------

def install_socket() -> None:
    """The default timeout is a C global that ``_socket`` applies to every new
    socket; an app's own is applied right after, in ``socket.socket.__init__``."""
    plain_get, plain_set = socket.getdefaulttimeout, socket.setdefaulttimeout
    plain_init = socket.socket.__init__

    @functools.wraps(plain_get)
    def getdefaulttimeout() -> float | None:
        b = _binding.current.get()
        if b is None:
            return plain_get()
        return b.state.get("socket.timeout", plain_get())  # type: ignore[no-any-return]

    @functools.wraps(plain_set)
    def setdefaulttimeout(timeout: float | None) -> None:
        b = _binding.current.get()
        if b is None:
            return plain_set(timeout)
        if timeout is not None:
            timeout = float(timeout)
            if timeout < 0:
                raise ValueError("Timeout value out of range")
        b.state["socket.timeout"] = timeout

    @functools.wraps(plain_init)
    def __init__(self: socket.socket, *args: Any, **kwargs: Any) -> None:
        plain_init(self, *args, **kwargs)
        b = _binding.current.get()
        if b is not None:
            timeout = b.state.get("socket.timeout", _MISSING)
            if timeout is not _MISSING:
                self.settimeout(timeout)

    socket.getdefaulttimeout = getdefaulttimeout
    socket.setdefaulttimeout = setdefaulttimeout
    socket.socket.__init__ = __init__  # type: ignore[method-assign]


# -- threading.excepthook ----------------------------------------------------

def install_threading() -> None:
    """``threading`` calls its module global ``excepthook`` when a thread's
    ``run`` raises; that global becomes a function that calls the app's hook
    (the thread's own context is the app's: see ``binding.py``)."""
    attribute = ModuleAttribute("threading", "excepthook", _app_threading_hook, aside=True)
    per_app_module(threading, {"excepthook": attribute})
    module: Any = threading

    def excepthook(args: Any) -> None:
        module.excepthook(args)

    excepthook.__doc__ = threading.__excepthook__.__doc__
    threading.__dict__["excepthook"] = excepthook


def _app_threading_hook(plain: Any) -> Any:
    return threading.__excepthook__


# -- tempfile ----------------------------------------------------------------

_tempdir_lock = threading.Lock()


def install_tempfile() -> None:
    """``tempfile.tempdir`` is the app's; when it is None it is found, like
    tempfile does, from the app's own ``TMPDIR``/``TEMP``/``TMP``."""
    per_app_module(tempfile, {"tempdir": ModuleAttribute("tempfile", "tempdir", lambda plain: None)})
    module: Any = tempfile
    plain = module._gettempdir

    @functools.wraps(plain)
    def _gettempdir() -> Any:
        b = _binding.current.get()
        if b is None:
            return plain()
        directory = module.tempdir
        if directory is None:
            with _tempdir_lock:
                directory = module.tempdir
                if directory is None:
                    directory = module.tempdir = module._get_default_tempdir()
        return directory

    module._gettempdir = _gettempdir


# -- the rest: mimetypes, urllib's opener, ssl's default context -------------

def install_mimetypes() -> None:
    """``mimetypes``' functions use one database; an app's starts as a copy of
    the process's, and ``add_type``/``init`` change the app's only."""
    import copy
    import mimetypes

    def new_db() -> Any:
        if mimetypes._db is None:  # type: ignore[attr-defined]
            contextvars.Context().run(mimetypes.init)
        return copy.deepcopy(mimetypes._db)  # type: ignore[attr-defined]

    for name in ("guess_type", "guess_all_extensions", "guess_extension", "add_type", "guess_file_type"):
        plain = getattr(mimetypes, name, None)
        if plain is not None:
            setattr(mimetypes, name, _dispatch(plain, "mimetypes", new_db, getattr(mimetypes.MimeTypes, name)))
    plain_init = mimetypes.init

    @functools.wraps(plain_init)
    def init(files: Any = None) -> None:
        b = _binding.current.get()
        if b is None:
            return plain_init(files)
        if not mimetypes.inited:  # MimeTypes() would call init() — this one — to make it
            contextvars.Context().run(plain_init)
        db = mimetypes.MimeTypes()
        for file in files if files is not None else mimetypes.knownfiles:
            if os.path.isfile(file):
                db.read(file)
        b.state["mimetypes"] = db

    mimetypes.init = init


def install_urllib() -> None:
    """``urlopen`` uses the opener that ``install_opener`` installed: the app's."""
    import urllib.request

    plain_install, plain_urlopen = urllib.request.install_opener, urllib.request.urlopen

    @functools.wraps(plain_install)
    def install_opener(opener: Any) -> None:
        b = _binding.current.get()
        if b is None:
            return plain_install(opener)
        b.state["urllib.opener"] = opener

    @functools.wraps(plain_urlopen)
    def urlopen(url: Any, data: Any = None, timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
                **kwargs: Any) -> Any:
        b = _binding.current.get()
        opener = None if b is None else b.state.get("urllib.opener")
        if opener is None or kwargs.get("context") is not None:
            return plain_urlopen(url, data, timeout, **kwargs)
        return opener.open(url, data, timeout)

    urllib.request.install_opener = install_opener
    urllib.request.urlopen = urlopen


def install_ssl() -> None:
    """``http.client`` reads ``ssl._create_default_https_context`` as a module
    attribute for every HTTPS connection: the app's, if it set one."""
    import ssl

    per_app_module(ssl, {"_create_default_https_context": ModuleAttribute(
        "ssl", "_create_default_https_context", _same)})
