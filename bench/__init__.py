"""The price of isolation, measured side by side: ``python -m bench [--quick]``.

See ``bench/README.md``. Nothing here runs in the test suite except the
smoke test (``tests/test_bench_smoke.py``), which runs ``--quick``.
"""
