"""App crossing_a's `xmod`: imports `ymod` while app crossing_b is inside its own `ymod`."""
import nsrendezvous

nsrendezvous.both_importing.wait(timeout=10)

import ymod  # noqa: E402,F401

OWNER = "crossing_a"
