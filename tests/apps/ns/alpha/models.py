"""App alpha's `models`: a dataclass under `from __future__ import annotations`."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import config

OWNER = "alpha"


@dataclasses.dataclass
class Record:
    thing: config.Thing
    label: str = OWNER
    kind: ClassVar[str] = "class variable, not a field"
