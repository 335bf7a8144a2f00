"""Private module namespaces: two apps may each have a module called ``config``.

Modules found on an app's own ``sys.path`` entries (its ``path``, and any
directory it adds itself — also when the same directory is on the process's
own path: PYTHONPATH, the current directory of ``python -m``) and the top-level packages named in its
``isolate`` are *private* to that app; everything else (the standard
library, site-packages) is *shared* and imported once per process. As in
plain Python, a name already imported when the app first imports it is the
module the app gets: an app's own ``calendar.py`` does not replace the
standard library's once the server has imported it.

Why it is built this way — CPython constrains every piece:

1. **The interpreter keeps one ``sys.modules`` dict, and its C code reads it
   directly** (``PyImport_GetModule``, the ``import`` statement's fast path,
   ``PyImport_Import`` as used by ``_pickle``). Swapping that dict per app is
   impossible with threads, so it stays. For each name that is private in
   some app it holds one :class:`Alias`, a module whose attributes are the
   current app's module's: C callers (``pickle``) find the right class.

2. **Python-level code reads ``sys.modules`` as an attribute of ``sys``**:
   importlib's own ``_bootstrap`` (``_find_and_load``, ``_load_unlocked``,
   ``import_module``, ``reload``), ``pickle._Pickler``, ``typing``,
   ``dataclasses``, ``inspect``. ``sys`` already has a descriptor class
   (``virtual.py``), so inside an app ``sys.modules`` is the app's
   :class:`Namespace`: a mapping that keeps private modules in the app's own
   dict and passes shared ones through to the real dict. The whole import
   protocol — finders, loaders, locks, ``reload`` — then runs unchanged and
   files each module in the right place.

3. **An ``import`` statement in a private module must bind the real private
   module, not the alias**: code that runs on every request reads module
   attributes at full speed only from the module itself. The ``import``
   statement calls the ``__import__`` of the *frame's* builtins when that is
   not the original one, so each private module gets its app's own copy of
   the builtins dict, whose ``__import__`` resolves against the app's table
   first. Shared modules keep the real builtins and CPython's C fast path:
   nothing outside the apps gets slower.

4. **Loggers are kept by module name** in one process-wide registry, so
   ``logging.getLogger(__name__)`` in two apps' ``config`` modules would be
   one logger, and a handler one app adds would receive the other's
   records. Inside an app, a logger named after one of its private modules
   comes from the app's own ``logging.Manager`` (under the shared root, so
   records still propagate to the server's handlers).

5. **importlib's module locks are keyed by module name for the process**,
   so two apps importing their own ``x`` and ``y`` in opposite orders looked
   like an import cycle (``_DeadlockError``). A private module's lock is its
   app's own (the process layer, ``process.py``, wraps
   ``_bootstrap._get_module_lock`` for that: the lock table is the one piece
   of the import system not reached through ``sys.modules``).

6. **A C extension cannot be loaded twice** (single-phase init modules share
   one state), so a package with C extensions in ``isolate`` is refused with
   an :class:`ImportError` when the app loads (:class:`IsolateGuard`).

7. **Inside an app, ``sys.modules`` is a dict for every purpose** that
   importlib and libraries use: a ``None`` entry blocks an import (defusedxml
   blocks ``_elementtree`` that way to get the pure-Python parser); ``in``,
   ``get``, ``pop``, ``setdefault``, ``del``, ``update`` and ``|=`` treat
   ``None`` as an entry; iteration, ``keys()``, ``items()``, ``values()``
   and ``copy()`` work on a snapshot, so a thread that imports meanwhile
   never makes them fail. A private name's entry (``None`` included) is
   the app's own; a shared name's entry is the process's, as in plain
   Python, so that C code sees a shared block too. Iteration order is the
   real dict's, not the order of the app's own insertions.

8. **What ``isolate`` cannot fix by itself is reported at load**
   (:meth:`Namespace.load_report`): a *shared* package that imports a
   package the app isolates binds, at its import, one app's copy (a Django
   add-on installed once, under two Django projects with ``isolate =
   ["django"]``: its middleware holds the first project's ``settings``).
   After the load, every shared module the app used is scanned for objects
   of an isolated package, and the app's status says ``add "whitenoise" to
   isolate``. Likewise an isolated package whose optional C speedups were
   refused (markupsafe, PyYAML) is reported, since it runs slower.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import importlib.machinery
import importlib.util
import logging
import os
import sys
import threading
import types
import weakref
from collections.abc import ItemsView, Iterator, KeysView, MutableMapping, ValuesView
from types import ModuleType
from typing import Any

from . import binding as _binding

__all__ = ["Namespace", "Alias", "IsolateGuard", "new", "real_modules"]

#: The interpreter's own ``sys.modules`` dict.
real_modules: dict[str, ModuleType] = sys.__dict__["modules"]

_bootstrap: Any = importlib._bootstrap  # type: ignore[attr-defined]


class Alias(ModuleType):
    """What the real ``sys.modules`` holds for a name private to some app.

    Every attribute — read, written or deleted — is the current app's
    module's of that name (or the shared module's of the same name outside
    apps and in apps without one). Only C code and shared code that imports
    a private name see an alias; code of the app itself gets its real
    modules. The alias's own state lives in its ``__dict__``, read with
    :func:`_own` (``__getattribute__`` forwards everything else).
    """

    def __init__(self, name: str, shared: ModuleType | None) -> None:
        super().__init__(name, f"ctxserve alias of the app-private module {name!r}")
        _own(self)["__ctxserve_shared__"] = shared

    def __getattribute__(self, attribute: str) -> Any:
        return getattr(_target(self, attribute), attribute)

    def __setattr__(self, attribute: str, value: Any) -> None:
        setattr(_target(self, attribute), attribute, value)

    def __delattr__(self, attribute: str) -> None:
        delattr(_target(self, attribute), attribute)

    def __dir__(self) -> list[str]:
        return dir(_target(self, "__dir__"))

    def __repr__(self) -> str:
        return f"<ctxserve alias of module {_own(self)['__name__']!r}>"


def _own(alias: Alias) -> dict[str, Any]:
    """The alias's own ``__dict__`` (its name and shared module)."""
    return ModuleType.__getattribute__(alias, "__dict__")  # type: ignore[no-any-return]


