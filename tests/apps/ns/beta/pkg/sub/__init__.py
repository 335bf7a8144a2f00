"""App beta's `pkg.sub`: `from . import mod` at import time."""
from . import mod

OWNER = "beta"
