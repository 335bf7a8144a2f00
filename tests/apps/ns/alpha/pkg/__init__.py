"""App alpha's `pkg` package."""
OWNER = "alpha"
