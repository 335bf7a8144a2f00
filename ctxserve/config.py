"""Read and validate ``ctxserve.toml``.

The config file is the user-facing contract, so this module follows one rule:
every key is declared exactly once, in :data:`SETTINGS` (section, name,
check, default, one-line meaning, and for ``[server]`` keys the gunicorn
setting it controls and its ``ctxserve serve`` option).  Everything else is
derived from that table, so there is no second list to keep in sync:

* validation, defaults and did-you-mean suggestions for unknown keys;
* the :class:`ServerConfig` and :class:`AppConfig` dataclasses (one field per
  key, in declaration order, with the declared defaults);
* the options of ``ctxserve serve`` (:func:`serve_options`, checked again by
  :func:`override_server` with the same declarations);
* the gunicorn settings (:func:`gunicorn_settings`) and the granian
  engine's arguments (:func:`granian_settings`);
* the markdown key reference in the README (:func:`reference_markdown`).

A new ``[server]`` key is one ``Setting(...)`` line: give it ``gunicorn=``
(``granian=``) to hand it to the engine and ``flag=`` for a command-line
option.

The app spec and listening addresses are parsed by one function each,
:func:`parse_app_spec` and :func:`parse_address`, which the loader, the
command line and the admin listener use too.

Bad configuration never half-starts a server: the first problem found is
raised as a :class:`ConfigError` whose text names the file, the key path and
what was expected, e.g.::

    ctxserve.toml: apps.blog.decimal.prec: expected an integer >= 1, got "six"
"""

from __future__ import annotations

import ast
import dataclasses
import decimal
import difflib
import ipaddress
import json
import keyword
import math
import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from gunicorn import config as gunicorn_config
from gunicorn import util as gunicorn_util

__all__ = [
    "ACCESS_LOG_FORMAT",
    "Address",
    "AppConfig",
    "AppSpec",
    "Config",
    "ConfigError",
    "GUNICORN_WORKERS",
    "SETTINGS",
    "check_inherited",
    "ServerConfig",
    "Setting",
    "granian_settings",
    "gunicorn_settings",
    "load",
    "override_server",
    "parse",
    "parse_address",
    "parse_app_spec",
    "reference_markdown",
    "serve_options",
    "wrap_keys",
]


class ConfigError(Exception):
    """str(err) is the full user-facing message 'FILE: KEY.PATH: expected ..., got ...'.

    The message is complete on its own so the command line can print it as is
    and stop, without a traceback.
    """


# --------------------------------------------------------------------------
# Where a value came from, so every message names the file and key path.
# --------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(part: str) -> str:
    """A key as the user would write it in TOML: bare if possible, else quoted."""
    return part if _BARE_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False)


def _show(value: Any) -> str:
    """A value as the user wrote it (TOML spelling), short enough for one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 80 else text[:76] + '..."'
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 64 else "a very large integer"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__} ({value})"


@dataclass(frozen=True)
class _At:
    """The location of a value: display file name, key path, and base directory.

    ``base`` is the directory relative paths are resolved against: the config
    file's directory for the file, the working directory for command-line
    options (whose ``file`` is empty and whose ``key`` is the option name).
    """

    file: str
    key: str
    base: Path

    def child(self, part: str | int) -> _At:
        if isinstance(part, int):
            key = f"{self.key}[{part}]"
        elif self.key:
            key = f"{self.key}.{_toml_key(str(part))}"
        else:
            key = _toml_key(str(part))
        return _At(self.file, key, self.base)

    def error(self, message: str) -> NoReturn:
        where = ": ".join(part for part in (self.file, self.key) if part)
        raise ConfigError(f"{where}: {message}")

    def expected(self, what: str, value: Any, hint: str = "") -> NoReturn:
        self.error(f"expected {what}, got {_show(value)}" + (f"; {hint}" if hint else ""))


def _did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate (ignoring case), or None when nothing is close."""
    by_fold = {candidate.casefold(): candidate for candidate in candidates}
    close = difflib.get_close_matches(word.casefold(), list(by_fold), n=1)
    return by_fold[close[0]] if close else None


def _unknown_key(at: _At, key: Any, known: Iterable[str], hint: str = "") -> NoReturn:
    key, known = str(key), list(known)
    if hint:
        at.child(key).error(f"unknown key; {hint}")
    suggestion = _did_you_mean(key, known)
    if suggestion:
        at.child(key).error(f'unknown key; did you mean "{suggestion}"?')
    at.child(key).error("unknown key; expected one of: " + ", ".join(known))


# --------------------------------------------------------------------------
# Checks: each takes (value, where) and returns the normalised value or raises.
# --------------------------------------------------------------------------

Check = Callable[[Any, _At], Any]


def _integer(minimum: int | None = None, maximum: int | None = None, what: str = "") -> Check:
    """An integer check.  TOML true/false are refused: bool is an int in Python.

    ``what`` describes the value for messages when the bounds alone would
    mislead (e.g. decimal's huge implementation limits).
    """
    ranged = not what and minimum is not None and maximum is not None
    if ranged:
        what = f"an integer from {minimum} to {maximum}"
    elif not what:
        what = f"an integer >= {minimum}" if minimum is not None else f"an integer <= {maximum}"

    def check(value: Any, at: _At) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            at.expected(what, value)
        if ranged and not minimum <= value <= maximum:  # type: ignore[operator]
            at.expected(what, value)
        if minimum is not None and value < minimum:
            at.expected(f"an integer >= {minimum}", value)
        if maximum is not None and value > maximum:
            at.expected(f"an integer <= {maximum}", value)
        return value

    return check


def _seconds(value: Any, at: _At) -> float:
    """A duration in seconds: an integer or a float, finite and >= 0."""
    what = "a number of seconds >= 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        at.expected(what, value)
    try:
        seconds = float(value)
    except OverflowError:  # an integer too large for a float
        at.expected(what, value)
    if not (math.isfinite(seconds) and seconds >= 0):
        at.expected(what, value)
    return seconds


def _boolean(value: Any, at: _At) -> bool:
    if not isinstance(value, bool):
        at.expected("true or false", value)
    return value


