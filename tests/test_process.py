"""The process layer: one install() puts every declared stand-in in place, once."""

from __future__ import annotations

import concurrent.futures
import logging
import os
import subprocess
import sys
import threading

from ctxserve import binding, environ, namespaces, process, streams, virtual


def test_install_puts_every_row_in_place_once() -> None:
    process.install()
    process.install()  # idempotent: nothing is wrapped twice
    assert process.installed()
    assert type(sys) is virtual.SysModule
    assert isinstance(sys.__dict__["stdout"], streams.StreamProxy)
    assert isinstance(os.environ, environ.EnvironView)
    for patched in (threading.Thread.start, concurrent.futures.ThreadPoolExecutor.submit,
                    logging.getLogger, os.system, subprocess.Popen.__init__):
        inner = patched.__wrapped__  # type: ignore[attr-defined]
        assert not hasattr(inner, "__wrapped__"), f"{patched} is wrapped twice"
    assert sum(1 for finder in sys.meta_path if finder is namespaces.IsolateGuard) == 1


def test_outside_every_app_the_stand_ins_answer_with_the_servers_binding() -> None:
    process.install()
    assert binding.current.get() is None
    assert sys.stdout is binding.server.stdout and sys.path is binding.server.path
    assert os.environ["PATH"] == environ.real_environ["PATH"]


def test_every_row_names_a_kind_a_reason_and_what_is_done() -> None:
    for row in process.GLOBALS:
        assert row.kind in process.KINDS and row.by and row.why, row
