"""A local, durable place for dead letters the broker would not take.

One file per dead letter in a directory: a first line of JSON with its metadata (the
`Dead-Letter-*` headers and the original's own), then the original bytes unchanged. Each
file is written under a temporary name, flushed to disk and renamed, so that a crash
leaves either the whole dead letter or none of it. The directory is bounded in bytes:
a dead letter that would overflow it is refused (`put` returns False).

Part of asyncgen's service runtime. Generated projects hold an unchanged copy, rewritten
by every `asyncgen generate`: do not edit the copy.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .deadletters import DeadLetter

SUFFIX = ".deadletter"
_TEMPORARY = ".partial"


@dataclass(frozen=True)
class SpooledLetter:
    """A dead letter in the spool, and the file that holds it."""

    path: Path
    letter: DeadLetter

    @property
    def size(self) -> int:
        return len(self.letter.payload)


def encode(letter: DeadLetter) -> bytes:
    """A spool file's content: the metadata as one line of JSON, then the payload."""
    return json.dumps(letter.metadata()).encode() + b"\n" + letter.payload


def decode(content: bytes) -> DeadLetter:
    """The dead letter in a spool file's content; ValueError (TypeError) when it is
    not one."""
    metadata_line, separator, payload = content.partition(b"\n")
    if not separator:
        raise ValueError("no metadata line")
    try:
        metadata = json.loads(metadata_line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"unreadable metadata: {exc}") from None
    if not isinstance(metadata, dict):
        raise TypeError("the metadata is not a JSON object")
    return DeadLetter.from_metadata(
        payload, {str(key): str(value) for key, value in metadata.items()}
    )


class Spool:
    """Dead letters in `directory`, at most `max_bytes` of them in all."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._used: int | None = None  # counted at the first `put`
        self._sequence = itertools.count()

    def used(self) -> int:
        """Bytes the spool's files take (counted once, then kept up to date)."""
        if self._used is None:
            self._used = sum(path.stat().st_size for path in self._files())
        return self._used

    def put(self, letter: DeadLetter) -> bool:
        """Keep `letter` on disk; False, keeping nothing, when it would not fit."""
        content = encode(letter)
        if self.used() + len(content) > self.max_bytes:
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        # Names sort by time, then by the order of this process's writes.
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._sequence):06d}"
        partial = self.directory / (name + _TEMPORARY)
        with partial.open("wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        partial.rename(self.directory / (name + SUFFIX))
        self._sync_directory()
        self._used = self.used() + len(content)
        return True

    def letters(self) -> Iterator[SpooledLetter]:
        """The dead letters, oldest first; unreadable files are passed over."""
        for path in sorted(self._files()):
            try:
                letter = decode(path.read_bytes())
            except (OSError, ValueError, TypeError):
                continue
            yield SpooledLetter(path, letter)

    def remove(self, spooled: SpooledLetter) -> None:
        try:
            size = spooled.path.stat().st_size
            spooled.path.unlink()
        except FileNotFoundError:
            return
        if self._used is not None:
            self._used = max(0, self._used - size)

    def _files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return [path for path in self.directory.iterdir() if path.suffix == SUFFIX]

    def _sync_directory(self) -> None:
        # The rename is durable once the directory itself is on disk.
        try:
            descriptor = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(descriptor)
        except OSError:
            pass
        finally:
            os.close(descriptor)
