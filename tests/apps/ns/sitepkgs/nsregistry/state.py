"""The module-level singleton."""
ITEMS = []