def _choice(*options: str) -> Check:
    what = "one of " + ", ".join(json.dumps(option) for option in options)

    def check(value: Any, at: _At) -> str:
        if value in options:
            return value
        suggestion = _did_you_mean(value, options) if isinstance(value, str) else None
        at.expected(what, value, f'did you mean "{suggestion}"?' if suggestion else "")

    return check


def _string(value: Any, at: _At) -> str:
    if not isinstance(value, str) or "\0" in value:
        at.expected("a string", value)
    return value


def _list_of(item: Check, what: str, *, may_be_empty: bool = False) -> Check:
    """A TOML list whose items pass ``item``; returns a tuple."""
    expected = f"a list of {what}" if may_be_empty else f"a non-empty list of {what}"

    def check(value: Any, at: _At) -> tuple[Any, ...]:
        if not isinstance(value, list) or not (value or may_be_empty):
            at.expected(expected, value)
        return tuple(item(element, at.child(index)) for index, element in enumerate(value))

    return check


def _one_or_list_of(item: Check, what: str, *, may_be_empty: bool = False) -> Check:
    """A single value or a list of them; returns a tuple either way."""
    as_list = _list_of(item, what, may_be_empty=may_be_empty)

    def check(value: Any, at: _At) -> tuple[Any, ...]:
        if isinstance(value, list):
            return as_list(value, at)
        return (item(value, at),)

    return check


# -- names -------------------------------------------------------------------

