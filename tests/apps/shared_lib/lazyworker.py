"""A shared library (on the process's path, not an app's) with one lazy worker thread.

The first call, from whichever app comes first, starts the thread; every
later call, from any app, hands its work to that same thread.
"""

import concurrent.futures
import os
import queue
import threading

_jobs: "queue.Queue[tuple]" = queue.Queue()
_lock = threading.Lock()
_worker = None


def _loop():
    while True:
        fn, future = _jobs.get()
        try:
            future.set_result(fn())
        except BaseException as exc:  # handed back to the caller
            future.set_exception(exc)


def call(fn):
    """Run *fn* in the library's worker thread and return its result."""
    global _worker
    with _lock:
        if _worker is None:
            _worker = threading.Thread(target=_loop, name="lazyworker", daemon=True)
            _worker.start()
    future = concurrent.futures.Future()
    _jobs.put((fn, future))
    return future.result(timeout=10)


def environ_secret():
    """Shared code that reads the environment, as a library's worker would."""
    return os.environ.get("SECRET")
