"""App beta's `lazy`: imported only inside a request handler."""
OWNER = "beta"
