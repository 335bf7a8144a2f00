"""Shared between apps (it is on the process sys.path): lets two apps' imports overlap on purpose."""
import threading

both_importing = threading.Barrier(2)
