"""App beta's `utils` package."""
from . import text

OWNER = "beta"
