"""A planned output file: what the render stage hands to the write stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Owner = Literal["generated", "user"]


@dataclass(frozen=True)
class PlannedFile:
    """One file of the output: where it goes, what it holds, and who owns it."""

    path: str
    content: str
    owner: Owner
