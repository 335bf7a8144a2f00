"""App alpha's `routes`: globals named like attributes of `sys` (as in `from django.urls import path`)."""
OWNER = "alpha"
modules = "the modules of alpha's routes"
argv = "the argv of alpha's routes"


def path():
    return "the path() of alpha's routes"
