"""App crossing_b's `xmod`: imports nothing."""
OWNER = "crossing_b"
