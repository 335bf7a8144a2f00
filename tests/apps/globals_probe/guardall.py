"""An app that changes every guarded process global while it loads.

``ctxserve check`` runs it in a process of its own, so nothing here outlives
the check.
"""

import faulthandler
import gc
import locale
import os
import signal
import sys
import tempfile
import time


class Finder:
    """An import hook: finds nothing, but sits on sys.meta_path for every app."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        return None


os.chdir(tempfile.gettempdir() if os.getcwd() != tempfile.gettempdir() else "/")
os.umask(0o077 if os.umask(0o022) != 0o077 else 0o027)
locale.setlocale(locale.LC_NUMERIC, "C.UTF-8" if locale.setlocale(locale.LC_NUMERIC) == "C" else "C")
signal.signal(signal.SIGUSR2, lambda *args: None)
os.putenv("TZ", "UTC-3")
time.tzset()
sys.setrecursionlimit(sys.getrecursionlimit() + 7)
sys.setswitchinterval(sys.getswitchinterval() * 2)
sys.set_int_max_str_digits(sys.get_int_max_str_digits() + 1000)
gc.disable()
sys.meta_path.append(Finder)
(faulthandler.disable if faulthandler.is_enabled() else faulthandler.enable)()


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"changed everything\n"]
