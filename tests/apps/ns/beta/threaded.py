"""App beta's `threaded`: imported only in a thread the app starts."""
OWNER = "beta"
