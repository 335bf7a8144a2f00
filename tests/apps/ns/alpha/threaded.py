"""App alpha's `threaded`: imported only in a thread the app starts."""
OWNER = "alpha"
