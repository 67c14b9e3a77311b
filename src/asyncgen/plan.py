"""What the render stage hands to the write stage: the planned files, and the handler
signatures the user's handler modules are checked against after writing."""

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


@dataclass(frozen=True)
class Expected:
    """The `handle` signature the generated handler interface expects of one module."""

    module: str
    message_type: str
    params_class: str | None
    reply_type: str | None
