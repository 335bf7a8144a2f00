"""App beta's `pkg` package."""
OWNER = "beta"
