"""App alpha's `utils` package."""
from . import text

OWNER = "alpha"
