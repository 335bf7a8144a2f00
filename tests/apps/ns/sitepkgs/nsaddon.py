"""A shared add-on of ``nsregistry`` (like a Django add-on of Django): it binds
``nsregistry``'s function when it is imported, so if ``nsregistry`` is
isolated and this module is not, it holds the copy of whichever app imported
it first."""
from nsregistry import register


def add(value):
    return register(f"via addon: {value}")
