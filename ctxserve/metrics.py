"""Per-app request metrics for the admin listener (``/metrics``, ``/status``).

Built only when ``[server] admin`` is set: with the admin listener off this
module is not even imported and the per-request path is untouched.

Series (prometheus-client, in its multiprocess mode when
``PROMETHEUS_MULTIPROC_DIR`` is set, so that ``workers > 1`` reports sums
over every worker and a restarted worker loses nothing already counted):

* ``ctxserve_requests_total{app, code}`` — requests by final HTTP status
  (500s from app errors and 503s from bulkheads included);
* ``ctxserve_request_duration_seconds{app}`` — histogram, from the call to
  the response's ``close()``;
* ``ctxserve_requests_in_flight{app}`` — gauge (livesum over workers);
* ``ctxserve_app_up{app}`` — gauge, 1 loaded / 0 failed (livemin: 1 only
  if the app is up in every live worker).

The per-request cost, and why it is not spent in prometheus-client
------------------------------------------------------------------
A multiprocess value is written to an mmap'd file under a lock on every
``inc()`` (measured: ~1.2 µs a ``Counter.inc``, ~2.5 µs a histogram
``observe``, so ~6 µs a request for the four series), far more than the
budget of ~0.5 µs a request. So the hot path (:meth:`Metrics.meter`) only

* counts the start with ``itertools.count().__next__`` (atomic under the GIL),
* reads ``time.perf_counter()`` twice,
* appends one ``(status, seconds)`` tuple to the app's deque (atomic),

and :meth:`Metrics.fold` turns those into prometheus values off the hot
path: every :data:`FOLD_INTERVAL` seconds in a background thread, before
``/metrics`` or ``/status`` is answered, and when the worker exits. Label
children are resolved when the app is metered (and per status code, once,
in ``fold``), never per request.

The status code is read from gunicorn's own response object (the
``__self__`` of ``start_response``, whose ``status`` gunicorn sets), so
start_response is not wrapped under gunicorn; under another server it is
wrapped by a small capturing object. Which of the two a chain uses is said
when it is composed (:meth:`Metrics.meter`, ``gunicorn=``), never guessed
per request.
"""

from __future__ import annotations

import atexit
import bisect
import collections
import itertools
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as _values
from prometheus_client.multiprocess import MultiProcessCollector

from .apps import App, StartResponse, WSGIApp

__all__ = ["BUCKETS", "CONTENT_TYPE", "ENV", "FOLD_INTERVAL", "Metrics", "quantile"]

#: The variable prometheus-client reads (when it is first imported) to choose
#: its multiprocess mode; ``ctxserve serve`` sets it (server.gunicorn_hooks).
ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Seconds between two folds of the per-request records into prometheus values.
FOLD_INTERVAL = 0.5

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Histogram buckets (seconds): prometheus-client's default starts at 5 ms,
#: too coarse for the sub-millisecond answers of many WSGI apps.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
           float("inf"))


# -- the per-request path ----------------------------------------------------------

class _Capture:
    """``start_response`` for servers other than gunicorn: remembers the status."""

    __slots__ = ("start_response", "status")

    def __init__(self, start_response: StartResponse) -> None:
        self.start_response = start_response
        self.status: str | None = None

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.status = status
        return self.start_response(status, headers, exc_info)