def _target(alias: Alias, attribute: str) -> ModuleType:
    """The module an alias stands for in the current context."""
    own = _own(alias)
    b = _binding.current.get()
    if b is not None and b.modules is not None:
        module = b.modules.lookup(own["__name__"])
    else:
        module = own["__ctxserve_shared__"] or _import_shared(alias)
    if module is None:
        # An AttributeError, so that getattr(m, name, default) and hasattr()
        # work for code that scans sys.modules outside apps (gunicorn's
        # reloader, hypothesis, inspect).
        where = f"app {b.name!r}" if b is not None else "the server (outside every app)"
        raise AttributeError(f"No module named {own['__name__']!r} in {where}; "
                             f"no attribute {attribute!r}", name=attribute, obj=alias)
    return module


_shared_lock = threading.RLock()


def _import_shared(alias: Alias) -> ModuleType | None:
    """Outside every app, import the shared module an alias stands in front of.

    The import statement's C fast path finds the alias in the real
    ``sys.modules`` and never reaches importlib, so the server's own module
    of that name (if there is one) is imported here, on first use, and
    becomes the alias's shared module.
    """
    own = _own(alias)
    name = own["__name__"]
    with _shared_lock:
        shared = own["__ctxserve_shared__"]
        if shared is not None:
            return shared  # type: ignore[no-any-return]
        parent = name.rpartition(".")[0]
        path = getattr(real_modules.get(parent), "__path__", None) if parent else None
        spec = _bootstrap._find_spec(name, path)
        if spec is None:
            return None
        module = importlib.util.module_from_spec(spec)
        own["__ctxserve_shared__"] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            own["__ctxserve_shared__"] = None
            raise
        return module


