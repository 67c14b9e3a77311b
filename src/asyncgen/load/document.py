"""A document made of one or more files, and `$ref` resolution across them."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from asyncgen.errors import Location, Problem, SpecError
from asyncgen.load.source import SourceFile, escape_token, read_source, unescape_token

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
        suffix = "".join(f"/{escape_token(str(token))}" for token in tokens)
        return Ref(self.file, self.pointer + suffix)

    def __str__(self) -> str:
        return f"{self.file.name}#{self.pointer}"


@dataclass
class RefPolicy:
    """Which `$ref` targets a document may reach."""

    allow_remote: bool = False
    allow_outside: bool = False
    #: Local refs may not leave this folder (default: the spec's own folder).
    root: Path | None = None


@dataclass
class Document:
    """The root file of a spec plus every file its `$ref`s load."""

    root: SourceFile
    policy: RefPolicy = field(default_factory=RefPolicy)
    files: dict[Path, SourceFile] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.files.setdefault(self.root.path, self.root)

    @property
    def data(self) -> Any:
        return self.root.data

    @property
    def base_dir(self) -> Path:
        return (self.policy.root or self.root.path.parent).resolve()

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
        if source is None:
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

    def _target(self, ref_value: Any, at: Ref) -> Ref:
        if not isinstance(ref_value, str):
            raise SpecError([self.problem(at, "$ref must be a string")])
        if "\x00" in unquote(ref_value):
            raise SpecError([self.problem(at, "$ref holds a NUL character")])
        parts = urlsplit(ref_value)
        if parts.scheme in ("http", "https"):
            if not self.policy.allow_remote:
                raise SpecError(
                    [
                        self.problem(
                            at,
                            f"remote $ref {ref_value!r} refused; asyncgen only reads local "
                            "files (download the file next to the spec and refer to it)",
                        )
                    ]
                )
            raise SpecError([self.problem(at, f"unsupported: remote $ref {ref_value!r}")])
        if parts.scheme and len(parts.scheme) > 1:
            raise SpecError([self.problem(at, f"unsupported $ref scheme in {ref_value!r}")])
        file = at.file
        if parts.path:
            file = (at.file.parent / unquote(parts.path)).resolve()
            if not self.policy.allow_outside and not file.is_relative_to(self.base_dir):
                common = Path(os.path.commonpath([file, self.base_dir]))
                raise SpecError(
                    [
                        self.problem(
                            at,
                            f"$ref {ref_value!r} leaves the folder {self.base_dir}; refused "
                            f"(pass --refs-root {common} to allow refs inside that folder)",
                        )
                    ]
                )
        pointer = unquote(parts.fragment)
        if pointer and not pointer.startswith("/"):
            raise SpecError(
                [self.problem(at, f"$ref {ref_value!r}: the fragment must be a JSON pointer")]
            )
        return Ref(file, pointer)

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
