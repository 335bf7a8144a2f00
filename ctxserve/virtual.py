"""``sys``'s stand-in attributes: the current app's value, or the server's outside apps.

The process layer (``process.py``) gives ``sys`` the class :class:`SysModule`,
a ``types.ModuleType`` subclass whose data descriptors answer
``sys.stdout``, ``sys.stderr``, ``sys.stdin``, ``sys.argv``, ``sys.path`` and
``sys.modules`` from the current app's binding. A data descriptor on the
module's type is found before the module's ``__dict__``, so Python code
sees the app's value while C code — which reads ``sys.__dict__`` directly
(``print``, ``PySys_GetObject``) — sees the
:class:`~ctxserve.streams.StreamProxy` that forwards to the same place.
Outside every app each attribute reads and assigns the server's binding
(``binding.server``), exactly as plain Python would.
"""

from __future__ import annotations

from typing import Any
import sys
import types

from . import binding as _binding
from . import globals as _globals
from . import streams as _streams

__all__ = ["STREAMS", "LISTS", "SysAttribute", "SysModule"]

#: The ``sys`` attributes whose ``sys.__dict__`` entry is a stream proxy.
STREAMS = ("stdout", "stderr", "stdin")
#: The ``sys`` attributes whose ``sys.__dict__`` entry stays the server's own
#: object: C code reads them from there (the import system, ``PySys_GetObject``).
LISTS = ("argv", "path", "modules")

_server = _binding.server


class SysAttribute:
    """``sys.<name>``: the current app's value, or the server's outside apps."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, module: Any, owner: Any = None) -> Any:
        if module is None:
            return self
        return getattr(_binding.current.get() or _server, self.name)

    def __set__(self, module: Any, value: Any) -> None:
        b = _binding.current.get()
        if b is None:
            setattr(_server, self.name, value)
            if self.name in LISTS:  # C code reads these from sys.__dict__
                module.__dict__[self.name] = value
        else:  # redirect_stdout restoring a proxy restores what it stands for
            _binding.current.set(b.replace(**{self.name: _streams.resolve(value)}))

    def __delete__(self, module: Any) -> None:
        raise AttributeError(f"ctxserve keeps sys.{self.name}; assign it instead")


class SysModule(types.ModuleType):
    """The class ``sys`` gets: one descriptor per virtualized attribute.

    importlib creates every new module as ``type(sys)(name)``: calling this
    class makes a plain ``ModuleType``, so no other module gets these
    descriptors (``from django.urls import path`` stays Django's ``path``)
    and no other module pays for them.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> types.ModuleType:  # type: ignore[misc]
        return types.ModuleType(*args, **kwargs)

    stdout = SysAttribute("stdout")
    stderr = SysAttribute("stderr")
    stdin = SysAttribute("stdin")
    argv = SysAttribute("argv")
    path = SysAttribute("path")
    modules = SysAttribute("modules")  # an app's Namespace (namespaces.py)
    # The app's own; C reads sys.__dict__["excepthook"] (the server's) for
    # the main thread's uncaught exceptions, which are the server's.
    excepthook = _globals.ModuleAttribute("sys", "excepthook", lambda server: sys.__excepthook__)
