"""App alpha's `pkg.sub.leaf`."""
OWNER = "alpha"
