"""The virtualized-globals loops, and a WSGI app that runs one of them per request.

The same functions run in plain Python (a process where ctxserve was never
imported), in a ctxserve process outside every app, and inside an app's
request: only where they run differs. Each ``op_*(n)`` runs *n* operations
and returns the elapsed nanoseconds.
"""

import decimal
import os
import sys
import time

LINE = "a line of output from the app, about sixty characters long.."
LINE_NL = LINE + "\n"


def op_print(n):
    clock = time.perf_counter_ns
    line = LINE
    t0 = clock()
    for _ in range(n):
        print(line)
    return clock() - t0


def op_stdout_write(n):
    clock = time.perf_counter_ns
    line = LINE_NL
    t0 = clock()
    for _ in range(n):
        sys.stdout.write(line)
    return clock() - t0


def op_environ_getitem(n):
    clock = time.perf_counter_ns
    t0 = clock()
    for _ in range(n):
        os.environ["BENCH_VAR"]
    return clock() - t0


def op_getenv(n):
    clock = time.perf_counter_ns
    t0 = clock()
    for _ in range(n):
        os.getenv("BENCH_VAR")
    return clock() - t0


def op_decimal(n):
    clock = time.perf_counter_ns
    D = decimal.Decimal
    a, b, c, d = D("1234.5678"), D("3.14159"), D("0.0001"), D("7")
    t0 = clock()
    for _ in range(n):
        (a * b + c) / d
    return clock() - t0


OPS = {
    "print()": op_print,
    "sys.stdout.write": op_stdout_write,
    "os.environ[k]": op_environ_getitem,
    "os.getenv": op_getenv,
    "decimal (a*b+c)/d": op_decimal,
}


def application(environ, start_response):
    """Runs ``OPS[environ["bench.op"]](environ["bench.n"])`` inside the request."""
    environ["bench.result"] = OPS[environ["bench.op"]](environ["bench.n"])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]
