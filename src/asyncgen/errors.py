"""Problems found in a document, reported together with their source location."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


class Level(StrEnum):
    """How bad a problem is: errors stop generation, warnings do not."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Location:
    """A place in a source file: the file, a JSON pointer, and line/column when known."""

    file: Path
    pointer: str = ""
    line: int = 0
    column: int = 0
    #: The URL the file was fetched from, when it is a remote document.
    url: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        where = self.url or str(self.file)
        if self.line:
            where += f":{self.line}:{self.column}"
        return f"{where} #{self.pointer or '/'}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a document, in a plain sentence."""

    location: Location
    message: str
    level: Level = Level.ERROR

    def __str__(self) -> str:
        return f"{self.location}: {self.level.value}: {self.message}"


@dataclass
class SpecError(Exception):
    """Raised by a pipeline stage when the document cannot go further."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class UsageError(Exception):
    """A problem with how asyncgen was called rather than with the document."""


class UnsupportedError(Exception):
    """The document is valid but uses something asyncgen cannot generate code for."""
