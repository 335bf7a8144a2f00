"""Guarded process globals: what Python cannot give each app, watched instead.

The current directory, the umask, the locale, signal handlers... exist once
per process (or per interpreter), so ctxserve cannot give each app its
own. :data:`GUARDED` declares each of them: how to *read* it (a comparable
value) and which functions change it. The process layer's table
(``process.py``) has one "guarded" row for each, installed by
:func:`install`. A change an app makes is seen two ways:

* the functions are wrapped, so a call made in an app's context (while it
  loads or in a request) that changes the value is recorded against that
  app — which costs nothing for requests that do not call them;
* every readable global is read before and after each app's load
  (:func:`snapshot`, :func:`changed_since`), which catches a change made
  by code that bypassed the wrappers (C code, a function reference taken
  before ctxserve was installed).

Each change is logged once per app and global (logger
``ctxserve.globals``, one line naming the app and the global) and kept in
the app's binding (:func:`changes`), which the app table, ``ctxserve
check`` and the admin ``/status`` show. With ``globals = "fail"`` a change
made while the app loads fails its load (``apps.py``).
"""

from __future__ import annotations

import _signal
import contextvars
import functools
import gc
import importlib
import locale
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import binding as _binding

__all__ = ["GUARDED", "Guarded", "changes", "changed_since", "install", "record", "snapshot", "watched"]


@dataclass(frozen=True)
class Guarded:
    """One guarded global: its name, why it is one per process, how to read it,
    and the ``"module.function"`` names that change it (wrapped by :func:`install`).
    ``read`` is None when the value cannot be read: then every call is a change."""

    name: str
    why: str
    read: Callable[[], Any] | None
    calls: tuple[str, ...] = ()


# -- reading the guarded globals ---------------------------------------------

def _umask() -> str | None:
    """The umask without changing it (Linux: /proc), else None (not watched)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return line.split()[1]
    except OSError:
        pass
    return None


#: ``locale.setlocale`` itself, for queries: the module's name becomes the watching wrapper.
_setlocale = locale.setlocale


def _locale() -> str:
    return _setlocale(locale.LC_ALL)


def _signals() -> dict[int, Any]:
    """Every signal's handler, by number. ``_signal``'s own ``getsignal``: the
    ``signal`` module's wraps each answer in an enum, 40x slower for 64 signals."""
    handlers = {}
    for number in range(1, signal.NSIG):
        try:
            handlers[number] = _signal.getsignal(number)
        except (ValueError, OSError):
            pass
    return handlers


def _meta_path() -> tuple[int, ...]:
    return tuple(id(finder) for finder in sys.meta_path) + (-1,) + tuple(map(id, sys.path_hooks))


def _faulthandler() -> bool:
    import faulthandler
    return faulthandler.is_enabled()


GUARDED: tuple[Guarded, ...] = (
    Guarded("current directory", "the kernel keeps one per process", os.getcwd, ("os.chdir", "os.fchdir")),
    Guarded("umask", "the kernel keeps one per process", _umask, ("os.umask",)),
    Guarded("locale", "the C library keeps one per process", _locale, ("locale.setlocale",)),
    Guarded("signal handlers", "the kernel keeps one set per process", _signals, ("signal.signal",)),
    Guarded("time zone (TZ and time.tzset)", "the C library keeps one per process; an app's TZ in its "
            "environ does not reach C's localtime", lambda: (time.tzname, time.timezone), ("time.tzset",)),
    Guarded("recursion limit", "one per interpreter", sys.getrecursionlimit, ("sys.setrecursionlimit",)),
    Guarded("thread switch interval", "one per interpreter", sys.getswitchinterval,
            ("sys.setswitchinterval",)),
    Guarded("int max str digits", "one per interpreter", sys.get_int_max_str_digits,
            ("sys.set_int_max_str_digits",)),
    Guarded("garbage collector", "one per interpreter", lambda: (gc.isenabled(), gc.get_threshold()),
            ("gc.disable", "gc.enable", "gc.set_threshold")),
    Guarded("import hooks (sys.meta_path and sys.path_hooks)",
            "one import system per interpreter: an app's finder would see every app's imports", _meta_path),
    Guarded("faulthandler", "one per process", _faulthandler, ("faulthandler.enable", "faulthandler.disable")),
    Guarded("C-level environment (os.putenv and os.unsetenv)", "the C library's environment is the "
            "process's: SSL_CERT_FILE, TZ, ... set there reach every app's C code", None,
            ("os.putenv", "os.unsetenv")),
)

# -- detecting changes --------------------------------------------------------

_log = logging.getLogger("ctxserve.globals")


def watched(guarded: Guarded) -> str:
    """How ctxserve watches *guarded*, for the process layer's table."""
    calls = ", ".join(f"`{c}`" for c in guarded.calls)
    how = ["read before and after each app loads"] if guarded.read is not None else []
    if calls:
        how.append(f"a change made by {calls} in an app is recorded")
    return "; ".join(how) + "; reported naming the app"


def snapshot() -> dict[str, Any]:
    """The current value of every guarded global that can be read."""
    return {g.name: g.read() for g in GUARDED if g.read is not None}


def changes(binding: _binding.Binding) -> dict[str, str]:
    """The guarded globals the app of *binding* changed: name -> what changed."""
    return binding.state.get("guarded", {})  # type: ignore[no-any-return]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(name: str, before: Any, after: Any) -> str:
    if isinstance(before, dict) and isinstance(after, dict):
        keys = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        if name == "signal handlers":
            keys = [signal.Signals(k).name if k in signal.Signals._value2member_map_ else k for k in keys]
        return "changed: " + ", ".join(map(str, keys))
    if name == "import hooks (sys.meta_path and sys.path_hooks)":
        return "finders or path hooks added or removed"
    return f"{_show(before)} -> {_show(after)}"


def record(binding: _binding.Binding, name: str, change: str) -> None:
    """Record (and log, once per app and global) that the app changed *name*."""
    found = binding.state.setdefault("guarded", {})
    if name not in found:  # the first change is the one reported
        found[name] = change
        contextvars.Context().run(
            _log.warning, 'ctxserve: app "%s" changed the process-wide %s (%s); every app in this '
            'process shares it. Leave it unchanged in the app, or run the app in a process of its own '
            '(globals = "fail" refuses such a change at load)', binding.name, name, change)


def changed_since(binding: _binding.Binding, before: dict[str, Any]) -> dict[str, str]:
    """Record what differs from *before* (a :func:`snapshot`); return every change of the app."""
    after = snapshot()
    for name, value in before.items():
        if after.get(name) != value and name not in changes(binding):
            record(binding, name, _describe(name, value, after.get(name)))
    return changes(binding)


def _wrap(guarded: Guarded, qualified: str) -> None:
    module_name, _, function = qualified.rpartition(".")
    module = importlib.import_module(module_name)
    original = getattr(module, function, None)
    if original is None:
        return
    read = guarded.read

    @functools.wraps(original)
    def call(*args: Any, **kwargs: Any) -> Any:
        b = _binding.current.get()
        if b is None:
            return original(*args, **kwargs)
        if read is None:
            record(b, guarded.name, f"{qualified}{_show(args)}")
            return original(*args, **kwargs)
        before = read()
        try:
            return original(*args, **kwargs)
        finally:
            after = read()
            if after != before:
                record(b, guarded.name, f"{qualified}: {_describe(guarded.name, before, after)}")

    setattr(module, function, call)


def install() -> None:
    """Wrap every function that changes a guarded global (the process layer runs it once)."""
    for guarded in GUARDED:
        for qualified in guarded.calls:
            _wrap(guarded, qualified)
