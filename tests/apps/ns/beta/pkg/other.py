"""App beta's `pkg.other`: reached from pkg.sub.mod with `from ..other import thing`."""
OWNER = "beta"
thing = "the thing of beta"
