"""``os.environ`` and ``os.environb`` as views of the current app's environment.

An app's environment is a plain ``dict`` built once, at load: the process
environment it inherits (per ``inherit_environ``) plus its own ``environ``
table. Its writes and deletes change that dict only — never the real
process environment (``putenv``), so no other app, and no C library, sees
them. Outside every app the views forward to the real ``os.environ``, so the
server and everything else behave as plain Python.

``os.getenv`` and ``os.getenvb`` look up the module globals ``environ`` and
``environb`` when called, so replacing those two names is enough for them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from . import binding as _binding

__all__ = ["EnvironView", "EnvironbView", "real_environ", "real_environb", "app_environ", "subprocess_env"]

#: The real ``os.environ`` (an ``os._Environ``), captured before it is replaced.
real_environ: MutableMapping[str, str] = os.environ
real_environb: MutableMapping[bytes, bytes] | None = getattr(os, "environb", None)


def app_environ(own: Mapping[str, str], inherit: bool | tuple[str, ...]) -> dict[str, str]:
    """The environment an app starts with: inherited names, then its own table."""
    if inherit is True:
        env = dict(real_environ)
    elif inherit is False:
        env = {}
    else:
        env = {k: real_environ[k] for k in inherit if k in real_environ}
    env.update(own)
    return env


def _check(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"str expected, not {type(value).__name__}")
    if "\0" in value:
        raise ValueError(f"embedded null byte in environment {what}")
    return value


class EnvironView(MutableMapping[str, str]):
    """What ``os.environ`` is once ctxserve is installed.

    ``MutableMapping`` supplies ``keys``/``items``/``values``, ``pop``,
    ``update``, ``setdefault``, ``clear`` and equality from the five core
    methods, so the view is complete by its base class.
    """

    __slots__ = ()

    @staticmethod
    def _target() -> MutableMapping[str, str]:
        b = _binding.current.get()
        return real_environ if b is None else b.environ

    def __getitem__(self, key: str) -> str:
        b = _binding.current.get()
        return (real_environ if b is None else b.environ)[key]

    def get(self, key: str, default: Any = None) -> Any:
        b = _binding.current.get()
        return (real_environ if b is None else b.environ).get(key, default)

    def __contains__(self, key: object) -> bool:
        b = _binding.current.get()
        return key in (real_environ if b is None else b.environ)

    def __setitem__(self, key: str, value: str) -> None:
        b = _binding.current.get()
        if b is None:
            real_environ[key] = value
        else:
            b.environ[_check(key, "name")] = _check(value, "value")

    def __delitem__(self, key: str) -> None:
        del self._target()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._target()))

    def __len__(self) -> int:
        return len(self._target())

    def copy(self) -> dict[str, str]:
        return dict(self._target())

    def __repr__(self) -> str:
        return f"environ({dict(self._target())!r})"

    def __or__(self, other: Any) -> dict[str, str]:
        if not isinstance(other, Mapping):
            return NotImplemented
        return self.copy() | dict(other)

    def __ror__(self, other: Any) -> dict[str, str]:
        if not isinstance(other, Mapping):
            return NotImplemented
        return dict(other) | self.copy()

    def __ior__(self, other: Any) -> EnvironView:
        self.update(other)
        return self


class EnvironbView(MutableMapping[bytes, bytes]):
    """What ``os.environb`` is: the same environment, in bytes."""

    __slots__ = ()

    def __getitem__(self, key: bytes) -> bytes:
        b = _binding.current.get()
        if b is None:
            return real_environb[key]  # type: ignore[index]
        return os.fsencode(b.environ[os.fsdecode(key)])

    def __setitem__(self, key: bytes, value: bytes) -> None:
        b = _binding.current.get()
        if b is None:
            real_environb[key] = value  # type: ignore[index]
        else:
            os.environ[os.fsdecode(_bytes(key))] = os.fsdecode(_bytes(value))

    def __delitem__(self, key: bytes) -> None:
        b = _binding.current.get()
        if b is None:
            del real_environb[key]  # type: ignore[union-attr]
        else:
            del b.environ[os.fsdecode(key)]

    def __iter__(self) -> Iterator[bytes]:
        b = _binding.current.get()
        if b is None:
            return iter(list(real_environb))  # type: ignore[arg-type]
        return iter([os.fsencode(k) for k in b.environ])

    def __len__(self) -> int:
        b = _binding.current.get()
        return len(real_environb if b is None else b.environ)  # type: ignore[arg-type]

    def copy(self) -> dict[bytes, bytes]:
        return dict(self)

    def __repr__(self) -> str:
        return f"environb({self.copy()!r})"


def _bytes(value: Any) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"bytes expected, not {type(value).__name__}")
    return value


def subprocess_env(env: Any) -> Any:
    """The ``env`` a child process started by the current app should get."""
    if env is None:
        b = _binding.current.get()
        if b is not None:
            return dict(b.environ)
    return env
