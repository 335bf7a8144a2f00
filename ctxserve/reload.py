"""Per-app reload, in process, in every worker at once.

Each app has its own module namespace, so a new version of one app can be
imported beside the old one — a new :class:`~ctxserve.apps.App` from the
app's current table and files — and swapped into the routes with one
assignment (:meth:`~ctxserve.dispatch.Dispatcher.set_apps`). Requests in
flight finish on the old version, other apps never wait, no worker
restarts.

A reload request reaches one worker (``POST /apps/NAME/reload`` on the
admin listener); every worker must switch, and none may switch unless all
can. The workers of one server share a run directory (the master's pid
names it, or ``$CTXSERVE_RUNTIME_DIR``) and each runs a small watcher
thread. The worker that got the request coordinates a two-phase switch
through files there:

1. *prepare*: every live worker re-reads the config and imports the new
   version aside, then acknowledges (or reports the import error);
2. *commit* when every worker prepared, else *abort*: the new versions are
   swapped in, or dropped and the old ones go on serving everywhere.

The coordinator answers once every worker has acknowledged the commit, so
each request that starts after the answer gets the new version. A worker
started later (a respawn, or a fork of a preloaded master) applies the
committed reloads that are newer than its own apps before it serves.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import config as _config
from .apps import App
from .dispatch import Dispatcher

__all__ = ["Reloader", "runtime_dir"]

POLL = 0.05  # seconds between two looks at the run directory


def runtime_dir() -> Path:
    """The run directory the workers of this server share."""
    path = os.environ.get("CTXSERVE_RUNTIME_DIR") or os.path.join(
        tempfile.gettempdir(), f"ctxserve-{os.getuid()}-{os.getppid()}")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return Path(path)


def _write(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so that readers see all of it or none (rename is atomic)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(data))
    partial.replace(path)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Reloader:
    """One worker's part in per-app reloads: its watcher, and the coordinator."""

    def __init__(self, dispatcher: Dispatcher, config_path: str | os.PathLike[str],
                 directory: Path | None = None) -> None:
        self.dispatcher = dispatcher
        self.config_path = os.fspath(config_path)
        self.directory = directory or runtime_dir()
        self.pid = os.getpid()
        self._handled: set[tuple[str, str]] = set()
        self._prepared: dict[str, list[App]] = {}
        self._switch = threading.Lock()  # one switch of the routes at a time
        self.running = False

    # -- the watcher, in every worker ------------------------------------------

    def start(self) -> None:
        """Join the server's reloads: catch up, register, watch (in a worker)."""
        self.pid = os.getpid()
        for path in self.directory.glob("reload-*.json"):
            request = _read(path)
            if request is not None:  # older requests are not this worker's
                self._handled.update((request["id"], phase) for phase in ("prepare", "commit", "abort"))
        self._catch_up()
        for registered in self.directory.glob("worker-*"):
            if not _alive(int(registered.name.split("-", 1)[1])):
                registered.unlink(missing_ok=True)
        (self.directory / f"worker-{self.pid}").touch()
        self.running = True
        threading.Thread(target=self._watch, name="ctxserve-reload", daemon=True).start()

    def stop(self) -> None:
        self.running = False
        (self.directory / f"worker-{self.pid}").unlink(missing_ok=True)

    def _catch_up(self) -> None:
        """Apply committed reloads newer than this worker's apps (preload, respawn)."""
        for app in list(self.dispatcher.apps):
            committed = _read(self.directory / f"committed-{app.name}.json")
            if committed is not None and committed["time"] > app.loaded_at:
                ok, _ = self._prepare("catch-up", [app.name])
                if ok:
                    self._commit("catch-up")

    def _watch(self) -> None:
        while self.running and os.getpid() == self.pid:
            for path in sorted(self.directory.glob("reload-*.json")):
                request = _read(path)
                if request is None or (request["id"], request["phase"]) in self._handled:
                    continue
                self._handled.add((request["id"], request["phase"]))
                ok, error = self._step(request)
                _write(self.directory / f"ack-{request['id']}-{request['phase']}-{self.pid}.json",
                       {"ok": ok, "error": error})
            time.sleep(POLL)

    def _step(self, request: dict[str, Any]) -> tuple[bool, str]:
        phase, rid = request["phase"], request["id"]
        if phase == "prepare":
            return self._prepare(rid, request["apps"])
        if phase == "commit":
            return self._commit(rid)
        self._prepared.pop(rid, None)
        return True, ""

    def _prepare(self, rid: str, names: Sequence[str]) -> tuple[bool, str]:
        """Import the new versions aside; the old ones keep serving."""
        try:
            tables = {app.name: app for app in _config.load(self.config_path).apps}
        except _config.ConfigError as exc:
            return False, str(exc)
        fresh = []
        for name in names:
            if name not in tables:
                return False, f"{self.config_path}: apps.{name}: no such app in the config"
            app = App(tables[name])
            if not app.load():
                return False, f"app {name!r} failed to load: {app.error}"
            fresh.append(app)
        self._prepared[rid] = fresh
        return True, ""

    def _commit(self, rid: str) -> tuple[bool, str]:
        fresh = {app.name: app for app in self._prepared.pop(rid, [])}
        with self._switch:
            apps = [fresh.pop(app.name, app) for app in self.dispatcher.apps]
            self.dispatcher.set_apps(apps + list(fresh.values()))
        return True, ""

    # -- the coordinator, in the worker that got the request ---------------------

    def reload(self, names: Sequence[str], timeout: float = 60) -> tuple[int, dict[str, Any]]:
        """Reload *names* in every worker: ``(HTTP status, JSON answer)``.

        200 when every worker serves the new versions; 500 when one could
        not import them (the old ones keep serving everywhere); 400 for a
        config that does not validate, 404 for an unknown app; 503 when this
        worker takes no part in reloads (no watcher running).
        """
        if not self.running:
            return 503, {"ok": False, "error": "per-app reload needs ctxserve's gunicorn hooks: "
                                              "run `ctxserve serve` or gunicorn -c deploy/gunicorn.conf.py"}
        try:
            config = _config.load(self.config_path)
        except _config.ConfigError as exc:
            return 400, {"ok": False, "error": str(exc)}
        known = {app.name for app in config.apps}
        unknown = [name for name in names if name not in known]
        if unknown:
            return 404, {"ok": False, "error": f"no app named {', '.join(unknown)} in {config.path}"}
        # What serves each app now, for the caller to say what a failed
        # reload leaves: "loaded" (the old version keeps serving), "failed"
        # (it answers 503, as it did) or "absent" (new in the file: nothing).
        serving = {app.name: "loaded" if app.loaded else "failed" for app in self.dispatcher.apps}
        before = {name: serving.get(name, "absent") for name in names}
        rid = uuid.uuid4().hex
        request_path = self.directory / f"reload-{rid}.json"
        request = {"id": rid, "apps": list(names), "phase": "prepare", "time": time.time()}
        try:
            _write(request_path, request)
            acks = self._wait(rid, "prepare", timeout)
            failed = [ack["error"] for ack in acks.values() if not ack["ok"]]
            if failed or not acks:
                _write(request_path, {**request, "phase": "abort"})
                self._wait(rid, "abort", timeout)
                return 500, {"ok": False, "error": failed[0] if failed else "no worker answered",
                             "before": before}
            committed = time.time()
            _write(request_path, {**request, "phase": "commit"})
            acks = self._wait(rid, "commit", timeout)
            for name in names:
                _write(self.directory / f"committed-{name}.json", {"id": rid, "time": committed})
            late = [ack["error"] for ack in acks.values() if not ack["ok"]]
            if late:  # it switches when it catches up; say that it has not yet
                return 500, {"ok": False, "error": "; ".join(late), "before": before}
            return 200, {"ok": True, "apps": list(names), "workers": sorted(acks)}
        finally:
            request_path.unlink(missing_ok=True)
            for ack in self.directory.glob(f"ack-{rid}-*.json"):
                ack.unlink(missing_ok=True)

    def _wait(self, rid: str, phase: str, timeout: float) -> dict[int, dict[str, Any]]:
        """The acknowledgements of every live worker (bounded by *timeout*)."""
        deadline = time.monotonic() + timeout
        while True:
            workers = {int(p.name.split("-", 1)[1]) for p in self.directory.glob("worker-*")}
            live = {pid for pid in workers if _alive(pid)}
            acks = {pid: _read(self.directory / f"ack-{rid}-{phase}-{pid}.json") for pid in live}
            answered = {pid: ack for pid, ack in acks.items() if ack is not None}
            if len(answered) == len(live) or time.monotonic() > deadline:
                for pid in live - set(answered):
                    answered[pid] = {"ok": False, "error": f"worker {pid} did not answer in {timeout:g}s"}
                return answered
            time.sleep(POLL / 2)
