"""App alpha's `lazy`: imported only inside a request handler."""
OWNER = "alpha"
