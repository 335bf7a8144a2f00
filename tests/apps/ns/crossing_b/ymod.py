"""App crossing_b's `ymod`: imports `xmod` while app crossing_a is inside its own `xmod`."""
import nsrendezvous

nsrendezvous.both_importing.wait(timeout=10)

import xmod  # noqa: E402,F401

OWNER = "crossing_b"
