"""What the granian engine adds around granian itself (ctxserve/granian_server.py).

The isolation, admin, metrics, reload, SIGHUP/SIGTERM and fault tests run
under both engines in their own files; these are the cases only granian has.
"""

from __future__ import annotations

import pytest
import requests

from support import TEST_APPS, probe_app, wait_for

pytestmark = pytest.mark.server

FAULTS = {"app": "faults:application", "path": [str(TEST_APPS / "faults")]}


def test_a_worker_that_dies_twice_in_a_row_is_replaced_and_the_server_keeps_serving(make_config, serve):
    """granian alone stops the whole server when a worker dies again within
    5.5 s of its respawn; one app's os._exit must not stop the others."""
    server = serve(make_config({"a": {**FAULTS, "mount": "/a"}, "b": probe_app("b", "/b")},
                               {"engine": "granian"}))
    for attempt in range(3):
        pid = server.get("/b/pid").json()["pid"]
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{server.url}/a/os-exit?tag=t{attempt}", timeout=30)

        def replaced(old: int = pid) -> bool:
            try:
                return server.get("/b/pid", timeout=5).json()["pid"] != old
            except requests.RequestException:
                return False

        assert wait_for(replaced, timeout=20), server.stderr()
        assert server.proc.poll() is None
    assert "crash loop" not in server.stderr()


def test_status_set_at_the_first_iteration_is_the_status_sent(make_config, serve, tmp_path):
    """WSGI lets an app call start_response when its body is first iterated;
    granian sends the status when the call returns, so the first chunk is taken first."""
    (tmp_path / "lazy.py").write_text(
        "def application(environ, start_response):\n"
        "    def body():\n"
        "        start_response('201 Created', [('Content-Type', 'text/plain'), ('X-Lazy', 'yes')])\n"
        "        yield b'made'\n"
        "        yield b' late'\n"
        "    return body()\n")
    server = serve(make_config({"lazy": {"app": "lazy:application", "mount": "/lazy", "path": [str(tmp_path)]}},
                               {"engine": "granian"}))
    r = server.get("/lazy/")
    assert (r.status_code, r.headers.get("X-Lazy"), r.text) == (201, "yes", "made late")


def test_an_empty_streamed_body_is_an_empty_response(make_config, serve, tmp_path):
    (tmp_path / "empty.py").write_text(
        "closed = []\n"
        "class Body:\n"
        "    def __iter__(self):\n"
        "        return iter(())\n"
        "    def close(self):\n"
        "        print('closed', flush=True)\n"
        "def application(environ, start_response):\n"
        "    start_response('204 No Content', [])\n"
        "    return Body()\n")
    server = serve(make_config({"e": {"app": "empty:application", "mount": "/e", "path": [str(tmp_path)]}},
                               {"engine": "granian"}))
    r = server.get("/e/")
    assert (r.status_code, r.content) == (204, b"")
    assert wait_for(lambda: "[e] closed" in server.stdout())


def test_the_listening_socket_sends_small_writes_at_once():
    """A streamed response is several sends; with Nagle's algorithm on, each
    waited for the client's delayed ACK (a third of the req/s, measured)."""
    import socket

    from ctxserve.granian_server import listen

    sock = listen("127.0.0.1:0")
    try:
        client = socket.create_connection(sock.getsockname())
        accepted, _ = sock.accept()
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        accepted.close()
        client.close()
    finally:
        sock.close()
