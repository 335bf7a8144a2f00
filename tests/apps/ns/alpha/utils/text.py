"""App alpha's `utils.text`."""
from config import OWNER as CONFIG_OWNER

OWNER = "alpha"
