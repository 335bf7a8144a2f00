"""App beta's `routes`: globals named like attributes of `sys` (as in `from django.urls import path`)."""
OWNER = "beta"
modules = "the modules of beta's routes"
argv = "the argv of beta's routes"


def path():
    return "the path() of beta's routes"