class Namespace(MutableMapping[str, ModuleType]):
    """One app's module table: what ``sys.modules`` is inside the app.

    Private modules live in :attr:`modules`; every other name passes
    through to the real ``sys.modules``. Whether a name is private is
    decided once per top-level name (:meth:`is_private`) and kept until
    ``importlib.invalidate_caches()``.
    """

    def __init__(self, app: str, isolate: tuple[str, ...] = (), own_path: tuple[str, ...] = (),
                 shared_path: tuple[str, ...] = ()) -> None:
        self.app = app
        self.isolate = frozenset(isolate)
        own = {_real(entry) for entry in own_path}
        _app_directories.update(own)
        #: The process's path entries, less the app's own: a directory of the
        #: app's that is also on the process's path (PYTHONPATH, the current
        #: directory of ``python -m``, gunicorn's chdir) is still the app's.
        self.shared_path = frozenset(_real(entry) for entry in shared_path) - own
        self.modules: dict[str, ModuleType] = {}
        self._private: dict[str, bool] = {}
        self._lock = threading.Lock()
        #: The builtins of this app's private modules (see point 3 above).
        self.builtins: dict[str, Any] = {**builtins.__dict__, "__import__": self.import_}
        self.binding: _binding.Binding | None = None
        self._loggers: logging.Manager | None = None
        self._module_locks: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
        #: C extensions of isolated packages refused by :class:`IsolateGuard`.
        self.refused: list[str] = []
        #: Shared names this app looked up, while :meth:`load_report` watches.
        self.recording: set[str] | None = None

    def logger(self, name: str) -> logging.Logger:
        """This app's own logger for a private module name (see point 4)."""
        if self._loggers is None:
            with self._lock:
                if self._loggers is None:
                    self._loggers = logging.Manager(logging.root)
        return self._loggers.getLogger(name)

    # -- privacy ------------------------------------------------------------

    def is_private(self, name: str) -> bool:
        top = name.partition(".")[0]
        private = self._private.get(top)
        if private is None:
            private = self._decide(top)
        return private

    def _decide(self, top: str) -> bool:
        present = real_modules.get(top)
        if top in self.isolate:
            private = True
        elif present is not None and type(present) is not Alias and not _from_app_directory(present):
            # Already imported, shared: as in plain Python, a module in
            # sys.modules is the one an import gets, whatever the path holds
            # (an app's own calendar.py does not replace the stdlib's). Not
            # so for a module another app's directory gave the process (on
            # PYTHONPATH): this app in a process of its own would not have it.
            private = False
        else:
            own = [entry for entry in self._path() if _real(entry) not in self.shared_path]
            private = bool(own) and importlib.machinery.PathFinder.find_spec(top, own) is not None
            # "Not private" is kept only for a name that exists as a shared
            # module: a name found nowhere yet may appear on a path entry the
            # app adds next (``except ImportError: sys.path.insert(...)``).
            if not private and not _is_shared(top):
                return False
        with self._lock:
            self._private[top] = private
        return private

    def module_lock(self, name: str) -> Any:
        """importlib's lock for a private module, this app's own (see point 6)."""
        with self._lock:
            lock = self._module_locks.get(name)
            if lock is None:
                lock = self._module_locks[name] = _bootstrap._ModuleLock(name)
            return lock

    def _path(self) -> list[str]:
        b = _binding.current.get()
        if b is not None and b.modules is self:
            return b.path
        return self.binding.path if self.binding is not None else []

    def invalidate(self) -> None:
        with self._lock:
            self._private.clear()

    # -- what an app's load reveals ---------------------------------------------

    @contextlib.contextmanager
    def load_report(self) -> Iterator[list[str]]:
        """Watch the app's load; on exit the list holds what the user must be told.

        Two things an ``isolate`` list can get silently wrong (point 8 above):
        a shared package that imported an isolated one holds one app's copy
        of it, and an isolated package whose optional C speedups were refused
        runs on its pure-Python fallback. Each line ends with the fix.
        """
        report: list[str] = []
        before = set(real_modules)
        self.recording, self.refused = set(), []
        try:
            yield report
        finally:
            looked_up, self.recording = self.recording, None
            report.extend(self._dropped_speedups())
            report.extend(self._shared_holders(looked_up | (set(real_modules) - before)))

    def _dropped_speedups(self) -> list[str]:
        by_package: dict[str, list[str]] = {}
        for name in self.refused:
            by_package.setdefault(name.partition(".")[0], []).append(name)
        return [f"apps.{self.app}.isolate: {top!r} runs without its C extension "
                f"{', '.join(sorted(set(names)))} (a C extension cannot be loaded as a private "
                f"copy; the package fell back to pure Python) — remove {top!r} from isolate "
                f"to share it with its C speedups" for top, names in sorted(by_package.items())]

    def _shared_holders(self, names: set[str]) -> list[str]:
        """Shared packages among *names* that hold objects of a package this app isolates."""
        if not self.isolate:
            return []
        held: dict[str, dict[str, set[str]]] = {}  # shared top -> isolated top -> "module: names"
        for name in sorted(names):
            module = real_modules.get(name)
            top = name.partition(".")[0]
            if type(module) is Alias or not isinstance(module, ModuleType) or \
                    top in self.isolate or top == __package__:
                continue
            for attribute, value in list(_own(module).items()):
                origin = _origin(value)
                if origin in self.isolate:
                    held.setdefault(top, {}).setdefault(origin, set()).add(f"{name}.{attribute}")
        return [f"apps.{self.app}.isolate: shared package {top!r} imported {isolated!r}, which this "
                f"app isolates, and holds one app's copy of it ({', '.join(sorted(where)[:3])}"
                f"{', ...' if len(where) > 3 else ''}): other apps would use that copy — "
                f"add {top!r} to isolate"
                for top, by_isolated in sorted(held.items())
                for isolated, where in sorted(by_isolated.items())]

    # -- the mapping (sys.modules inside the app) ----------------------------

    def lookup(self, name: str) -> ModuleType | None:
        """This app's module *name*, private or shared, or ``None``
        (absent, or blocked by a ``None`` entry)."""
        module = self.modules.get(name, _ABSENT)
        if module is not _ABSENT:
            return module  # type: ignore[return-value]
        if self.is_private(name):
            return None
        if self.recording is not None:
            self.recording.add(name)
        module = real_modules.get(name)
        if type(module) is Alias:
            return _own(module)["__ctxserve_shared__"]  # type: ignore[no-any-return,arg-type]
        return module

    def _find(self, name: Any) -> Any:
        """The entry for *name* as a dict would hold it: a module, ``None``
        (an import blocked, as ``sys.modules[name] = None`` does), any
        other object a library put there, or :data:`_ABSENT`."""
        if type(name) is not str:
            return real_modules.get(name, _ABSENT)  # never private: names are strings
        module = self.modules.get(name, _ABSENT)
        if module is not _ABSENT or self.is_private(name):
            return module
        if self.recording is not None:
            self.recording.add(name)
        module = real_modules.get(name, _ABSENT)
        if type(module) is Alias:
            shared = _own(module)["__ctxserve_shared__"]
            return _ABSENT if shared is None else shared
        return module

    def __getitem__(self, name: str) -> ModuleType:
        module = self._find(name)
        if module is _ABSENT:
            raise KeyError(name)
        return module  # type: ignore[no-any-return]

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        module = self._find(name)
        return default if module is _ABSENT else module

    def __contains__(self, name: object) -> bool:
        return self._find(name) is not _ABSENT

    def __setitem__(self, name: str, module: ModuleType) -> None:
        if type(name) is str and self.is_private(name):
            if isinstance(module, ModuleType) and \
                    module.__dict__.get("__builtins__") in (None, builtins, builtins.__dict__):
                module.__dict__["__builtins__"] = self.builtins
            self.modules[name] = module
            present = real_modules.get(name)
            # A None entry only blocks this app's imports, which all reach
            # this table: it needs no alias for C code to find.
            if module is not None and type(present) is not Alias:
                real_modules[name] = Alias(name, present)
            return
        # A shared name is one entry for the whole process, as in plain
        # Python: None included, so that C code (the import statement's fast
        # path in shared modules) sees the block too.
        present = real_modules.get(name)
        if type(present) is Alias:
            _own(present)["__ctxserve_shared__"] = module
        else:
            real_modules[name] = module

    def __delitem__(self, name: str) -> None:
        if type(name) is str and self.is_private(name):
            del self.modules[name]
            return
        present = real_modules.get(name)
        if type(present) is Alias:
            if _own(present)["__ctxserve_shared__"] is None:
                raise KeyError(name)
            _own(present)["__ctxserve_shared__"] = None
        else:
            del real_modules[name]

    def copy(self) -> dict[str, ModuleType]:
        """A snapshot, taken as ``dict.copy()`` takes one: never a KeyError
        because another thread imported or removed a module meanwhile."""
        own = dict(self.modules)
        snapshot: dict[str, Any] = {}
        for name, module in list(real_modules.items()):
            if type(name) is str and (name in own or self.is_private(name)):
                if name in own:
                    snapshot[name] = own.pop(name)
                continue
            if type(module) is Alias:
                module = _own(module)["__ctxserve_shared__"]
                if module is None:
                    continue
            snapshot[name] = module
        snapshot.update(own)  # private None entries have no alias
        return snapshot

    # Iteration and the views work on a snapshot, as ``list(sys.modules)``
    # on a dict does: importing never changes what an iteration yields.
    def __iter__(self) -> Iterator[str]:
        return iter(self.copy())

    def __len__(self) -> int:
        return len(self.copy())

    def keys(self) -> KeysView[str]:
        return _Keys(self)

    def items(self) -> ItemsView[str, ModuleType]:
        return _Items(self)

    def values(self) -> ValuesView[ModuleType]:
        return _Values(self)

    def __or__(self, other: Any) -> dict[str, Any]:
        return self.copy() | other

    def __ror__(self, other: Any) -> dict[str, Any]:
        return other | self.copy()  # type: ignore[no-any-return]

    def __ior__(self, other: Any) -> Namespace:
        self.update(other)
        return self

    __eq__ = object.__eq__  # one namespace per app: identity, and hashable
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<ctxserve namespace of app {self.app!r}: {len(self.modules)} private modules>"

    # -- the import statement in private modules -------------------------------

    def import_(self, name: str, globals: dict[str, Any] | None = None, locals: Any = None,
                fromlist: Any = (), level: int = 0) -> ModuleType:
        """``__import__`` for this app's private modules.

        The common cases — ``import x``, ``import x.y``, ``from x import y``,
        ``from . import y`` of modules the app already has — are dict
        lookups, as in CPython's C fast path. Anything else runs the
        standard import protocol (``importlib._bootstrap.__import__``) in
        this app's context, where ``sys.modules`` is this namespace.
        """
        if level == 0:
            module = self.modules.get(name) or self.lookup(name)
        else:
            package = globals.get("__package__") if globals else None
            absolute = _resolve(name, package, level) if package else None
            module = self.lookup(absolute) if absolute else None
        # Only dict lookups below: hasattr() on a module that lacks the
        # attribute builds an AttributeError, which costs more than the rest.
        attributes = getattr(module, "__dict__", None)
        if type(attributes) is dict and getattr(
                attributes.get("__spec__"), "__dict__", _NOTHING).get("_initializing") is not True:
            if not fromlist:
                if "." not in name:
                    return module  # type: ignore[return-value]
                if level == 0:
                    top = self.lookup(name.partition(".")[0])
                    if top is not None:
                        return top
            elif "__path__" not in attributes or all(
                    x != "*" and x in attributes for x in fromlist):
                return module  # type: ignore[return-value]
        b = _binding.current.get()
        if b is not None and b.modules is self:
            return _bootstrap.__import__(name, globals, locals, fromlist, level)  # type: ignore[no-any-return]
        if self.binding is None:
            raise ImportError(f"app {self.app!r} is not loaded")
        # A private module's code running outside its app (a finalizer, a
        # callback from another app): import on behalf of the module's own app.
        return _binding.context_for(self.binding).run(  # type: ignore[no-any-return]
            _bootstrap.__import__, name, globals, locals, fromlist, level)


