"""A document made of one or more files, and `$ref` resolution across them."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from asyncgen.errors import Location, Problem, SpecError
from asyncgen.load import remote as fetching
from asyncgen.load.source import (
    SourceFile,
    escape_token,
    read_remote_source,
    read_source,
    unescape_token,
)

#: Follow at most this many `$ref`s in a chain before calling it a loop.
MAX_REF_CHAIN = 64
#: An array index in a JSON pointer (RFC 6901: no leading zeros, ASCII digits only).
_INDEX = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True)
class Ref:
    """Where a value lives: a file and a JSON pointer inside it."""

    file: Path
    pointer: str = ""

    def child(self, *tokens: str | int) -> Ref:
        if len(tokens) == 1:  # most calls: one token, spared the join
            return Ref(self.file, f"{self.pointer}/{escape_token(str(tokens[0]))}")
        suffix = "".join(f"/{escape_token(str(token))}" for token in tokens)
        return Ref(self.file, self.pointer + suffix)

    def __str__(self) -> str:
        return f"{self.file.name}#{self.pointer}"


@dataclass
class RefPolicy:
    """Which `$ref` targets a document may reach."""

    allow_remote: bool = False
    allow_outside: bool = False
    #: Local refs may not leave this folder (default: the enclosing repository's folder,
    #: else the spec's own folder).
    root: Path | None = None


def repository_root(folder: Path) -> Path | None:
    """The nearest folder at or above `folder` that holds `.git`, if any."""
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


@dataclass
class Document:
    """The root file of a spec plus every file its `$ref`s load."""

    root: SourceFile
    policy: RefPolicy = field(default_factory=RefPolicy)
    files: dict[Path, SourceFile] = field(default_factory=dict)
    #: The remote documents read, by the name each has in `files`.
    remote: dict[Path, fetching.Remote] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.files.setdefault(self.root.path, self.root)
        self._urls: dict[Path, str] = {}
        folder = self.root.path.parent.resolve()
        self.base_dir = (self.policy.root or repository_root(folder) or folder).resolve()

    @property
    def data(self) -> Any:
        return self.root.data

    @property
    def local_files(self) -> list[Path]:
        """Every local file read, the spec first."""
        return [path for path in self.files if path not in self.remote]

    def location(self, ref: Ref) -> Location:
        source = self.files.get(ref.file)
        if source is None:
            return Location(ref.file, ref.pointer)
        return source.location(ref.pointer)

    def key_location(self, ref: Ref) -> Location:
        """Where the key naming `ref` is written (`info:`), else where its value is."""
        source = self.files.get(ref.file)
        if source is None:
            return Location(ref.file, ref.pointer)
        return source.key_location(ref.pointer)

    def problem(self, ref: Ref, message: str) -> Problem:
        return Problem(self.location(ref), message)

    def _file(self, path: Path, at: Ref) -> SourceFile:
        source = self.files.get(path)
        if source is None and path in self._urls:
            url = self._urls[path]
            try:
                raw, fetched = fetching.fetch(url)
            except fetching.FetchError as exc:
                raise SpecError([self.problem(at, str(exc))]) from None
            source = read_remote_source(path, raw, url)
            self.files[path] = source
            self.remote[path] = fetched
        elif source is None:
            try:
                found = path.is_file()
            except OSError as exc:  # a name longer than the file system takes, ...
                raise SpecError(
                    [self.problem(at, f"$ref points to a file that cannot be read: {exc.strerror}")]
                ) from None
            if not found:
                raise SpecError([self.problem(at, f"$ref points to a missing file: {path}")])
            source = read_source(path)
            self.files[path] = source
        return source

    def _remote_target(self, ref_value: str, at: Ref) -> Ref:
        """Where a ref found in a remote document, or naming one, points."""
        base = self._urls.get(at.file)
        url = urljoin(base, ref_value) if base else ref_value
        parts = urlsplit(url)
        if base is not None and not fetching.is_remote(url):
            raise SpecError(
                [
                    self.problem(
                        at,
                        f"$ref {ref_value!r} in the remote document {base} reaches outside "
                        "the web; a remote document may not refer to local files",
                    )
                ]
            )
        if base is not None and urlsplit(base).scheme == "https" and parts.scheme == "http":
            raise SpecError(
                [self.problem(at, f"$ref {ref_value!r} in {base} leaves https for http; refused")]
            )
        if not self.policy.allow_remote:
            raise SpecError(
                [
                    self.problem(
                        at,
                        f"remote $ref {url!r} refused; pass --allow-remote-refs to fetch it, "
                        "or download the file next to the spec and refer to it",
                    )
                ]
            )
        document = urlunsplit(parts._replace(fragment=""))
        name = Path(urlsplit(document).path).name or "document"
        key = Path("/", "<remote>", hashlib.sha256(document.encode()).hexdigest()[:16], name)
        self._urls[key] = document
        return self._pointer(Ref(key), parts.fragment, ref_value, at)

    def _pointer(self, file: Ref, fragment: str, ref_value: str, at: Ref) -> Ref:
        pointer = unquote(fragment)
        if pointer and not pointer.startswith("/"):
            raise SpecError(
                [self.problem(at, f"$ref {ref_value!r}: the fragment must be a JSON pointer")]
            )
        return Ref(file.file, pointer)

    def _target(self, ref_value: Any, at: Ref) -> Ref:
        if not isinstance(ref_value, str):
            raise SpecError([self.problem(at, "$ref must be a string")])
        if "\x00" in unquote(ref_value):
            raise SpecError([self.problem(at, "$ref holds a NUL character")])
        if ref_value[:1] == "#" and ref_value.isprintable() and ref_value == ref_value.strip():
            # A pointer into the same file, with nothing urlsplit would strip: most refs.
            return self._pointer(Ref(at.file), ref_value[1:], ref_value, at)
        parts = urlsplit(ref_value)
        if fetching.is_remote(ref_value) or (at.file in self._urls and parts.path):
            return self._remote_target(ref_value, at)
        if parts.scheme and len(parts.scheme) > 1:
            raise SpecError([self.problem(at, f"unsupported $ref scheme in {ref_value!r}")])
        file = at.file
        if parts.path:
            file = (at.file.parent / unquote(parts.path)).resolve()
            if not self.policy.allow_outside and not file.is_relative_to(self.base_dir):
                common = Path(os.path.commonpath([file, self.base_dir]))
                remedy = (
                    f"pass --refs-root {common} to allow refs inside that folder"
                    if common.parent != common
                    else "pass --allow-outside-refs to allow refs anywhere"
                )
                raise SpecError(
                    [
                        self.problem(
                            at,
                            f"$ref {ref_value!r} leaves the folder {self.base_dir}; refused "
                            f"({remedy})",
                        )
                    ]
                )
        return self._pointer(Ref(file), parts.fragment, ref_value, at)

    def _lookup(self, target: Ref, at: Ref) -> Any:
        value = self._file(target.file, at).data
        if not target.pointer:
            return value
        for token in target.pointer[1:].split("/"):
            key = unescape_token(token)
            if isinstance(value, dict) and key in value:
                value = value[key]
            elif isinstance(value, list) and _INDEX.fullmatch(key) and int(key) < len(value):
                value = value[int(key)]
            else:
                missing = f"{target.file.name}#{target.pointer}"
                raise SpecError([self.problem(at, f"$ref target not found: {missing}")])
        return value

    def find(self, ref: Ref) -> Any:
        """The value at `ref`, or None when there is nothing there."""
        try:
            return self._lookup(ref, ref)
        except SpecError:
            return None

    def get(self, ref: Ref) -> Any:
        """The value at `ref`, without following a `$ref` found there."""
        return self._lookup(ref, ref)

    def resolve(self, value: Any, at: Ref) -> tuple[Any, Ref]:
        """Follow `$ref`s from `value` (found at `at`) to a concrete value and its place."""
        seen: list[Ref] = []
        while isinstance(value, dict) and "$ref" in value:
            if at in seen or len(seen) >= MAX_REF_CHAIN:
                chain = " -> ".join(str(r) for r in [*seen, at])
                raise SpecError([self.problem(seen[0], f"$ref loop: {chain}")])
            seen.append(at)
            target = self._target(value["$ref"], at)
            value = self._lookup(target, at)
            at = target
        return value, at

    def resolve_at(self, ref: Ref) -> tuple[Any, Ref]:
        """The concrete value at `ref`, following `$ref`s."""
        return self.resolve(self.get(ref), ref)

    def target_of(self, value: dict[str, Any], at: Ref) -> Ref:
        """Where the `$ref` in `value` points, checked against the policy."""
        return self._target(value["$ref"], at)


def load_document(path: Path, policy: RefPolicy | None = None) -> Document:
    """Read the spec at `path`; referenced files are read as refs are resolved."""
    root = read_source(path.resolve())
    if not isinstance(root.data, dict):
        raise SpecError(
            [Problem(root.location(""), "the document must be a mapping (an AsyncAPI object)")]
        )
    return Document(root, policy or RefPolicy())
