"""App alpha's `pkg.sub`: `from . import mod` at import time."""
from . import mod

OWNER = "alpha"