def _is_shared(top: str) -> bool:
    present = real_modules.get(top)
    if present is not None:
        return type(present) is not Alias or _own(present)["__ctxserve_shared__"] is not None
    return top in sys.builtin_module_names or \
        importlib.machinery.PathFinder.find_spec(top, _binding_plain_path()) is not None


def _origin(value: Any) -> str | None:
    """The top-level package *value* comes from: a module's, a class's or
    function's ``__module__``, else its type's. Only ``type()`` and dict
    reads: a lazy proxy (Django's settings, werkzeug's LocalProxy) must not
    be evaluated."""
    kind = type(value)
    if issubclass(kind, ModuleType):
        name = _own(value).get("__name__")  # type: ignore[arg-type]
    elif issubclass(kind, type) or kind is types.FunctionType:
        name = value.__dict__.get("__module__") if kind is not types.FunctionType else value.__module__
    else:
        name = kind.__dict__.get("__module__")
    return name.partition(".")[0] if isinstance(name, str) else None


#: Every app's own ``path`` directories (real paths), in every namespace.
_app_directories: set[str] = set()


def _real(entry: str) -> str:
    """A path entry as a directory (``""`` is the current directory)."""
    return os.path.realpath(entry or os.curdir)


def _from_app_directory(module: ModuleType) -> bool:
    """Whether *module* was loaded from some app's own directory."""
    file = getattr(module, "__file__", None)
    if not isinstance(file, str) or not _app_directories:
        return False
    directory = os.path.dirname(os.path.realpath(file))
    return any(directory == d or directory.startswith(d + os.sep) for d in _app_directories)


