"""ctxserve's gunicorn workers (ctxserve/workers.py), one worker object at a time."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# SIGINT lands while the worker's main thread is inside tpool.submit(), which
# holds the pool's lock: the moment a request (or a closing keep-alive
# connection) is handed to the pool. A real signal, delivered there.
_QUIT_DURING_SUBMIT = textwrap.dedent("""
    import os, signal, types
    from gunicorn.config import Config
    from gunicorn.glogging import Logger
    from ctxserve.workers import ThreadWorker

    cfg = Config()
    cfg.set("threads", 2)
    worker = ThreadWorker(1, os.getppid(), [], types.SimpleNamespace(cfg=cfg), 30, cfg, Logger(cfg))
    worker.tpool = worker.get_thread_pool()
    worker.tpool.submit(print, "a pool thread runs").result()
    signal.signal(signal.SIGINT, worker.handle_quit)
    try:
        with worker.tpool._shutdown_lock:  # what submit() holds while it makes the Future
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(100):
                pass  # the handler runs here, between two bytecodes
    except SystemExit as exc:
        print("worker exits", exc.code)
""")


def test_sigint_while_a_request_is_handed_to_the_pool_ends_the_gthread_worker() -> None:
    """gunicorn's gthread handler shuts the pool down inside the signal handler: it
    waited for the lock its own thread held, and the worker never exited (its
    master gone, it stayed an orphan)."""
    try:
        done = subprocess.run([sys.executable, "-c", _QUIT_DURING_SUBMIT], capture_output=True, text=True,
                              timeout=20, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("the worker hung in its SIGINT handler") from exc
    assert done.stdout.splitlines() == ["a pool thread runs", "worker exits 0"], done.stderr
    assert done.returncode == 0
