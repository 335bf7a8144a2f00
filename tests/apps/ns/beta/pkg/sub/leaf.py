"""App beta's `pkg.sub.leaf`."""
OWNER = "beta"