def _binding_plain_path() -> list[str]:
    return _binding.server.path


def _resolve(name: str, package: str, level: int) -> str | None:
    bits = package.rsplit(".", level - 1)
    if len(bits) < level:
        return None  # beyond the top-level package: let importlib raise
    return f"{bits[0]}.{name}" if name else bits[0]


#: What :meth:`Namespace._find` returns for a name with no entry (``None``
#: is an entry: a blocked import).
_ABSENT: Any = object()


class _Keys(KeysView[str]):
    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping.copy())  # type: ignore[attr-defined]


class _Items(ItemsView[str, ModuleType]):
    def __iter__(self) -> Iterator[tuple[str, ModuleType]]:
        return iter(self._mapping.copy().items())  # type: ignore[attr-defined]


class _Values(ValuesView[ModuleType]):
    def __iter__(self) -> Iterator[ModuleType]:
        return iter(self._mapping.copy().values())  # type: ignore[attr-defined]


#: ``spec.__dict__`` of a module without a spec: ``_initializing`` is True
#: while another thread is still executing a module's body.
_NOTHING: dict[str, Any] = {}


class IsolateGuard:
    """A meta-path finder that refuses C extensions inside ``isolate`` packages.

    It never finds anything itself (it returns ``None`` so the usual finders
    go on); it exists to fail early and clearly, before the extension's
    initialisation runs, and to hear ``importlib.invalidate_caches()``.
    """

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> None:
        b = _binding.current.get()
        if b is None or b.modules is None or name.partition(".")[0] not in b.modules.isolate:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            top = name.partition(".")[0]
            b.modules.refused.append(name)  # reported if the package falls back (see load_report)
            raise ImportError(
                f"apps.{b.name}.isolate: {name!r} is a C extension module ({spec.origin}); "
                f"a C extension cannot be loaded as a private copy, so package {top!r} "
                f"cannot be isolated — remove {top!r} from isolate to share it", name=name)
        return None

    @staticmethod
    def invalidate_caches() -> None:
        for namespace in list(_namespaces):
            namespace.invalidate()


_namespaces: weakref.WeakSet[Namespace] = weakref.WeakSet()


def new(app: str, isolate: tuple[str, ...], own_path: tuple[str, ...],
        shared_path: tuple[str, ...]) -> Namespace:
    namespace = Namespace(app, isolate, own_path, shared_path)
    _namespaces.add(namespace)
    return namespace
