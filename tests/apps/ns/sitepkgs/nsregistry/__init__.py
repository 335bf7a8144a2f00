"""A pure-Python package with module-level state: one registry per process, unless isolated.

It lives on a shared path entry (the process sys.path), like a site-packages library.
"""
from . import state


def register(value):
    state.ITEMS.append(value)
    return list(state.ITEMS)