class _Meter:
    """One app's counts between two folds: plain Python objects, no locks.

    Kept by app name: an app replaced by a reload counts on in the same
    meter, its requests still in flight included.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.app: App | None = None
        self.records: collections.deque[tuple[str | None, float]] = collections.deque()
        self._started = itertools.count()
        self.start = self._started.__next__
        self.folded = 0  # records taken out of ``records`` so far

    def started(self) -> int:
        # itertools.count has no public read of its value; its repr is "count(N)".
        return int(repr(self._started)[6:-1])

    def in_flight(self) -> int:
        finished = self.folded + len(self.records)  # read before ``started``: never > started
        return max(0, self.started() - finished)


def _under_gunicorn(inner: WSGIApp, meter: _Meter) -> WSGIApp:
    start, record, clock = meter.start, meter.records.append, time.perf_counter

    def serve(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start()
        t0 = clock()
        try:
            result = inner(environ, start_response)
        except BaseException:
            record((start_response.__self__.status or "500", clock() - t0))
            raise
        if type(result) is list or type(result) is tuple:
            record((start_response.__self__.status, clock() - t0))
            return result
        return _until_close(result, environ, start_response.__self__, t0, record)

    return serve


def _under_other_server(inner: WSGIApp, meter: _Meter) -> WSGIApp:
    start, record, clock = meter.start, meter.records.append, time.perf_counter

    def serve(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start()
        t0 = clock()
        holder = _Capture(start_response)
        try:
            result = inner(environ, holder)
        except BaseException:
            record((holder.status or "500", clock() - t0))
            raise
        if type(result) is list or type(result) is tuple:
            record((holder.status, clock() - t0))
            return result
        return _until_close(result, environ, holder, t0, record)

    return serve


def _until_close(result: Iterable[bytes], environ: dict[str, Any], holder: Any, t0: float,
                 record: Callable[[tuple[str | None, float]], None]) -> Iterable[bytes]:
    """A streamed response: the request ends when the server closes it."""
    file_wrapper = environ.get("wsgi.file_wrapper")
    if file_wrapper is not None and isinstance(result, file_wrapper):
        # Returned as it is, so that the server can still sendfile() it.
        close = getattr(result, "close", None)

        def closed() -> None:
            try:
                if close is not None:
                    close()
            finally:
                record((holder.status, time.perf_counter() - t0))

        result.close = closed  # type: ignore[attr-defined]
        return result
    return _Closing(result, holder, t0, record)


class _Closing:
    """Iterates as *result* does (no extra layer per chunk); records on ``close()``."""

    __slots__ = ("_result", "_holder", "_t0", "_record", "_done")

    def __init__(self, result: Iterable[bytes], holder: Any, t0: float,
                 record: Callable[[tuple[str | None, float]], None]) -> None:
        self._result, self._holder, self._t0, self._record = result, holder, t0, record
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._result)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            if not self._done:
                self._done = True
                self._record((self._holder.status, time.perf_counter() - self._t0))


# -- prometheus values (off the hot path) -------------------------------------------

_live: weakref.WeakSet[Metrics] = weakref.WeakSet()
_SERIES: tuple[Counter, Histogram, Gauge, Gauge] | None = None


def _series() -> tuple[Counter, Histogram, Gauge, Gauge]:
    """The four metrics, made once per process.

    One value object per series and process: two objects for the same
    series would each write their own count to the same multiprocess file.
    """
    global _SERIES
    if _SERIES is None:
        _SERIES = (
            Counter("ctxserve_requests", "Requests answered by each app, by final HTTP status.",
                    ["app", "code"], registry=None),
            Histogram("ctxserve_request_duration_seconds",
                      "Time from the call of the app to the close of its response.",
                      ["app"], buckets=BUCKETS, registry=None),
            Gauge("ctxserve_requests_in_flight", "Requests being answered by each app.",
                  ["app"], multiprocess_mode="livesum", registry=None),
            Gauge("ctxserve_app_up", "1 if the app is loaded (in every live worker), 0 if it failed.",
                  ["app"], multiprocess_mode="livemin", registry=None),
        )
    return _SERIES



class Metrics:
    """The metrics of the apps of one worker, and their exposition.

    :meth:`meter` makes the metered hop of an app (called when the routing
    table is built); :meth:`fold` moves what the requests recorded into the
    prometheus values.
    """

    def __init__(self) -> None:
        self.path = os.environ.get(ENV) or None
        # The values are mmap'd files only if prometheus-client chose its
        # multiprocess mode when it was imported (the variable was set then).
        self.multiprocess = bool(self.path) and _values.ValueClass is not _values.MutexValue
        self.requests, self.duration, self.in_flight, self.up = _series()
        if self.multiprocess:
            self.registry = CollectorRegistry(auto_describe=False)
            MultiProcessCollector(self.registry, self.path)
        else:
            self.registry = CollectorRegistry(auto_describe=True)
            for metric in (self.requests, self.duration, self.in_flight, self.up):
                self.registry.register(metric)
        self._meters: dict[str, _Meter] = {}
        self._children: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        _live.add(self)

    @property
    def meters(self) -> list[_Meter]:
        return list(self._meters.values())

    def meter(self, app: App, inner: WSGIApp, *, gunicorn: bool = False) -> WSGIApp:
        """*inner* (the app's hop), counting each request into the app's meter.

        *gunicorn*: ``start_response`` is a method of gunicorn's ``Response``
        (its ``status`` is read after the call, nothing is wrapped); else it
        is wrapped to capture the status. Kept by app name: an app replaced
        by a reload counts on in the same meter, its requests still in
        flight included. Label children are resolved here, not per request.
        """
        meter = self._meters.get(app.name)
        if meter is None:
            meter = self._meters[app.name] = _Meter(app.name)
            meter.duration = self.duration.labels(app.name)  # type: ignore[attr-defined]
            meter.gauge = self.in_flight.labels(app.name)  # type: ignore[attr-defined]
            meter.up = self.up.labels(app.name)  # type: ignore[attr-defined]
        meter.app = app
        return (_under_gunicorn if gunicorn else _under_other_server)(inner, meter)

    # -- folding ------------------------------------------------------------------

    def fold(self) -> None:
        """Move the recorded requests into the prometheus values (thread-safe)."""
        with self._lock:
            for meter in self.meters:
                self._fold(meter)

    def _fold(self, meter: _Meter) -> None:
        # Only the records there now: appends go on meanwhile (popleft and
        # append are each atomic), the rest waits for the next fold.
        pop = meter.records.popleft
        batch = [pop() for _ in range(len(meter.records))]
        if batch:
            statuses, durations = zip(*batch)
            codes: dict[str, int] = {}
            for status, n in collections.Counter(statuses).items():
                code = status[:3] if status else "500"  # no status: gunicorn answers 500
                codes[code] = codes.get(code, 0) + n
            for code, n in codes.items():
                child = self._children.get((meter.name, code))
                if child is None:
                    child = self._children[meter.name, code] = self.requests.labels(meter.name, code)
                child.inc(n)
            _observe_all(meter.duration, sorted(durations))  # type: ignore[attr-defined]
            meter.folded += len(batch)
        meter.gauge.set(meter.in_flight())  # type: ignore[attr-defined]
        meter.up.set(1 if meter.app is not None and meter.app.loaded else 0)  # type: ignore[attr-defined]

    def start(self) -> None:
        """Fold in the background, in this process; idempotent.

        Called in the worker (gunicorn's ``post_worker_init``, and at the
        first admin request as a fallback), never in gunicorn's master: a
        thread there could hold a lock across the fork of a worker.
        """
        if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
            return
        self._pid = os.getpid()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ctxserve-metrics", daemon=True)
        self._thread.start()

    def _forked(self) -> None:
        """In a new child process: what was recorded belongs to the parent."""
        self._lock = threading.Lock()
        self._thread, self._pid = None, 0
        for meter in self.meters:
            meter.records.clear()
            meter.folded = meter.started()  # nothing in flight here

    def stop(self) -> None:
        """Stop the background fold and fold what is left (at worker exit)."""
        self._stop.set()
        self.fold()

    def _run(self) -> None:
        stop = self._stop
        while not stop.wait(FOLD_INTERVAL):
            try:
                self.fold()
            except Exception:  # never let metrics take the worker down; try again later
                pass

    # -- reading --------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The Prometheus text format, summed over every worker in multiprocess mode."""
        self.fold()
        return generate_latest(self.registry)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per app: requests, errors (5xx), p50/p99 seconds, in flight, up — over every worker."""
        self.fold()
        apps: dict[str, dict[str, Any]] = {
            meter.name: {"requests": 0, "errors": 0, "in_flight": 0, "up": None, "_buckets": {}}
            for meter in self.meters}
        for family in self.registry.collect():
            for sample in family.samples:
                row = apps.get(sample.labels.get("app", ""))
                if row is None:
                    continue
                if sample.name == "ctxserve_requests_total":
                    row["requests"] += int(sample.value)
                    if sample.labels.get("code", "").startswith("5"):
                        row["errors"] += int(sample.value)
                elif sample.name == "ctxserve_request_duration_seconds_bucket":
                    bound = float(sample.labels["le"])
                    row["_buckets"][bound] = row["_buckets"].get(bound, 0) + sample.value
                elif sample.name == "ctxserve_requests_in_flight":
                    row["in_flight"] += int(sample.value)
                elif sample.name == "ctxserve_app_up":
                    row["up"] = int(sample.value)
        for row in apps.values():
            buckets = sorted(row.pop("_buckets").items())
            row["p50_seconds"] = quantile(0.5, buckets)
            row["p99_seconds"] = quantile(0.99, buckets)
        return apps


def _observe_all(child: Histogram, durations: Sequence[float]) -> None:
    """``child.observe(d)`` for each of the *sorted* durations, one write per bucket.

    Uses the histogram's value objects (the same in prometheus-client for
    years: non-cumulative ``_buckets`` and ``_sum``); falls back to
    ``observe`` when they are not there.
    """
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for seconds in durations:
            child.observe(seconds)
        return
    below = 0
    for bound, bucket in zip(bounds, buckets):
        upto = bisect.bisect_right(durations, bound)  # how many are <= bound
        if upto > below:
            bucket.inc(upto - below)
            below = upto
    total.inc(math.fsum(durations))


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Estimate a quantile from cumulative ``(upper bound, count)`` buckets.

    As Prometheus' ``histogram_quantile``: linear within the bucket; the
    largest finite bound when it falls in ``+Inf``; ``None`` without data.
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


# -- process life ---------------------------------------------------------------------

def _after_fork_in_child() -> None:
    # E.g. gunicorn's preload_app: the apps were built in the master. The
    # worker starts its own folding thread (``start``); prometheus-client
    # moves its values to files named after the new pid by itself.
    for metrics in list(_live):
        metrics._forked()


def _at_exit() -> None:
    for metrics in list(_live):
        try:
            metrics.stop()
        except Exception:
            pass


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
