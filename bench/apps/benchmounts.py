"""N apps behind werkzeug's DispatcherMiddleware (no isolation), for the HTTP comparison.

``BENCH_APPS`` = N, ``BENCH_KIND`` = ``tiny`` (``benchbare:application``) or
``flask`` (``benchflask:create_app``); mounted at ``/a0`` ... ``/a{N-1}``,
the same paths every other arrangement serves.
"""

import os

from werkzeug.middleware.dispatcher import DispatcherMiddleware

import benchbare
import benchflask

KIND = os.environ.get("BENCH_KIND", "tiny")
N = int(os.environ.get("BENCH_APPS", "1"))


def _one(k):
    return benchbare.application if KIND == "tiny" else benchflask.create_app(f"a{k}")


application = DispatcherMiddleware(_one(0), {f"/a{k}": _one(k) for k in range(N)})
