"""App crossing_a's `ymod`: imports nothing."""
OWNER = "crossing_a"
