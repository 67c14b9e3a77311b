"""Where asyncgen's own files are, installed or in a source checkout."""

from __future__ import annotations

from pathlib import Path


def builtin_templates() -> Path:
    """The templates folder, inside the installed package or beside a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parents[1] / "templates"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("asyncgen's templates folder is missing from the installation")


def runtime_sources() -> Path:
    """The service runtime package, whose modules every generated project copies."""
    return Path(__file__).resolve().parent / "runtime"
