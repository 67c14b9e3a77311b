"""A content-addressed cache of what is costly to produce: formatted source, model code.

Entries are keyed by a hash of everything that determines them (the input text and the
versions of asyncgen and of the tool that produced them), so a stale entry is never
used: a changed input or tool simply misses. Regenerating with an unchanged spec then
needs neither black nor datamodel-code-generator to be imported.

The cache lives in `$ASYNCGEN_CACHE_DIR`, else `$XDG_CACHE_HOME/asyncgen`, else
`~/.cache/asyncgen`; `ASYNCGEN_NO_CACHE=1` turns it off. It is best effort: a folder that
cannot be written is no error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from functools import cache
from pathlib import Path

from asyncgen import __version__


@cache
def tool_version(distribution: str) -> str:
    """The installed version of a distribution, read without importing it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


def cache_dir() -> Path | None:
    """Where entries live, or None when caching is off."""
    if os.environ.get("ASYNCGEN_NO_CACHE") == "1":
        return None
    if os.environ.get("ASYNCGEN_CACHE_DIR"):
        return Path(os.environ["ASYNCGEN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "asyncgen"


def key(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in (__version__, *parts):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


def get(kind: str, entry: str) -> str | None:
    folder = cache_dir()
    if folder is None:
        return None
    try:
        return (folder / kind / entry[:2] / entry).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def put(kind: str, entry: str, content: str) -> None:
    folder = cache_dir()
    if folder is None:
        return
    _write(folder / kind / entry[:2] / entry, content.encode("utf-8"))


def _write(target: Path, content: bytes) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
        os.replace(temp, target)
    except OSError:
        return


def _remote_entry(url: str) -> Path | None:
    folder = cache_dir()
    if folder is None:
        return None
    entry = hashlib.sha256(url.encode("utf-8")).hexdigest()
    return folder / "remote" / entry[:2] / entry


def get_remote(url: str) -> bytes | None:
    """The cached document fetched from `url`, if any. Unlike the other entries it is
    keyed by its URL alone: it is what was fetched, whichever asyncgen fetched it."""
    path = _remote_entry(url)
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError:
        return None


def put_remote(url: str, content: bytes) -> None:
    path = _remote_entry(url)
    if path is not None:
        _write(path, content)


class Sound:
    """Hashes of inputs a check found nothing wrong with, so that a later run skips the
    check of any input it has seen: a document changed in one place is checked in that
    place only. One file per `kind`, keyed also by asyncgen's version (the checks are
    asyncgen's); best effort like the rest of the cache, and cleared when it grows past
    MAX_ENTRIES."""

    MAX_ENTRIES = 200_000

    def __init__(self, kind: str, *versions: str) -> None:
        folder = cache_dir()
        entry = key("sound", kind, *versions)
        self._path = None if folder is None else folder / "sound" / entry[:2] / entry
        self._known: set[str] = set()
        self._added = False
        if self._path is not None:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                self._known = set(self._path.read_text(encoding="ascii").split())

    @staticmethod
    def canonical(value: object) -> str:
        """`value` (parsed JSON or YAML) as one text, the same for equal values."""
        return json.dumps(value, sort_keys=True, default=repr, ensure_ascii=False)

    @staticmethod
    def digest(*parts: str) -> str:
        digest = hashlib.blake2b(digest_size=16)
        for part in parts:
            digest.update(part.encode("utf-8", "surrogatepass"))
            digest.update(b"\0")
        return digest.hexdigest()

    def __contains__(self, digest: str) -> bool:
        return digest in self._known

    def add(self, digest: str) -> None:
        if digest not in self._known:
            self._known.add(digest)
            self._added = True

    def save(self) -> None:
        if self._path is None or not self._added:
            return
        known = self._known if len(self._known) <= self.MAX_ENTRIES else set()
        _write(self._path, "\n".join(sorted(known)).encode("ascii"))
        self._added = False
