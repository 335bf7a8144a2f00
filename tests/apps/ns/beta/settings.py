"""App beta's `settings`: a dataclass with explicitly quoted annotations."""
import dataclasses
from typing import ClassVar

import config

OWNER = "beta"


@dataclasses.dataclass
class Quoted:
    thing: "config.Thing"
    label: "str" = OWNER
    kind: "ClassVar[str]" = "class variable, not a field"
