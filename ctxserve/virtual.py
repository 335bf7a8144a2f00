"""Put ctxserve's stand-ins in place of the process globals, once per process.

``sys`` gets a ``types.ModuleType`` subclass whose data descriptors answer
``sys.stdout``, ``sys.stderr``, ``sys.stdin``, ``sys.argv`` and ``sys.path``
from the current app's binding. A data descriptor on the module's type is
found before the module's ``__dict__``, so Python code sees the app's value
while C code — which reads ``sys.__dict__`` directly (``print``,
``PySys_GetObject``) — sees the :class:`~ctxserve.streams.StreamProxy`
that forwards to the same place. Outside every app each attribute reads
and assigns exactly as in plain Python.

``os.environ``/``os.environb`` become views (``environ.py``), and
``subprocess.Popen`` passes the app's environment to a child started with
``env=None``: the child would otherwise inherit the real environment, which
never holds an app's values.
"""

from __future__ import annotations

import functools
import inspect
import os
import subprocess
import sys
import threading
import types
from typing import Any

from . import binding as _binding
from . import environ as _environ
from . import streams as _streams

__all__ = ["install"]

_STREAMS = ("stdout", "stderr", "stdin")
_LISTS = ("argv", "path", "modules")


class _SysAttribute:
    """``sys.<name>``: the current app's value, or the plain one outside apps."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, module: Any, owner: Any = None) -> Any:
        if module is None:
            return self
        b = _binding.current.get()
        return _streams.plain[self.name] if b is None else getattr(b, self.name)

    def __set__(self, module: Any, value: Any) -> None:
        b = _binding.current.get()
        if b is None:
            _streams.plain[self.name] = value
            if self.name in _LISTS:  # C code reads these from sys.__dict__
                module.__dict__[self.name] = value
        elif isinstance(value, _streams.StreamProxy):  # redirect_stdout restoring
            _binding.current.set(b.replace(**{self.name: value._target()}))
        else:
            _binding.current.set(b.replace(**{self.name: value}))

    def __delete__(self, module: Any) -> None:
        raise AttributeError(f"ctxserve keeps sys.{self.name}; assign it instead")


class _Sys(types.ModuleType):
    """The class ``sys`` gets: one descriptor per virtualized attribute.

    importlib creates every new module as ``type(sys)(name)``: calling this
    class makes a plain ``ModuleType``, so no other module gets these
    descriptors (``from django.urls import path`` stays Django's ``path``)
    and no other module pays for them.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> types.ModuleType:  # type: ignore[misc]
        return types.ModuleType(*args, **kwargs)

    stdout = _SysAttribute("stdout")
    stderr = _SysAttribute("stderr")
    stdin = _SysAttribute("stdin")
    argv = _SysAttribute("argv")
    path = _SysAttribute("path")
    modules = _SysAttribute("modules")  # an app's Namespace (namespaces.py)


_lock = threading.Lock()
_installed = False


def install() -> None:
    """Install every stand-in; idempotent and thread-safe."""
    global _installed
    with _lock:
        if _installed:
            return
        for name in _STREAMS + _LISTS:
            _streams.plain[name] = sys.__dict__[name]
        for name in _STREAMS:
            sys.__dict__[name] = _streams.StreamProxy(name)
        sys.__class__ = _Sys
        os.environ = _environ.EnvironView()  # type: ignore[assignment]
        if hasattr(os, "environb"):
            os.environb = _environ.EnvironbView()  # type: ignore[assignment]
        _patch_popen()
        _patch_system()
        _installed = True
    _binding.install_propagation()


def _patch_popen() -> None:
    original = subprocess.Popen.__init__
    signature = inspect.signature(original)

    @functools.wraps(original)
    def __init__(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        if _binding.current.get() is not None:
            bound = signature.bind(self, *args, **kwargs)
            bound.arguments["env"] = _environ.subprocess_env(bound.arguments.get("env"))
            args, kwargs = bound.args[1:], bound.kwargs
        original(self, *args, **kwargs)

    subprocess.Popen.__init__ = __init__  # type: ignore[method-assign]


def _patch_system() -> None:
    """``os.system`` inside an app: the same shell command, with the app's environment.

    C's ``system(3)`` passes the real process environment, which never
    holds an app's values; inside an app the command runs through
    ``subprocess`` (which gets the app's view) and the result is encoded as
    ``os.system`` encodes it, a wait status.
    """
    original = os.system

    @functools.wraps(original)
    def system(command: Any) -> int:
        if _binding.current.get() is None:
            return original(command)
        code = subprocess.call(os.fsdecode(command), shell=True)
        return code << 8 if code >= 0 else -code

    os.system = system
