"""Beside wsgi.py: importable only through the entry wsgi.py inserts."""
OWNER = "selfpath_fallback"
