"""Fixtures: "a config with these apps" and "a running server".

Servers are real gunicorn processes (``ctxserve serve`` or plain
``gunicorn``) on 127.0.0.1 with an ephemeral port, read back from
gunicorn's "Listening at" line; every one is stopped when its test ends.
The helpers they use (and tests import) are in support.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from support import ENGINES, Server, serve_command, start_server, toml_text


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Path]:
    """``make_config(apps={...}, server={...})`` writes a ctxserve.toml and returns its path."""

    def make(apps: Mapping[str, Mapping[str, Any]], server: Mapping[str, Any] | None = None,
             name: str = "ctxserve.toml") -> Path:
        path = tmp_path / name
        path.write_text(toml_text(server, apps))
        return path

    return make


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """A test that takes ``engine`` runs once per engine; its ``serve`` uses that engine."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def serve(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Server]]:
    """``serve(config, *flags)`` starts ``ctxserve serve`` on an ephemeral port
    (with the test's ``engine``, when it takes one)."""
    servers: list[Server] = []
    engine = request.getfixturevalue("engine") if "engine" in request.fixturenames else None

    def start(config: Path, *args: str, command: list[str] | None = None, **kwargs: Any) -> Server:
        server = start_server(command or serve_command(config, *args, engine=engine), tmp_path, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
