"""App beta's `pkg.sub.mod`: relative imports at import time and at call time."""
from ..other import thing as OTHER_THING
from . import leaf

OWNER = "beta"


def sibling_now():
    from . import leaf
    return leaf


def parent_sibling_now():
    from ..other import thing
    return thing
