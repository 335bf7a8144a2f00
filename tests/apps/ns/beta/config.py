"""App beta's `config`: a module name the other fixture app (alpha) has too."""
import logging

OWNER = "beta"
RELOADS = globals().get("RELOADS", -1) + 1  # how many times importlib.reload ran this body

log = logging.getLogger(__name__)


class Thing:
    """An app-defined class, for pickle and deepcopy."""

    def __init__(self, value):
        self.value = value

    def owner(self):
        return OWNER


def log_something(message):
    log.warning(message)
