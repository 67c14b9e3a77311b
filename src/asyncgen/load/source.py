"""Read one YAML or JSON file into plain Python data plus a map of source positions.

YAML is read with the YAML 1.2 core schema rules for plain scalars, so `on`, `off`,
`yes`, `no` and unquoted dates stay strings, as they are in JSON. Aliases are
expanded here under a budget, which is what stops "billion laughs" documents.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from asyncgen.errors import Location, Problem, SpecError

#: Refuse input files larger than this (bytes) before parsing them.
MAX_FILE_BYTES = 16 * 1024 * 1024
#: Refuse documents that expand to more values than this (aliases count every time).
MAX_NODES = 1_000_000
#: Refuse documents nested deeper than this.
MAX_DEPTH = 256

Position = tuple[int, int]


@dataclass
class SourceFile:
    """A parsed file: its data and the line/column of every value by JSON pointer."""

    path: Path
    data: Any
    positions: dict[str, Position] = field(default_factory=dict)

    def location(self, pointer: str) -> Location:
        """The location of `pointer`, or of its nearest ancestor with a known position."""
        probe = pointer
        while True:
            if probe in self.positions:
                line, column = self.positions[probe]
                return Location(self.path, pointer, line, column)
            if not probe:
                return Location(self.path, pointer, 1, 1)
            probe = probe.rsplit("/", 1)[0]


def escape_token(token: str) -> str:
    """Escape one JSON pointer reference token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def unescape_token(token: str) -> str:
    """Undo `escape_token`."""
    return token.replace("~1", "/").replace("~0", "~")


class _CoreResolver(yaml.resolver.BaseResolver):
    """Plain-scalar typing of the YAML 1.2 core schema (what JSON users expect)."""


_CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
_CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
_CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)
_CoreResolver.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^<<$"), ["<"])


class _ComposeLoader(
    yaml.reader.Reader,
    yaml.scanner.Scanner,
    yaml.parser.Parser,
    yaml.composer.Composer,
    _CoreResolver,
):
    """Builds the node graph only; turning nodes into data is done by `_Builder`."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _CoreResolver.__init__(self)


def _scalar(node: yaml.ScalarNode) -> Any:
    tag, text = node.tag, node.value
    if tag == "tag:yaml.org,2002:null":
        return None
    if tag == "tag:yaml.org,2002:bool":
        return text.lower() == "true"
    if tag == "tag:yaml.org,2002:int":
        if text.startswith(("0o", "0x")):
            return int(text, 0)
        return int(text)
    if tag == "tag:yaml.org,2002:float":
        return float(text.replace(".inf", "inf").replace(".Inf", "inf").replace(".INF", "inf"))
    return text


class _Builder:
    """Turns a node graph into data, recording positions and refusing runaway input."""

    def __init__(self, path: Path, keep_data: bool = True) -> None:
        self.path = path
        self.positions: dict[str, Position] = {}
        self.count = 0
        self.keep_data = keep_data

    def _fail(self, node: yaml.Node, pointer: str, message: str) -> SpecError:
        line, column = node.start_mark.line + 1, node.start_mark.column + 1
        return SpecError([Problem(Location(self.path, pointer, line, column), message)])

    def build(self, node: yaml.Node, pointer: str = "", depth: int = 0) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self._fail(
                node,
                pointer,
                f"the document expands to more than {MAX_NODES:,} values "
                "(YAML aliases repeated many times?); refusing to expand it",
            )
        if depth > MAX_DEPTH:
            raise self._fail(node, pointer, f"the document is nested deeper than {MAX_DEPTH} levels")
        self.positions.setdefault(pointer, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.ScalarNode):
            return _scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return [
                self.build(item, f"{pointer}/{index}", depth + 1)
                for index, item in enumerate(node.value)
            ]
        assert isinstance(node, yaml.MappingNode)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self._merge(result, value_node, pointer, depth)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self._fail(key_node, pointer, "mapping keys must be plain strings")
            key = str(_scalar(key_node)) if key_node.tag != "tag:yaml.org,2002:null" else "null"
            child = f"{pointer}/{escape_token(key)}"
            if key in result:
                raise self._fail(key_node, child, f"duplicate key {key!r}")
            result[key] = self.build(value_node, child, depth + 1)
        return result

    def _merge(self, result: dict[str, Any], node: yaml.Node, pointer: str, depth: int) -> None:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        for source in sources:
            merged = self.build(source, pointer, depth + 1)
            if not isinstance(merged, dict):
                raise self._fail(source, pointer, "a YAML merge key (<<) needs a mapping")
            for key, value in merged.items():
                result.setdefault(key, value)


def _yaml_error(path: Path, exc: yaml.YAMLError) -> SpecError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    text = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    return SpecError([Problem(Location(path, "", line, column), text)])


def _compose(path: Path, text: str) -> yaml.Node | None:
    loader = _ComposeLoader(text)
    try:
        node = loader.get_single_node()
    finally:
        loader.dispose()
    return node


def _json_positions(path: Path, text: str) -> dict[str, Position]:
    """Positions for a JSON document, read through the YAML composer.

    JSON forbids raw tabs inside strings, so swapping each tab for a space keeps every
    column where it was while sparing the YAML scanner the tabs it rejects.
    """
    try:
        node = _compose(path, text.replace("\t", " "))
    except (yaml.YAMLError, RecursionError):
        return {}
    if node is None:
        return {}
    builder = _Builder(path)
    try:
        builder.build(node)
    except SpecError:
        return {}
    return builder.positions


def _check_json_keys(path: Path, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise SpecError([Problem(Location(path, "", 1, 1), f"duplicate key {key!r}")])
        result[key] = value
    return result


def read_source(path: Path) -> SourceFile:
    """Parse `path` (YAML, or JSON when it ends in .json) or raise SpecError."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SpecError(
                [
                    Problem(
                        Location(path),
                        f"the file is {size:,} bytes; asyncgen reads files up to "
                        f"{MAX_FILE_BYTES:,} bytes",
                    )
                ]
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError([Problem(Location(path), f"cannot read the file: {exc.strerror}")]) from exc
    if b"\x00" in raw:
        raise SpecError([Problem(Location(path), "the file is binary, not YAML or JSON text")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(
            [Problem(Location(path), f"the file is not UTF-8 text (byte {exc.start})")]
        ) from exc

    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text, object_pairs_hook=lambda pairs: _check_json_keys(path, pairs))
        except json.JSONDecodeError as exc:
            where = Location(path, "", exc.lineno, exc.colno)
            raise SpecError([Problem(where, f"invalid JSON: {exc.msg}")]) from exc
        except RecursionError as exc:
            raise SpecError(
                [Problem(Location(path, "", 1, 1), "the document is nested too deeply")]
            ) from exc
        return SourceFile(path, data, _json_positions(path, text))

    try:
        node = _compose(path, text)
    except yaml.YAMLError as exc:
        raise _yaml_error(path, exc) from exc
    except RecursionError as exc:
        raise SpecError(
            [Problem(Location(path, "", 1, 1), "the document is nested too deeply")]
        ) from exc
    if node is None:
        raise SpecError([Problem(Location(path, "", 1, 1), "the file is empty")])
    builder = _Builder(path)
    data = builder.build(node)
    return SourceFile(path, data, builder.positions)
