"""App alpha's `pkg.other`: reached from pkg.sub.mod with `from ..other import thing`."""
OWNER = "alpha"
thing = "the thing of alpha"
