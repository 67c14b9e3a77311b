"""asyncgen's service runtime: what every generated service runs on.

asyncgen copies this package unchanged into each generated project, as
`_generated/runtime/`, rewritten by every `asyncgen generate` (do not edit the copy);
the project's generated modules hold only what its AsyncAPI document decides and say
which runtime version they were written for.
"""

from __future__ import annotations

#: Raised by one when the runtime changes in a way the generated modules must follow.
VERSION = 2


class RuntimeVersionError(ImportError):
    """The generated modules were written for another version of the runtime."""


def check_version(expected: int) -> None:
    """Refuse to run generated modules written against another runtime version."""
    if expected != VERSION:
        raise RuntimeVersionError(
            f"the generated modules were written for runtime version {expected}, but "
            f"the runtime beside them is version {VERSION}: regenerate the project "
            "with `asyncgen generate`"
        )
