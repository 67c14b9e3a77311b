"""Read one YAML or JSON file into plain Python data plus a map of source positions.

YAML is read with the YAML 1.2 core schema rules for plain scalars, so `on`, `off`,
`yes`, `no` and unquoted dates stay strings, as they are in JSON. Aliases are
expanded here under a budget, which is what stops "billion laughs" documents.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field, replace
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
_TOO_DEEP = f"the document is nested deeper than {MAX_DEPTH} levels"

Position = tuple[int, int]


@dataclass
class SourceFile:
    """A parsed file: its data and the line/column of every value (and key) by JSON pointer."""

    path: Path
    data: Any
    positions: dict[str, Position] = field(default_factory=dict)
    #: The line/column of the key of each mapping member, by the member's pointer.
    key_positions: dict[str, Position] = field(default_factory=dict)
    #: The URL of a remote document (`path` is then only a name for it).
    url: str | None = None

    def location(self, pointer: str) -> Location:
        """The location of `pointer`, or of its nearest ancestor with a known position."""
        probe = pointer
        while True:
            if probe in self.positions:
                line, column = self.positions[probe]
                return Location(self.path, pointer, line, column, self.url)
            if not probe:
                return Location(self.path, pointer, 1, 1, self.url)
            probe = probe.rsplit("/", 1)[0]

    def key_location(self, pointer: str) -> Location:
        """The location of the key naming `pointer` (`info:`), else that of its value."""
        if pointer in self.key_positions:
            line, column = self.key_positions[pointer]
            return Location(self.path, pointer, line, column, self.url)
        return self.location(pointer)


def escape_token(token: str) -> str:
    """Escape one JSON pointer reference token (RFC 6901)."""
    if "~" not in token and "/" not in token:
        return token
    return token.replace("~", "~0").replace("/", "~1")


def unescape_token(token: str) -> str:
    """Undo `escape_token`."""
    if "~" not in token:
        return token
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


class _DepthGuard(yaml.composer.Composer):
    path: Path
    depth: int

    def _too_deep(self, mark: Any) -> SpecError:
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        where = Location(self.path, "", line, column)
        return SpecError([Problem(where, _TOO_DEEP)])

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        # The composer recurses once per level; refuse deep input before Python's stack does.
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH + 1:
                event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call, attr-defined, unused-ignore]
                raise self._too_deep(event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class _ComposeLoader(
    _DepthGuard,
    yaml.reader.Reader,
    yaml.scanner.Scanner,
    yaml.parser.Parser,
    _CoreResolver,
):
    """Builds the node graph only, in pure Python; `_Builder` turns nodes into data."""

    def __init__(self, stream: str, path: Path) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _CoreResolver.__init__(self)
        self.path = path
        self.depth = 0

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        # The scanner's work grows with the square of the `[`/`{` nesting: stop it early.
        if self.flow_level > MAX_DEPTH:
            raise self._too_deep(self.get_mark())
        super().fetch_flow_collection_start(TokenClass)


# libyaml's scanner and parser, when PyYAML was built with it.
_CParser: Any = getattr(getattr(yaml, "cyaml", None), "CParser", None)

if _CParser is not None:

    class _FastComposeLoader(_DepthGuard, _CParser, _CoreResolver):  # type: ignore[misc]
        """The same, with libyaml scanning and parsing: many times faster on large specs."""

        def __init__(self, stream: str, path: Path) -> None:
            _CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            _CoreResolver.__init__(self)
            self.path = path
            self.depth = 0


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _mark(node: yaml.Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _scalar(node: yaml.ScalarNode) -> Any:
    """The value of a scalar; ValueError when an explicit tag does not fit its text."""
    return _scalar_value(node.tag, node.value)


def _scalar_value(tag: str, text: str) -> Any:
    """The value of a scalar of `tag` written as `text`; ValueError when they do not fit."""
    if tag == "tag:yaml.org,2002:null":
        return None
    if tag == "tag:yaml.org,2002:bool":
        if text.lower() not in ("true", "false"):
            raise ValueError(text)
        return text.lower() == "true"
    if tag == "tag:yaml.org,2002:int":
        if text.startswith(("0o", "0x")):
            return int(text, 0)
        return int(text)
    if tag == "tag:yaml.org,2002:float":
        lowered = text.lower()
        if lowered.endswith(".inf"):
            return float(lowered.replace(".inf", "inf"))
        if lowered == ".nan":
            return float("nan")
        return float(text)
    return text


class _Builder:
    """Turns a node graph into data, recording positions and refusing runaway input."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.positions: dict[str, Position] = {}
        self.key_positions: dict[str, Position] = {}
        self.count = 0
        self._members_memo: dict[int, dict[str, tuple[yaml.Node, yaml.Node]]] = {}
        self._size_memo: dict[int, int] = {}
        self._in_progress: set[int] = set()

    def _fail(self, node: yaml.Node, pointer: str, message: str) -> SpecError:
        line, column = _mark(node)
        return SpecError([Problem(Location(self.path, pointer, line, column), message)])

    def _too_many(self, node: yaml.Node, pointer: str) -> SpecError:
        return self._fail(
            node,
            pointer,
            f"the document expands to more than {MAX_NODES:,} values "
            "(YAML aliases repeated many times?); refusing to expand it",
        )

    def _too_deep(self, node: yaml.Node, pointer: str) -> SpecError:
        return self._fail(node, pointer, _TOO_DEEP)

    def _recursive(self, node: yaml.Node, pointer: str) -> SpecError:
        return self._fail(
            node, pointer, "a YAML alias refers to a value that contains it (recursive data)"
        )

    def _key(self, key_node: yaml.Node, pointer: str) -> str:
        """A mapping key as written: `true:` is "true", `1e3:` is "1e3"."""
        if not isinstance(key_node, yaml.ScalarNode):
            raise self._fail(
                key_node, pointer, "mapping keys must be strings, not lists or mappings"
            )
        return str(key_node.value)

    def members(
        self, node: yaml.MappingNode, pointer: str
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """The key/value nodes of a mapping in document order, with merge keys applied.

        An explicit key wins over one merged in with `<<` wherever it stands; among merged
        mappings the first that has a key wins. A key written twice is an error.
        """
        memo = self._members_memo.get(id(node))
        if memo is not None:
            return memo
        if id(node) in self._in_progress:
            raise self._recursive(node, pointer)
        self._in_progress.add(id(node))
        result: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        explicit: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                sources = (
                    value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                )
                for source in sources:
                    if not isinstance(source, yaml.MappingNode):
                        raise self._fail(
                            source,
                            pointer,
                            "a YAML merge key (<<) needs a mapping or a list of mappings",
                        )
                    for key, pair in self.members(source, pointer).items():
                        result.setdefault(key, pair)
                continue
            key = self._key(key_node, pointer)
            if key in explicit:
                child = f"{pointer}/{escape_token(key)}"
                raise self._fail(key_node, child, f"duplicate key {key!r}")
            explicit.add(key)
            result[key] = (key_node, value_node)
        self._in_progress.discard(id(node))
        self._members_memo[id(node)] = result
        return result

    def check_size(self, node: yaml.Node, pointer: str = "", depth: int = 0) -> int:
        """How many values `node` expands to; refuses alias bombs before expanding them."""
        known = self._size_memo.get(id(node))
        if known is not None:
            return known
        if depth > MAX_DEPTH:
            raise self._too_deep(node, pointer)
        if id(node) in self._in_progress:
            raise self._recursive(node, pointer)
        size = 1
        if isinstance(node, yaml.SequenceNode):
            self._in_progress.add(id(node))
            for index, item in enumerate(node.value):
                size += self.check_size(item, f"{pointer}/{index}", depth + 1)
                if size > MAX_NODES:
                    raise self._too_many(item, f"{pointer}/{index}")
            self._in_progress.discard(id(node))
        elif isinstance(node, yaml.MappingNode):
            members = self.members(node, pointer)
            self._in_progress.add(id(node))
            for key, (_, value_node) in members.items():
                child = f"{pointer}/{escape_token(key)}"
                size += self.check_size(value_node, child, depth + 1)
                if size > MAX_NODES:
                    raise self._too_many(value_node, child)
            self._in_progress.discard(id(node))
        self._size_memo[id(node)] = size
        return size

    def build(self, node: yaml.Node, pointer: str = "", depth: int = 0) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self._too_many(node, pointer)
        if depth > MAX_DEPTH:
            raise self._too_deep(node, pointer)
        self.positions.setdefault(pointer, _mark(node))
        if isinstance(node, yaml.ScalarNode):
            try:
                return _scalar(node)
            except ValueError:
                tag = node.tag.replace("tag:yaml.org,2002:", "!!")
                why = f"{_shown(node.value)} cannot be read as {tag}"
                if tag == "!!int" and len(node.value) > sys.get_int_max_str_digits():
                    why = (
                        f"the integer {_shown(node.value)} is longer than the "
                        f"{sys.get_int_max_str_digits():,} digits asyncgen reads"
                    )
                raise self._fail(node, pointer, why) from None
        if isinstance(node, yaml.SequenceNode):
            return [
                self.build(item, f"{pointer}/{index}", depth + 1)
                for index, item in enumerate(node.value)
            ]
        assert isinstance(node, yaml.MappingNode)
        result: dict[str, Any] = {}
        for key, (key_node, value_node) in self.members(node, pointer).items():
            child = f"{pointer}/{escape_token(key)}"
            self.key_positions.setdefault(child, _mark(key_node))
            result[key] = self.build(value_node, child, depth + 1)
        return result

    def run(self, node: yaml.Node, anchors: bool = True) -> Any:
        """The data of `node`. Without `anchors` in the text there are no aliases: every
        node is built once, and `build` itself counts them and bounds their depth."""
        if anchors:
            self.check_size(node)
        return self.build(node)


#: What libyaml says when its own nesting limit trips.
_NESTING_PROBLEMS = frozenset({"exceeded maximum nesting depth"})


def _yaml_error(path: Path, exc: yaml.YAMLError, text: str) -> SpecError:
    if isinstance(exc, yaml.reader.ReaderError):
        before = text[: int(exc.position)]
        line = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
        message = f"invalid YAML: the character U+{int(exc.character):04X} is not allowed"
        return SpecError([Problem(Location(path, "", line, column), message)])
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = getattr(exc, "problem", None) or str(exc)
    if problem in _NESTING_PROBLEMS:
        # libyaml (PyYAML 6.0.4 on) has a nesting limit of its own, which may trip first.
        return SpecError([Problem(Location(path, "", line, column), _TOO_DEEP)])
    context = getattr(exc, "context", None)
    message = f"invalid YAML: {context}: {problem}" if context else f"invalid YAML: {problem}"
    return SpecError([Problem(Location(path, "", line, column), message)])


def _compose(path: Path, text: str) -> yaml.Node | None:
    loader: Any = _FastComposeLoader(text, path) if _CParser else _ComposeLoader(text, path)
    try:
        node: yaml.Node | None = loader.get_single_node()
    finally:
        loader.dispose()
    return node


def _json_positions(
    path: Path, text: str
) -> tuple[dict[str, Position], dict[str, Position]] | None:
    """Value and key positions for a JSON document, read through the YAML composer.

    JSON forbids raw tabs inside strings, so swapping each tab for a space keeps every
    column where it was while sparing the YAML scanner the tabs it rejects. Returns None
    when the YAML reader cannot follow the JSON text; raises SpecError for what YAML
    input would be refused for too (duplicate keys, nesting, size).
    """
    try:
        node = _compose(path, text.replace("\t", " "))
    except (yaml.YAMLError, RecursionError):
        return None
    if node is None:
        return None
    builder = _Builder(path)
    builder.run(node)
    return builder.positions, builder.key_positions


class _DuplicateJsonKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _check_json_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateJsonKey(key)
        result[key] = value
    return result


def _read_json(path: Path, text: str) -> SourceFile:
    try:
        data = json.loads(text, object_pairs_hook=_check_json_keys)
    except _DuplicateJsonKey as exc:
        _json_positions(path, text)  # raises the error at the duplicate key's position
        raise SpecError([Problem(Location(path, "", 1, 1), f"duplicate key {exc.key!r}")]) from None
    except json.JSONDecodeError as exc:
        where = Location(path, "", exc.lineno, exc.colno)
        raise SpecError([Problem(where, f"invalid JSON: {exc.msg}")]) from exc
    except RecursionError as exc:
        raise SpecError([Problem(Location(path, "", 1, 1), _TOO_DEEP)]) from exc
    except ValueError as exc:  # an integer longer than Python reads (sys.int_info)
        _json_positions(path, text)  # raises the error at the number's position
        raise SpecError([Problem(Location(path, "", 1, 1), f"invalid JSON: {exc}")]) from None
    found = _json_positions(path, text)
    if found is None:
        return SourceFile(path, data)
    return SourceFile(path, data, found[0], found[1])


def _shown(value: str, most: int = 40) -> str:
    """`value` quoted for a message, shortened when long (a number of 5,000 digits)."""
    if len(value) <= most:
        return repr(value)
    return f"{value[: most // 2]!r}... ({len(value):,} characters)"


def _lone_surrogate(value: Any, pointer: str = "") -> str | None:
    """The pointer of the first text holding half a UTF-16 surrogate pair, if any.

    JSON and YAML escapes such as `\\udfff` decode to such halves, which are not
    Unicode and could never be written out again.
    """
    stack: list[tuple[Any, str]] = [(value, pointer)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, str):
            if any("\ud800" <= ch <= "\udfff" for ch in item):
                return at
        elif isinstance(item, dict):
            for key, child in item.items():
                if any("\ud800" <= ch <= "\udfff" for ch in key):
                    return at
                stack.append((child, f"{at}/{escape_token(key)}"))
        elif isinstance(item, list):
            stack.extend((child, f"{at}/{index}") for index, child in enumerate(item))
    return None


def read_source(path: Path) -> SourceFile:
    """Parse `path` (YAML, or JSON when it ends in .json) or raise SpecError."""
    return _checked(_read_source(path))


def read_remote_source(path: Path, raw: bytes, url: str) -> SourceFile:
    """Parse a fetched document; `path` names it, problems name `url`."""
    try:
        source = _checked(_parse(path, raw))
    except SpecError as exc:
        raise SpecError(
            [replace(p, location=replace(p.location, url=url)) for p in exc.problems]
        ) from None
    source.url = url
    return source


def _checked(source: SourceFile) -> SourceFile:
    try:
        # A lone surrogate is what UTF-8 cannot encode: one pass in C finds whether
        # there is any, and only then is the document searched for where.
        json.dumps(source.data, ensure_ascii=False, default=str).encode("utf-8")
    except (TypeError, ValueError, RecursionError):  # UnicodeEncodeError among them
        bad = _lone_surrogate(source.data)
    else:
        return source
    if bad is not None:
        raise SpecError(
            [
                Problem(
                    source.location(bad),
                    "the text holds an escaped lone surrogate (such as \\udfff), "
                    "which is not valid Unicode",
                )
            ]
        )
    return source


def _read_source(path: Path) -> SourceFile:
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
    return _parse(path, raw)


def _parse(path: Path, raw: bytes) -> SourceFile:
    if b"\x00" in raw:
        raise SpecError([Problem(Location(path), "the file is binary, not YAML or JSON text")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(
            [Problem(Location(path), f"the file is not UTF-8 text (byte {exc.start})")]
        ) from exc

    if not text.strip():
        raise SpecError([Problem(Location(path, "", 1, 1), "the file is empty")])
    if path.suffix.lower() == ".json":
        return _read_json(path, text)

    if _CParser is not None and "&" not in text and "<<" not in text:
        read = _read_plain(path, text)
        if read is not None:
            return read
    try:
        node = _compose(path, text)
    except yaml.YAMLError as exc:
        raise _yaml_error(path, exc, text) from exc
    except RecursionError as exc:
        raise SpecError([Problem(Location(path, "", 1, 1), _TOO_DEEP)]) from exc
    if node is None:
        raise SpecError([Problem(Location(path, "", 1, 1), "the file is empty")])
    builder = _Builder(path)
    data = builder.run(node, anchors="&" in text)
    return SourceFile(path, data, builder.positions, builder.key_positions)


class _Unusual(Exception):
    """Something `_read_plain` leaves to the node graph, which also words every error."""


def _read_plain(path: Path, text: str) -> SourceFile | None:
    """A YAML document without anchors or merge keys (most of them), read in one pass
    over libyaml's events: the same data and positions as composing its node graph and
    building from it, in about half the time. None for anything else (an alias, a
    duplicate key, a value that does not fit its tag, a document too deep or too large,
    more than one document, any YAML error): the node graph then reads the document
    again and says what is wrong."""
    loader: Any = _FastComposeLoader(text, path)
    try:
        return SourceFile(path, *_plain_events(loader))
    except (_Unusual, yaml.YAMLError, RecursionError, ValueError):
        return None
    finally:
        loader.dispose()


def _plain_events(loader: Any) -> tuple[Any, dict[str, Position], dict[str, Position]]:
    """The data, value positions and key positions of a plain document (see
    `_read_plain`), as `_Builder` records them; `_Unusual` for anything else."""
    positions: dict[str, Position] = {}
    key_positions: dict[str, Position] = {}
    get = loader.get_event
    resolve = loader.resolve
    scalar_event, mapping_start = yaml.ScalarEvent, yaml.MappingStartEvent
    sequence_start, ends = yaml.SequenceStartEvent, (yaml.MappingEndEvent, yaml.SequenceEndEvent)
    # The same plain text (`string`, `object`, `true`) comes back again and again: its
    # value is worked out once (every scalar value is immutable, so it may be shared).
    plain: dict[tuple[str, Any], Any] = {}
    if not isinstance(get(), yaml.StreamStartEvent) or not isinstance(
        get(), yaml.DocumentStartEvent
    ):
        raise _Unusual
    root: list[Any] = []
    # The open collections: (collection, pointer, for a mapping the key waiting for its
    # value and that value's pointer); the document itself is held in a list of one.
    frames: list[tuple[Any, str, list[str] | None]] = [(root, "", None)]
    count = 0
    while True:
        event = get()
        kind = event.__class__
        container, pointer, key = frames[-1]
        mark = event.start_mark
        if kind is scalar_event:
            text = event.value
            if key is not None and not key:
                if text in container or event.tag not in (None, "!"):
                    raise _Unusual  # a duplicate key, or a tagged one (`!!merge x:`)
                child = f"{pointer}/{escape_token(text)}"
                key.extend((text, child))
                key_positions[child] = (mark.line + 1, mark.column + 1)
                continue
            tag = event.tag
            if tag is None or tag == "!":
                cached = (text, event.implicit)
                if cached in plain:
                    value: Any = plain[cached]
                else:
                    value = plain[cached] = _scalar_value(
                        resolve(yaml.ScalarNode, text, event.implicit), text
                    )
            else:
                value = _scalar_value(tag, text)
            opened = False
        elif kind is mapping_start or kind is sequence_start:
            if key is not None and not key:
                raise _Unusual  # a key that is a list or a mapping
            value = {} if kind is mapping_start else []
            opened = True
        elif kind in ends:
            frames.pop()
            if len(frames) == 1:
                break
            continue
        else:  # an alias (of an anchor the text does not define), or anything else
            raise _Unusual
        count += 1
        if count > MAX_NODES or len(frames) > MAX_DEPTH + 1:
            raise _Unusual
        if key is not None:
            name, child = key
            container[name] = value
            key.clear()
        elif container is root:
            child = ""
            container.append(value)
        else:
            child = f"{pointer}/{len(container)}"
            container.append(value)
        positions[child] = (mark.line + 1, mark.column + 1)
        if opened:
            frames.append((value, child, [] if kind is mapping_start else None))
        elif container is root:
            break  # a document of one scalar
    if not isinstance(get(), yaml.DocumentEndEvent) or not isinstance(get(), yaml.StreamEndEvent):
        raise _Unusual  # more than one document
    return root[0], positions, key_positions