_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_PORT = re.compile(r"[0-9]{1,5}")
_APP_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _is_identifier(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def _is_dotted_name(name: str) -> bool:
    return all(_is_identifier(part) for part in name.split("."))


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _is_host(text: str) -> bool:
    """A host name, an IPv4 address, or an IPv6 address in brackets."""
    if text.startswith("[") and text.endswith("]"):
        return _is_ipv6(text[1:-1])
    return _HOSTNAME.fullmatch(text) is not None


# -- addresses ---------------------------------------------------------------

_ADDRESS = '"HOST:PORT", "[IPv6]:PORT", "unix:/PATH" or "fd://N"'


@dataclass(frozen=True)
class Address:
    """A listening address, as gunicorn's ``--bind`` takes it, parsed once.

    Exactly one of the three kinds is set: TCP (``host``, ``port``), a unix
    socket (``path``) or an inherited file descriptor (``fd``).
    """

    text: str
    """As written."""
    host: str = ""
    """TCP: the host, lower-case; an IP address in its canonical form, IPv6 without brackets."""
    port: int = 0
    path: str = ""
    fd: int | None = None

    @property
    def is_tcp(self) -> bool:
        return not self.path and self.fd is None

    @property
    def netloc(self) -> str:
        """TCP: ``HOST:PORT`` as a URL writes it (``[::1]:9100``)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """Parse one listening address; ValueError says what was expected.

    The forms are gunicorn's, read by gunicorn's own ``util.parse_address``
    (so ctxserve reads an address as gunicorn binds it); ctxserve is only
    stricter: a TCP address needs its port written out (gunicorn would
    default to 8000) and a host that is a name or an IP address.
    """
    if not isinstance(text, str) or "\0" in text:
        raise ValueError(f"an address {_ADDRESS}")
    if text.startswith("unix:"):
        path = gunicorn_util.parse_address(text)
        if not path:
            raise ValueError(f"an address {_ADDRESS}")
        return Address(text, path=path)
    if text.startswith("fd://"):
        if not _PORT.fullmatch(text.removeprefix("fd://")):
            raise ValueError(f"an address {_ADDRESS}")
        return Address(text, fd=gunicorn_util.parse_address(text))
    host, colon, port = text.rpartition(":")
    if not (colon and _is_host(host) and _PORT.fullmatch(port)):
        raise ValueError(f"an address {_ADDRESS}")
    if int(port) > 65535:
        raise ValueError("a port from 0 to 65535")
    host, number = gunicorn_util.parse_address(text)
    try:  # an IP address in its one spelling, as getsockname() gives it
        host = str(ipaddress.ip_address(host))
    except ValueError:
        pass
    return Address(text, host=host, port=number)


def _address(value: Any, at: _At) -> str:
    """One listening address, in the forms gunicorn's --bind accepts (kept as written)."""
    _address_of(value, at)
    return value


def check_inherited(config: Config) -> None:
    """What the config asks of this very process: each ``fd://N`` bind must be a socket it has.

    Not part of :func:`parse` (the file is valid wherever it is read);
    ``ctxserve check`` and ``ctxserve serve`` call it, so that a missing fd is
    one line, not gunicorn's traceback.
    """
    at = _At(os.fspath(config.path), "server.bind", config.path.parent)
    for index, text in enumerate(config.server.bind):
        address = parse_address(text)
        if address.fd is None:
            continue
        try:
            is_socket = stat.S_ISSOCK(os.fstat(address.fd).st_mode)
        except OSError:
            is_socket = False
        if not is_socket:
            where = at.child(index) if len(config.server.bind) > 1 else at
            where.error(f"fd {address.fd} is not an open socket in this process; fd://N is a listening "
                        "socket the server inherits (e.g. from systemd socket activation): start the "
                        "server from what passes it, or bind an address")


def _admin(value: Any, at: _At) -> str:
    """Off (``""``) or one listening address, of any kind gunicorn binds. The admin
    listener is told apart from the others by the socket a request arrives on
    (ctxserve's workers), never by request data, so a unix socket is as safe as TCP."""
    if value == "":
        return ""
    if not isinstance(value, str):
        at.expected(f'"" (off) or one address {_ADDRESS}', value)
    _address_of(value, at)
    return value


def _address_of(value: Any, at: _At) -> Address:
    try:
        return parse_address(value)
    except ValueError as err:
        at.expected(str(err), value)


# -- files -------------------------------------------------------------------


def _resolve(value: str, at: _At) -> str:
    """An absolute, normalised path; relative ones are relative to ``at.base``."""
    return os.path.normpath(os.path.join(at.base, value))


def _relative_to(at: _At) -> str:
    if at.file:
        return f"relative paths are relative to the directory of {at.file}"
    return "relative paths are relative to the working directory"


def _file(value: Any, at: _At, what: str) -> str:
    """A file ctxserve will append to: its directory must already exist."""
    if not isinstance(value, str) or not value or "\0" in value:
        at.expected(what, value)
    path = _resolve(value, at)
    if os.path.isdir(path):
        at.error(f"{path} is a directory; give a file path")
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        at.error(f"directory {parent} does not exist ({_relative_to(at)}); create it or fix the path")
    return path


def _access_log(value: Any, at: _At) -> str:
    if value in ("", "-"):
        return value
    return _file(value, at, '"" (off), "-" (stdout) or a file path')


def _output(value: Any, at: _At) -> str:
    if value in ("inherit", "null", "logging"):
        return value
    return _file(value, at, '"inherit", "null", "logging" or a file path')


def _directory(value: Any, at: _At) -> str:
    if not isinstance(value, str) or not value or "\0" in value:
        at.expected("a directory path", value)
    path = _resolve(value, at)
    if not os.path.isdir(path):
        at.error(f"directory {path} does not exist ({_relative_to(at)})")
    return path


# -- server ------------------------------------------------------------------

#: Upper bounds of ``workers`` and ``threads``, in the file and on the command line.
MAX_WORKERS = 256
MAX_THREADS = 1024


#: ``[server] worker_class`` -> the gunicorn worker ``ctxserve serve`` runs:
#: gunicorn's own, each request in one context (``ctxserve.workers``).
GUNICORN_WORKERS = {
    "sync": "ctxserve.workers.SyncWorker",
    "gthread": "ctxserve.workers.ThreadWorker",
    "gevent": "ctxserve.workers.GeventWorker",
}

#: gunicorn's default access-log format, plus the routed app's name.
ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" app=%({ctxserve.app}e)s'


def _worker_class(value: Any, at: _At) -> str:
    value = _choice(*GUNICORN_WORKERS)(value, at)
    if value == "gevent":
        try:  # gunicorn's own gevent worker, which ctxserve's extends: gevent and packaging
            import gunicorn.workers.ggevent  # noqa: F401
        except (ImportError, RuntimeError) as exc:  # RuntimeError: gunicorn's "requires gevent"
            at.error(f"the gevent worker cannot be loaded ({exc}); install it with: "
                     "pip install 'ctxserve[gevent]'")
    return value


def _owned_gunicorn_settings() -> dict[str, str]:
    """gunicorn setting name -> the [server] key ctxserve sets it from."""
    return {s.gunicorn: s.name for s in SETTINGS if s.section == "server" and s.gunicorn}


def _gunicorn(value: Any, at: _At) -> dict[str, Any]:
    """[server.gunicorn]: any gunicorn setting, checked by gunicorn's own validator."""
    if not isinstance(value, Mapping):
        at.expected("a table of gunicorn settings, e.g. [server.gunicorn]", value)
    if not value:
        return {}
    owned = _owned_gunicorn_settings()
    known = {setting.name: setting for setting in gunicorn_config.KNOWN_SETTINGS}
    scratch = gunicorn_config.Config()
    for name, setting_value in value.items():
        where = at.child(name)
        if name in owned:
            where.error(f'set by ctxserve; use {owned[name]} = ... in [server] instead')
        if name not in known:
            suggestion = _did_you_mean(str(name), known)
            hint = f'did you mean "{suggestion}"?' if suggestion else "see https://docs.gunicorn.org/en/stable/settings.html"
            where.error(f"not a gunicorn setting; {hint}")
        # gunicorn's integer validators take True as 1; TOML true there is a mistake.
        default = known[name].default
        if isinstance(setting_value, bool) and isinstance(default, int) and not isinstance(default, bool):
            where.expected("an integer", setting_value)
        try:
            scratch.set(name, setting_value)
        except Exception as err:  # noqa: BLE001
            # gunicorn's validators raise ValueError, TypeError, its own
            # ConfigError, and may import user code (hooks); any failure is
            # a bad value and must reach the user as one clear message.
            where.error(f"gunicorn does not accept {_show(setting_value)}: {err}")
        if name in _GUNICORN_PATHS and setting_value:
            _gunicorn_path(name, setting_value, where)
    return dict(value)


#: gunicorn settings naming a path that gunicorn only opens once it serves
#: (a traceback, or a halted master on SIGHUP): checked here, so that
#: ``ctxserve check`` refuses what ``ctxserve serve`` would. gunicorn
#: reads them relative to its working directory.
_GUNICORN_PATHS = {"certfile": "file", "keyfile": "file", "ca_certs": "file",
                   "pidfile": "parent", "worker_tmp_dir": "directory", "control_socket": "parent"}


def _gunicorn_path(name: str, value: Any, at: _At) -> None:
    path = os.path.abspath(str(value))
    kind = _GUNICORN_PATHS[name]
    where = "relative paths are relative to the working directory"
    if kind == "file" and not (os.path.isfile(path) and os.access(path, os.R_OK)):
        at.error(f"{path} is not a readable file ({where}); give the path of an existing file")
    if kind == "directory" and not os.path.isdir(path):
        at.error(f"directory {path} does not exist ({where}); create it or fix the path")
    if kind == "parent" and not os.path.isdir(os.path.dirname(path)):
        at.error(f"directory {os.path.dirname(path)} does not exist ({where}); create it or fix the path")


#: The servers ``ctxserve serve`` can run the apps on.
ENGINES = ("gunicorn", "granian")


def _engine(value: Any, at: _At) -> str:
    value = _choice(*ENGINES)(value, at)
    if value == "granian":
        try:
            import granian  # noqa: F401
        except ImportError:
            at.error("the granian engine needs the granian package; install it with: "
                     "pip install 'ctxserve[granian]'")
    return value


def _granian(value: Any, at: _At) -> dict[str, Any]:
    """[server.granian]: the granian settings declared below, only those given."""
    if not isinstance(value, Mapping):
        at.expected("a table of granian settings, e.g. [server.granian]", value)
    return {name: v for name, v in _check_section(value, "server.granian", at).items() if v is not None}


def _check_engine(server: Any, at: _At) -> None:
    """Settings that only one engine has are refused under the other, in one line."""
    if server.engine == "granian":
        if server.worker_class != "gthread":
            at.child("worker_class").error(
                f'"{server.worker_class}" is a gunicorn worker; the granian engine runs requests on '
                'its own threads (threads = N): remove worker_class or set engine = "gunicorn"')
        if server.gunicorn:
            at.child("gunicorn").error(
                'gunicorn settings do not apply to engine = "granian"; move them to [server.granian] '
                'where granian has one, or set engine = "gunicorn"')
        if len(server.bind) > 1:
            at.child("bind").error(
                f'engine = "granian" listens on one address, got {len(server.bind)}; give one bind '
                '(the admin listener has its own key), or set engine = "gunicorn"')
        if parse_address(server.bind[0]).fd is not None:
            at.child("bind").error('engine = "granian" cannot serve an inherited fd://; '
                                   'give "HOST:PORT" or "unix:/PATH", or set engine = "gunicorn"')
    elif server.granian:
        at.child("granian").error('[server.granian] applies to engine = "granian" only; '
                                  'set engine = "granian" or remove the table')


# -- apps --------------------------------------------------------------------

_APP_SPEC = '"module:attribute" or "module:factory(args)", e.g. "blog.wsgi:application"'
_FACTORY_ARGS = "factory arguments that are Python literals, e.g. \"blog:create_app('prod', debug=False)\""


@dataclass(frozen=True)
class AppSpec:
    """``module:attribute`` or ``module:factory(args)``, parsed.

    ``attribute`` is the dotted path inside the module; ``args`` is None
    for a plain attribute, else the factory's positional arguments (with
    ``kwargs``), Python literals only.
    """

    module: str
    attribute: tuple[str, ...]
    args: tuple[Any, ...] | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def parse_app_spec(text: str) -> AppSpec:
    """Parse an app spec; ValueError says what was expected.

    Syntax only: importing the module and finding the attribute is the
    loader's job (:func:`ctxserve.apps.load_callable`), done in the app's
    context.
    """
    if not isinstance(text, str):
        raise ValueError(_APP_SPEC)
    module, colon, target = text.partition(":")
    name, paren, _ = target.partition("(")
    if not (colon and _is_dotted_name(module) and _is_dotted_name(name)):
        raise ValueError(_APP_SPEC)
    if not paren:
        return AppSpec(module, tuple(name.split(".")))
    try:
        if not target.endswith(")"):
            raise ValueError
        call = ast.parse("f" + target[len(name):], mode="eval").body
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
            raise ValueError
        if any(isinstance(arg, ast.Starred) for arg in call.args) or any(kw.arg is None for kw in call.keywords):
            raise ValueError
        args = tuple(ast.literal_eval(arg) for arg in call.args)
        kwargs = {str(kw.arg): ast.literal_eval(kw.value) for kw in call.keywords}
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        raise ValueError(_FACTORY_ARGS) from None
    return AppSpec(module, tuple(name.split(".")), args, kwargs)


def _app_spec(value: Any, at: _At) -> str:
    """Syntax only, kept as written: the loader parses it again in the app's context."""
    try:
        parse_app_spec(value)
    except ValueError as err:
        at.expected(str(err), value)
    return value


def _mount(value: Any, at: _At) -> str:
    """A URL path prefix, normalised to have no trailing slash ("/" stays "/")."""
    what = 'a URL path starting with "/", e.g. "/blog"'
    if not isinstance(value, str) or not value.startswith("/"):
        at.expected(what, value)
    mount = value.rstrip("/") or "/"
    if mount != "/":
        segments = mount.split("/")[1:]
        if any(segment in ("", ".", "..") for segment in segments):
            at.expected(f'{what}, without empty, "." or ".." segments', value)
    if any(char.isspace() or not char.isprintable() or char in "?#" for char in mount):
        at.expected(f'{what}, without spaces, "?" or "#"', value)
    return mount


def _virtual_host(value: Any, at: _At) -> str:
    """A Host header name to match: exact, or "*.suffix"; stored lower-cased."""
    what = 'a host name like "blog.example.com" or "*.example.com"'
    if not isinstance(value, str):
        at.expected(what, value)
    host = value.lower()
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        at.expected(what + " without a port", value, "ctxserve matches the Host header without its port")
    if host.startswith("*."):
        valid = _HOSTNAME.fullmatch(host.removeprefix("*.")) is not None
    else:
        valid = _is_host(host)
    if not valid:
        at.expected(what, value)
    return host


def _hosts(value: Any, at: _At) -> tuple[str, ...]:
    hosts = _one_or_list_of(_virtual_host, "host names")(value, at)
    for index, host in enumerate(hosts):
        if host in hosts[:index]:
            at.child(index).error(f'"{host}" is listed twice')
    return hosts


def _env_name(value: Any, at: _At) -> str:
    if not isinstance(value, str) or not value or "=" in value or "\0" in value:
        at.expected('an environment variable name (not empty, no "=")', value)
    return value


def _environ(value: Any, at: _At) -> dict[str, str]:
    if not isinstance(value, Mapping):
        at.expected('a table of NAME = "value"', value)
    for name, setting_value in value.items():
        where = at.child(name)
        _env_name(name, where)
        if isinstance(setting_value, (bool, int, float)):
            where.expected("a string", setting_value, f'quote it: {_toml_key(name)} = "{_show(setting_value)}"')
        _string(setting_value, where)
    return dict(value)


def _inherit_environ(value: Any, at: _At) -> bool | tuple[str, ...]:
    if isinstance(value, bool):
        return value
    if not isinstance(value, list):
        at.expected("true, false or a list of variable names", value)
    return _list_of(_env_name, "variable names", may_be_empty=True)(value, at)


def _package(value: Any, at: _At) -> str:
    if not isinstance(value, str) or not _is_identifier(value):
        at.expected('a top-level package name such as "django" (no dots)', value)
    return value


_DECIMAL_SIGNALS = (
    "Clamped",
    "DivisionByZero",
    "Inexact",
    "Overflow",
    "Rounded",
    "Subnormal",
    "Underflow",
    "InvalidOperation",
    "FloatOperation",
)
_ROUNDINGS = tuple(sorted(name for name in dir(decimal) if name.startswith("ROUND_")))


def _signals(value: Any, at: _At) -> list[str]:
    return list(_list_of(_choice(*_DECIMAL_SIGNALS), "decimal signal names", may_be_empty=True)(value, at))


def _decimal(value: Any, at: _At) -> dict[str, Any]:
    """The decimal.Context arguments that were given (empty: not configured)."""
    if not isinstance(value, Mapping):
        at.expected("a table of decimal.Context fields, e.g. { prec = 6 }", value)
    return {name: v for name, v in _check_section(value, "apps.NAME.decimal", at).items() if v is not None}


# --------------------------------------------------------------------------
# The declarations: every key of ctxserve.toml, once.
# --------------------------------------------------------------------------

REQUIRED = object()
"""Default of a key that must be given."""


@dataclass(frozen=True)
class Setting:
    """One key of ctxserve.toml.

    ``default`` is written the way a user would write it in the file and goes
    through ``check`` like a given value; ``None`` means "not set" (resolved
    later, e.g. argv defaults to the app name), REQUIRED means it must be given.
    ``shown`` overrides how the default appears in the reference.
    ``gunicorn`` names the gunicorn setting a [server] key controls, which is
    therefore refused in [server.gunicorn]; ``to_gunicorn(server)`` gives
    the gunicorn settings it stands for (default: its value under that name;
    ``{}`` leaves gunicorn's default); ``granian``/``to_granian`` the same
    for the granian engine's ``granian.Granian`` arguments.
    ``wrap``: an [apps.NAME] key that :func:`ctxserve.wrap` takes too (it
    makes sense for a callable already imported).
    ``flag`` (a metavar) gives a [server] key its ``ctxserve serve`` option,
    :attr:`option`; ``repeat``: the option may be given several times (each
    occurrence goes through ``check``, which returns a tuple, and they add up).
    """

    section: str
    name: str
    check: Check
    default: Any
    doc: str
    shown: str = ""
    gunicorn: str = ""
    to_gunicorn: Callable[[Any], Mapping[str, Any]] | None = None
    granian: str = ""
    to_granian: Callable[[Any], Mapping[str, Any]] | None = None
    flag: str = ""
    repeat: bool = False
    wrap: bool = False

    @property
    def option(self) -> str:
        """The command-line spelling of the key, e.g. ``--worker-class``."""
        return "--" + self.name.replace("_", "-")

    def gunicorn_values(self, server: Any) -> Mapping[str, Any]:
        """The gunicorn settings, by gunicorn name, this key of *server* stands for."""
        if self.to_gunicorn is not None:
            return self.to_gunicorn(server)
        value = getattr(server, self.name)
        return {self.gunicorn: list(value) if isinstance(value, tuple) else value} if self.gunicorn else {}

    def granian_values(self, server: Any) -> Mapping[str, Any]:
        """The ``granian.Granian`` arguments this key of *server* stands for (``granian``, ``to_granian``)."""
        if self.to_granian is not None:
            return self.to_granian(server)
        return {self.granian: getattr(server, self.name)} if self.granian else {}


SETTINGS: tuple[Setting, ...] = (
    # [server]
    Setting("server", "bind", _one_or_list_of(_address, "addresses"), "127.0.0.1:8000",
            f"address to listen on, or a list of them: {_ADDRESS}", gunicorn="bind",
            # The admin listener is one more bind, always the last one.
            to_gunicorn=lambda server: {"bind": [*server.bind, *([server.admin] if server.admin else [])]},
            flag="ADDR", repeat=True),
    # Bounded: an unbounded count forks (or starts threads) until the machine stops.
    Setting("server", "workers", _integer(1, MAX_WORKERS), 1,
            f"number of worker processes (at most {MAX_WORKERS})", gunicorn="workers", flag="N",
            granian="workers"),
    Setting("server", "threads", _integer(1, MAX_THREADS), 8,
            f"threads per worker (at most {MAX_THREADS}); more than 1 selects the gthread worker",
            gunicorn="threads", flag="N", granian="blocking_threads",
            # gunicorn turns "sync" with threads > 1 into gthread; a user who
            # asks for sync means one request at a time per worker.
            to_gunicorn=lambda server: {"threads": 1 if server.worker_class == "sync" else server.threads}),
    Setting("server", "worker_class", _worker_class, "gthread",
            '"sync", "gthread" or "gevent" (gevent needs `pip install \'ctxserve[gevent]\'`)',
            gunicorn="worker_class", flag="K",
            to_gunicorn=lambda server: {"worker_class": GUNICORN_WORKERS[server.worker_class]}),
    Setting("server", "engine", _engine, "gunicorn",
            '"gunicorn" or "granian" (granian needs `pip install \'ctxserve[granian]\'`): which server '
            'runs the apps; see "Engines" in the README', flag="E"),
    Setting("server", "timeout", _integer(0), 30,
            "seconds a silent worker is given before it is restarted (0: never)", gunicorn="timeout",
            # granian has no silent-worker timeout: a stopping worker gets it to finish its requests.
            to_granian=lambda server: {"workers_kill_timeout": server.timeout or None}),
    Setting("server", "strict", _boolean, False, "true: refuse to start if any app fails to load"),
    Setting("server", "admin", _admin, "",
            'address of the admin listener (/healthz, /readyz, /metrics, /status, per-app reload), '
            'e.g. "127.0.0.1:9100" or "unix:/run/ctxserve-admin.sock"; "" = off'),
    Setting("server", "access_log", _access_log, "",
            '"-" = stdout, a file path (relative to the config file), or "" = off; lines name the app',
            gunicorn="accesslog",
            to_gunicorn=lambda server: {"accesslog": server.access_log, "access_log_format": ACCESS_LOG_FORMAT}
            if server.access_log else {}),
    Setting("server", "globals", _choice("warn", "fail"), "warn",
            "default of every app's `globals`"),
    Setting("server", "gunicorn", _gunicorn, {},
            "table `[server.gunicorn]`: any other gunicorn setting, by its gunicorn name "
            '(engine = "gunicorn" only)',
            to_gunicorn=lambda server: server.gunicorn),
    Setting("server", "granian", _granian, {},
            'table `[server.granian]`: granian\'s own settings, below (engine = "granian" only)',
            to_granian=lambda server: server.granian),
    # [server.granian]: granian keyword arguments; keys left out keep granian's default.
    Setting("server.granian", "backpressure", _integer(1), None,
            "requests a worker accepts before it stops reading new ones", shown="1024 / workers"),
    Setting("server.granian", "backlog", _integer(128), None, "listen backlog", shown="1024"),
    Setting("server.granian", "runtime_threads", _integer(1, 64, "an integer from 1 to 64"), None,
            "Rust I/O threads per worker (they never run Python)", shown="1"),
    Setting("server.granian", "blocking_threads_idle_timeout", _integer(5, 600, "an integer from 5 to 600"),
            None, "seconds an idle Python thread is kept", shown="30"),
    Setting("server.granian", "http", _choice("auto", "1", "2"), None, 'HTTP version: "auto", "1" or "2"',
            shown='"auto"'),
    Setting("server.granian", "workers_kill_timeout", _integer(1), None,
            "seconds a stopping worker is given to finish its requests before it is killed",
            shown="timeout"),
    Setting("server.granian", "respawn_interval", _seconds, None,
            "seconds between two workers restarted by SIGHUP", shown="3.5"),
    Setting("server.granian", "workers_lifetime", _integer(60), None,
            "seconds after which a worker is restarted gracefully (at least 60)", shown="off"),
    Setting("server.granian", "workers_max_rss", _integer(1), None,
            "MiB of RSS above which a worker is restarted gracefully", shown="off"),
    # [apps.NAME]
    Setting("apps.NAME", "app", _app_spec, REQUIRED, f"the WSGI application: {_APP_SPEC}"),
    Setting("apps.NAME", "mount", _mount, None,
            'URL path prefix, e.g. "/blog"; "/" is the default app. Give mount, host or both '
            '(only host: mount is "/")'),
    Setting("apps.NAME", "host", _hosts, None,
            'virtual host(s) this app answers: exact names or "*.example.com", no port; a string or a list'),
    Setting("apps.NAME", "path", _one_or_list_of(_directory, "directories", may_be_empty=True), [],
            "directories searched first for this app's private modules (relative to the config file); "
            "a string or a list"),
    Setting("apps.NAME", "environ", _environ, {}, 'environment variables for this app, e.g. { TITLE = "Blog" }',
            wrap=True),
    Setting("apps.NAME", "inherit_environ", _inherit_environ, True,
            "true: process environment + environ; false: environ only; "
            "a list of names: only those from the process environment, + environ", wrap=True),
    Setting("apps.NAME", "stdout", _output, "inherit",
            '"inherit" (server stdout, lines prefixed "[NAME] "), a file path appended to '
            '(relative to the config file), "null", or "logging" (logger "ctxserve.app.NAME")', wrap=True),
    Setting("apps.NAME", "stderr", _output, "inherit", "same choices as stdout", wrap=True),
    Setting("apps.NAME", "argv", _list_of(_string, "strings"), None,
            "sys.argv while this app runs", shown='["NAME"]', wrap=True),
    Setting("apps.NAME", "decimal", _decimal, {}, "decimal context for this app; see `[apps.NAME.decimal]`",
            wrap=True),
    Setting("apps.NAME", "isolate", _list_of(_package, "package names", may_be_empty=True), [],
            'extra top-level packages loaded as a private copy for this app, e.g. ["django"]'),
    Setting("apps.NAME", "max_concurrency", _integer(0), 0, "at most this many requests of this app in flight "
            "(0: no limit)"),
    Setting("apps.NAME", "queue_timeout", _seconds, 0,
            "seconds a request may wait for a slot before a 503 with Retry-After (0: do not wait)"),
    Setting("apps.NAME", "globals", _choice("warn", "fail"), None,
            'a guarded process global (current directory, umask, locale, signal handlers, TZ, ...) changed '
            'by this app: "warn" (report it) or "fail" (its load fails)', shown="[server] globals"),
    # [apps.NAME.decimal]: keys left out keep Python's default.
    Setting("apps.NAME.decimal", "prec", _integer(1, decimal.MAX_PREC, "an integer >= 1"), None,
            "significant digits", shown="28"),
    Setting("apps.NAME.decimal", "rounding", _choice(*_ROUNDINGS), None,
            "rounding mode: " + ", ".join(_ROUNDINGS), shown='"ROUND_HALF_EVEN"'),
    Setting("apps.NAME.decimal", "Emin", _integer(decimal.MIN_EMIN, 0, "an integer <= 0"), None,
            "smallest exponent", shown="-999999"),
    Setting("apps.NAME.decimal", "Emax", _integer(0, decimal.MAX_EMAX, "an integer >= 0"), None,
            "largest exponent", shown="999999"),
    Setting("apps.NAME.decimal", "capitals", _integer(0, 1, "0 or 1"), None, "1: print exponents as E, 0: as e",
            shown="1"),
    Setting("apps.NAME.decimal", "clamp", _integer(0, 1, "0 or 1"), None, "1: IEEE 754 exponent clamping", shown="0"),
    Setting("apps.NAME.decimal", "traps", _signals, None,
            "signals that raise: " + ", ".join(_DECIMAL_SIGNALS),
            shown='["InvalidOperation", "DivisionByZero", "Overflow"]'),
    Setting("apps.NAME.decimal", "flags", _signals, None, "signals initially set", shown="[]"),
)


def _section(section: str) -> dict[str, Setting]:
    return {s.name: s for s in SETTINGS if s.section == section}


def _check_section(data: Mapping[str, Any], section: str, at: _At) -> dict[str, Any]:
    """Check one table against its declarations: unknown keys, required keys, values.

    Returns every declared key: the checked value, or the checked default,
    or None for keys that are "not set".
    """
    settings = _section(section)
    for key in data:
        if key not in settings:
            hint = ""
            if section == "server" and key in {s.name for s in gunicorn_config.KNOWN_SETTINGS}:
                hint = "gunicorn settings go in [server.gunicorn]"
            _unknown_key(at, key, settings, hint)
    values: dict[str, Any] = {}
    for name, setting in settings.items():
        if name in data:
            values[name] = setting.check(data[name], at.child(name))
        elif setting.default is REQUIRED:
            at.child(name).error(f"required key is missing; give {setting.doc}")
        elif setting.default is None:
            values[name] = None
        else:
            values[name] = setting.check(setting.default, at.child(name))
    return values


# --------------------------------------------------------------------------
# The validated configuration, as the rest of ctxserve sees it: dataclasses
# whose fields are the declared keys, in declaration order.
# --------------------------------------------------------------------------


def _fields(section: str) -> list[tuple[str, Any, Any]]:
    """``(name, type, field)`` for each key of *section*; defaults are the checked declared defaults.

    Keyword-only, so a required key may follow keys with defaults. A
    default that is a table or list is copied for each instance.
    """
    at = _At("", section, Path.cwd())
    fields: list[tuple[str, Any, Any]] = []
    for setting in _section(section).values():
        if setting.default is REQUIRED:
            fields.append((setting.name, Any, field()))
            continue
        default = None if setting.default is None else setting.check(setting.default, at.child(setting.name))
        if isinstance(default, (dict, list)):
            fields.append((setting.name, Any, field(default_factory=lambda d=default: type(d)(d))))
        else:
            fields.append((setting.name, Any, field(default=default)))
    return fields


def _decimal_context(self: Any) -> decimal.Context | None:
    """A NEW decimal.Context for this app, or None when none is configured.

    A new object every call, because a Context is mutable and each app
    (and each thread of it) must not share one with another.
    """
    if not self.decimal:
        return None
    kwargs = dict(self.decimal)
    for name in ("traps", "flags"):
        if name in kwargs:
            kwargs[name] = [getattr(decimal, signal) for signal in kwargs[name]]
    return decimal.Context(**kwargs)


ServerConfig = dataclasses.make_dataclass(
    "ServerConfig", _fields("server"), frozen=True, kw_only=True,
    namespace={
        "__module__": __name__,
        "__doc__": "The ``[server]`` table: one field per declared key (SETTINGS), same defaults.\n\n"
                   "``gunicorn`` holds the extra gunicorn settings as written in the file: they\n"
                   "have passed gunicorn's own validator and can be handed to its ``Config.set``.",
    })

AppConfig = dataclasses.make_dataclass(
    "AppConfig", [("name", str, field()), *_fields("apps.NAME")], frozen=True, kw_only=True,
    namespace={
        "__module__": __name__,
        "__doc__": "One ``[apps.NAME]`` table: its name, then one field per declared key,\n"
                   "with paths made absolute and values normalised.",
        "decimal_context": _decimal_context,
    })


@dataclass(frozen=True)
class Config:
    """The whole file: where it is, the server settings and the apps in file order."""

    path: Path
    server: Any  # ServerConfig
    apps: tuple[Any, ...]  # AppConfig


def wrap_keys() -> tuple[str, ...]:
    """The [apps.NAME] keys that :func:`ctxserve.wrap` takes (``Setting.wrap``)."""
    return tuple(s.name for s in SETTINGS if s.section == "apps.NAME" and s.wrap)


def serve_options() -> tuple[Setting, ...]:
    """The [server] keys that ``ctxserve serve`` takes as options (``Setting.flag``)."""
    return tuple(s for s in SETTINGS if s.section == "server" and s.flag)


def gunicorn_settings(server: Any) -> dict[str, Any]:
    """The gunicorn settings that a ServerConfig stands for, by gunicorn name.

    Each declared key's own (``Setting.gunicorn_values``), in declaration
    order: ``[server.gunicorn]``, declared after every key that owns a
    gunicorn setting, may set anything else.
    """
    settings: dict[str, Any] = {}
    for setting in _section("server").values():
        settings.update(setting.gunicorn_values(server))
    return settings


def granian_settings(server: Any) -> dict[str, Any]:
    """The ``granian.Granian`` arguments that a ServerConfig stands for (``Setting.granian_values``).

    In declaration order: ``[server.granian]`` comes last and wins.
    """
    settings: dict[str, Any] = {}
    for setting in _section("server").values():
        settings.update(setting.granian_values(server))
    return settings


# --------------------------------------------------------------------------
# Whole-file rules and the public functions.
# --------------------------------------------------------------------------


def _check_admin_not_bound(server: Any, at: _At) -> None:
    """The admin listener cannot share an address with the public listeners."""
    if not server.admin:
        return
    admin = parse_address(server.admin)
    public = [parse_address(address) for address in server.bind]
    if admin.is_tcp:  # port 0 (an ephemeral port) is not a clash: each listener gets its own
        clash = bool(admin.port) and (admin.host, admin.port) in {(a.host, a.port) for a in public if a.is_tcp}
    else:
        clash = (admin.path, admin.fd) in {(a.path, a.fd) for a in public if not a.is_tcp}
    if clash:
        at.error(f'"{server.admin}" is also in bind; the admin listener needs its own address')
    # gunicorn serves only the inherited descriptors when any address is one (sock.create_sockets).
    if (admin.fd is not None) != all(a.fd is not None for a in public):
        at.error(f'"{server.admin}" and bind {list(server.bind)}: gunicorn listens on inherited '
                 'descriptors only, or on addresses only; make the admin listener and every bind '
                 'fd://N, or none of them')


def _app(name: Any, table: Any, at: _At) -> Any:
    if not isinstance(name, str) or not _APP_NAME.fullmatch(name):
        at.error('app names may use only letters, digits, "_", "." and "-"')
    if not isinstance(table, Mapping):
        at.expected(f"a table [apps.{_toml_key(name)}]", table)
    values = _check_section(table, "apps.NAME", at)
    if values["mount"] is None and values["host"] is None:
        at.error('needs mount, host, or both; e.g. mount = "/blog"')
    values["mount"] = values["mount"] or "/"
    values["host"] = values["host"] or ()
    values["argv"] = values["argv"] or (name,)
    return AppConfig(name=name, **values)


def _check_routes(apps: Iterable[Any], at: _At) -> None:
    """Each (host, mount) pair belongs to one app; an app without host has host None."""
    owners: dict[tuple[str | None, str], str] = {}
    for app in apps:
        for host in app.host or (None,):
            other = owners.setdefault((host, app.mount), app.name)
            if other != app.name:
                where = f'mount "{app.mount}"' + (f' on host "{host}"' if host else "")
                at.child(app.name).child("host" if host else "mount").error(
                    f'apps "{other}" and "{app.name}" both use {where}; give each app its own mount or host'
                )


def parse(data: Mapping[str, Any], path: str | os.PathLike[str]) -> Config:
    """Validate an already-parsed TOML document.

    ``path`` is where it came from: it names the file in messages (as given)
    and relative paths in it are resolved against its directory.
    """
    display = os.fspath(path)
    absolute = Path(os.path.abspath(display))
    root = _At(display, "", absolute.parent)
    if not isinstance(data, Mapping):
        root.expected("a TOML table at the top level", data)
    for key, value in data.items():
        if key not in ("server", "apps"):
            if isinstance(value, Mapping) and "app" in value:
                root.child(str(key)).error(f"unknown key; app tables are written [apps.{_toml_key(str(key))}]")
            _unknown_key(root, key, ("server", "apps"))

    server_data = data.get("server", {})
    if not isinstance(server_data, Mapping):
        root.child("server").expected("a table [server]", server_data)
    server = ServerConfig(**_check_section(server_data, "server", root.child("server")))
    _check_admin_not_bound(server, root.child("server").child("admin"))
    _check_engine(server, root.child("server"))

    apps_data = data.get("apps", {})
    if not isinstance(apps_data, Mapping) or not apps_data:
        root.child("apps").expected(
            'at least one app table, e.g. [apps.blog] with app = "blog.wsgi:application" and mount = "/blog"',
            apps_data,
        )
    apps = tuple(_app(name, table, root.child("apps").child(name)) for name, table in apps_data.items())
    apps = tuple(app if app.globals else dataclasses.replace(app, globals=server.globals) for app in apps)
    _check_routes(apps, root.child("apps"))
    return Config(path=absolute, server=server, apps=apps)


def load(path: str | os.PathLike[str]) -> Config:
    """Read and validate a ctxserve.toml file; every problem is a ConfigError."""
    display = os.fspath(path)
    try:
        with open(display, "rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError as err:
        raise ConfigError(f"{display}: no such file; create it, or give the path of your ctxserve.toml") from err
    except IsADirectoryError as err:
        raise ConfigError(f"{display}: is a directory; give the path of your ctxserve.toml") from err
    except OSError as err:
        raise ConfigError(f"{display}: cannot read the file: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{display}: not valid UTF-8 text ({err.reason} at byte {err.start})") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{display}: invalid TOML: {err}") from err
    return parse(data, path)


def _from_command_line(value: Any, setting: Setting) -> Any:
    """Command-line values may arrive as text; integers are converted here."""
    integer = type(setting.default) is int
    if integer and isinstance(value, str) and re.fullmatch(r"\s*[+-]?[0-9]{1,18}\s*", value):
        return int(value)
    return value


def override_server(config: Config, **changes: Any) -> Config:
    """A new Config with [server] keys replaced by command-line options.

    Values go through the same declarations as the file; messages name the
    option (``--workers``), and relative paths are relative to the working
    directory.  A value of None means "option not given" and changes nothing.
    Unknown names are a programming error (TypeError), not a user error.
    """
    settings = _section("server")
    checked: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in settings:
            raise TypeError(f"override_server() got an unknown server setting {name!r}")
        if value is None:
            continue
        setting = settings[name]
        at = _At("", setting.option, Path.cwd())
        if setting.repeat and isinstance(value, (list, tuple)):
            # Each occurrence of a repeated option is checked on its own, so a
            # message names the option, not a position in a list.
            checked[name] = sum((setting.check(_from_command_line(v, setting), at) for v in value), ())
        else:
            checked[name] = setting.check(_from_command_line(value, setting), at)
    server = dataclasses.replace(config.server, **checked)
    blamed = "--admin" if "admin" in checked else "--bind"
    if "admin" in checked or "bind" in checked:
        _check_admin_not_bound(server, _At("", blamed, Path.cwd()))
    if checked:
        _check_engine(server, _At(str(config.path), "server", Path.cwd()))
    return dataclasses.replace(config, server=server)


# --------------------------------------------------------------------------
# The key reference, derived from the same declarations.
# --------------------------------------------------------------------------


def _toml_literal(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_literal(item) for item in value) + "]"
    if isinstance(value, Mapping) and not value:
        return "{}"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_literal(v)}" for k, v in value.items()) + " }"
    return _show(value)


def _default_cell(setting: Setting) -> str:
    if setting.shown:
        return f"`{setting.shown}`"
    if setting.default is REQUIRED:
        return "required"
    if setting.default is None:
        return "—"
    return f"`{_toml_literal(setting.default)}`"


def reference_markdown() -> str:
    """The markdown key reference: one table per section (key | default | meaning).

    The README embeds it verbatim (``python -m ctxserve.config`` prints it).
    """
    lines = ["### Key reference", ""]
    for section in dict.fromkeys(s.section for s in SETTINGS):
        lines += [f"#### `[{section}]`", ""]
        if section == "apps.NAME.decimal":
            lines += ["Fields of `decimal.Context`; keys left out keep Python's default (shown).", ""]
        lines += ["| key | default | meaning |", "| --- | --- | --- |"]
        for setting in _section(section).values():
            meaning = setting.doc.replace("|", "\\|")
            lines.append(f"| `{setting.name}` | {_default_cell(setting)} | {meaning} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference_markdown(), end="")
