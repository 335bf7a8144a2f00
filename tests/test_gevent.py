"""Two apps under gunicorn's gevent worker: many requests in flight in one thread.

/echo sleeps (a gevent yield) between the two halves of its line, so the
greenlets of hundreds of requests interleave mid-line; every line must still
come out whole, with its own app's prefix, exactly once.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

pytest.importorskip("gevent")

from support import Server, hammer, probe_app, serve_command, start_server, toml_text  # noqa: E402

pytestmark = pytest.mark.server

APPS = ("a", "b")
SECRET = "a-gevent-secret-51d2"
CLIENTS, PER_CLIENT = 50, 12   # 600 requests, up to 50 in flight at once


@dataclass
class GeventRun:
    stdout: str = ""
    stderr: str = ""
    tags: dict[str, list[str]] = field(default_factory=lambda: {app: [] for app in APPS})
    greenlets: dict[str, dict] = field(default_factory=dict)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> GeventRun:
    tmp = tmp_path_factory.mktemp("gevent")
    config = tmp / "ctxserve.toml"
    config.write_text(toml_text({"worker_class": "gevent"}, {
        "a": probe_app("a", "/a", environ={"SECRET": SECRET}, argv=["a-tool"], decimal={"prec": 6}),
        "b": probe_app("b", "/b"),
    }))
    server: Server = start_server(serve_command(config), tmp)
    result = GeventRun()
    try:
        assert server.get("/a/pid").status_code == 200, server.stderr()

        def request(session, t: int, i: int) -> None:
            app = APPS[(t + i) % 2]
            tag = f"G{t}x{i}"
            r = session.get(f"{server.url}/{app}/echo", params={"tag": tag, "sleep": "0.005"}, timeout=30)
            assert r.status_code == 200 and r.json() == {"id": app, "tag": tag}, r.text
            result.tags[app].append(tag)

        assert hammer(request, threads=CLIENTS, per_thread=PER_CLIENT, timeout=120) == CLIENTS * PER_CLIENT
        for app in APPS:
            result.greenlets[app] = server.get(f"/{app}/greenlet", params={"tag": f"S0x{app}"}).json()
    finally:
        server.stop()
    result.stdout, result.stderr = server.stdout(), server.stderr()
    return result


def count_tags(lines: list[str], pattern: str) -> collections.Counter[str]:
    regex = re.compile(pattern)
    tags: collections.Counter[str] = collections.Counter()
    for line in lines:
        match = regex.fullmatch(line)
        assert match, f"a mixed, cut or misattributed line: {line!r}"
        tags[match["tag"]] += 1
    return tags


def test_at_least_500_requests_ran(run):
    assert sum(len(tags) for tags in run.tags.values()) >= 500
    assert all(run.tags.values())


def test_stdout_lines_are_whole_prefixed_with_their_app_and_each_appears_once(run):
    lines = [line for line in run.stdout.splitlines() if "-end" in line or " G" in line]
    for app in APPS:
        mine = [line for line in lines if line.startswith(f"[{app}] ")]
        assert count_tags(mine, rf"\[{app}\] {app} (?P<tag>G\d+x\d+) {app}-end") == \
            collections.Counter(run.tags[app])
    assert all(line.startswith(("[a] ", "[b] ")) for line in lines), "an unprefixed line"


def test_stderr_lines_are_whole_prefixed_with_their_app_and_each_appears_once(run):
    lines = [line for line in run.stderr.splitlines() if re.search(r" G\d+x\d+", line)]
    for app in APPS:
        mine = [line for line in lines if line.startswith(f"[{app}] ")]
        assert count_tags(mine, rf"\[{app}\] {app} (?P<tag>G\d+x\d+) err") == collections.Counter(run.tags[app])
    assert all(line.startswith(("[a] ", "[b] ")) for line in lines), "an unprefixed line"


def test_a_greenlet_spawned_by_the_app_carries_the_apps_context(run):
    assert run.greenlets["a"] == {"id": "a", "secret": SECRET, "argv": ["a-tool"], "prec": 6}
    assert run.greenlets["b"] == {"id": "b", "secret": None, "argv": ["b"], "prec": 28}


def test_a_greenlets_output_reaches_its_apps_stdout_including_a_final_partial_line(run):
    for app in APPS:
        assert f"[{app}] {app} S0x{app} greenlet\n" in run.stdout
        assert f"[{app}] {app} S0x{app} greenlet-partial\n" in run.stdout
