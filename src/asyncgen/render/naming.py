"""The one place where names and text from a spec become Python source.

Every identifier the templates emit comes from `Namer` (valid, not a keyword or a
builtin, unique in its scope, deterministic), and every piece of spec text that lands in
source goes through `py_literal`, `docstring` or `comment`, so nothing in a spec can
break out of a literal, a docstring or a comment.
"""

from __future__ import annotations

import builtins
import keyword
import re
import unicodedata
from typing import Any

_RESERVED = (
    set(keyword.kwlist)
    | set(keyword.softkwlist)
    | set(dir(builtins))
    | {"self", "cls", "message", "params", "context", "settings", "logger", "typing"}
)
#: Longest name that becomes a file or folder name (file systems allow 255 bytes, and
#: the writer adds a temporary prefix and suffix).
MAX_FILE_NAME = 120
# Word boundaries inside camelCase: `deviceId` -> device|Id, `HTTPServer` -> HTTP|Server,
# `getHTTP` -> get|HTTP, but `IoT` stays one word.
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z][a-zA-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def _ascii_words(text: str) -> list[str]:
    normalized = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words: list[str] = []
    for chunk in re.split(r"[^A-Za-z0-9]+", normalized):
        words.extend(word for word in _CAMEL_BOUNDARY.split(chunk) if word)
    return words


def snake(text: str) -> str:
    """`deviceTelemetry`, `device-telemetry`, `Device Telemetry` -> `device_telemetry`."""
    return "_".join(word.lower() for word in _ascii_words(text))


def pascal(text: str) -> str:
    """`device/telemetry`, `device_telemetry` -> `DeviceTelemetry`."""
    return "".join(word[:1].upper() + word[1:] for word in _ascii_words(text))


def constant(text: str) -> str:
    """`devices/{deviceId}/telemetry` -> `DEVICES_DEVICE_ID_TELEMETRY`."""
    return snake(text).upper()


class Namer:
    """Hands out identifiers that are unique within one scope (a module, a class).

    Two spec names that come out the same (`device-id` and `deviceId`) get `device_id`
    and `device_id_2`, in the order they are asked for; asking again for the same
    spec name returns the same identifier.
    """

    def __init__(
        self,
        reserved: set[str] | None = None,
        reserved_prefixes: tuple[str, ...] = (),
        max_length: int | None = None,
    ) -> None:
        self._taken: set[str] = set(reserved or ())
        #: Names starting with one of these get the fallback in front (pydantic keeps
        #: `model_` for itself).
        self._reserved_prefixes = reserved_prefixes
        #: For names that become file names.
        self._max_length = max_length
        self._given: dict[tuple[str, str], str] = {}

    def _unique(self, candidate: str, fallback: str, style: str, source: str) -> str:
        key = (style, source)
        if key in self._given:
            return self._given[key]
        if self._max_length is not None:
            candidate = candidate[: self._max_length].rstrip("_")
        if not candidate:
            candidate = fallback
        if candidate[0].isdigit() or candidate.startswith(self._reserved_prefixes):
            candidate = f"{fallback}{candidate}" if style == "pascal" else f"{fallback}_{candidate}"
        if candidate in _RESERVED:
            # `None` -> `NonePayload`: a class name with a trailing `_` is renamed by
            # datamodel-code-generator, which would break the names the templates use.
            candidate += fallback if style == "pascal" else "_"
        name, counter = candidate, 2
        while name in self._taken:
            name = f"{candidate}{counter}" if style == "pascal" else f"{candidate}_{counter}"
            counter += 1
        self._taken.add(name)
        self._given[key] = name
        return name

    def snake(self, source: str, fallback: str = "value") -> str:
        return self._unique(snake(source), fallback, "snake", source)

    def pascal(self, source: str, fallback: str = "Model") -> str:
        return self._unique(pascal(source), fallback, "pascal", source)

    def constant(self, source: str, fallback: str = "VALUE") -> str:
        return self._unique(constant(source), fallback, "constant", source)

    def reserve(self, name: str) -> None:
        self._taken.add(name)


def py_literal(value: Any) -> str:
    """A Python literal for JSON-like data (str, numbers, bool, None, lists, dicts), or
    bytes."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return f'float("{value}")'
    if isinstance(value, dict):
        items = ", ".join(f"{py_literal(str(k))}: {py_literal(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(py_literal(item) for item in value) + "]"
    if isinstance(value, str):
        return _py_str(value)
    if isinstance(value, bytes):
        return "b" + _py_str(value.decode("latin-1"), ascii_only=True)
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    return _py_str(str(value))


def _py_str(text: str, ascii_only: bool = False) -> str:
    """A string literal quoted as black quotes it: double quotes unless that escapes more.

    `ascii_only` escapes every other character (`\xff`), as a bytes literal must."""
    literal = ascii(text) if ascii_only else repr(text)
    if literal.startswith('"') or text.count('"') > text.count("'"):
        return literal
    body = literal[1:-1].replace("\\'", "'").replace('"', '\\"')
    return f'"{body}"'


def docstring(text: str | None, limit: int = 2000) -> str:
    """Text made safe to sit between triple quotes: no way out of the docstring."""
    if not text:
        return ""
    text = text.strip()[:limit]
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    # Control characters other than newline and tab would be invisible or break tooling.
    if not text.replace("\n", "").replace("\t", "").isprintable():
        text = "".join(ch if ch in "\n\t" or ch.isprintable() else " " for ch in text)
    text = "\n".join(line.rstrip() for line in text.splitlines())
    if text.endswith('"'):
        text += " "
    return text


def comment(text: str | None, limit: int = 200) -> str:
    """Text made safe for a single `#` comment line."""
    if not text:
        return ""
    flat = " ".join(text.split())[:limit]
    if flat.isprintable():
        return flat
    return "".join(ch if ch.isprintable() else " " for ch in flat)


def summary_line(text: str | None, limit: int = 100) -> str:
    """The first sentence or line of a description, for one-line docstrings."""
    if not text:
        return ""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first[:limit]


def dotenv_value(text: str) -> str | None:
    """`text` as the value of a `.env` line: bare when plain, else single-quoted with `\\`
    and `'` escaped; None when no line holds it exactly (line breaks, control characters,
    and `${`, which python-dotenv expands even inside quotes)."""
    if "${" in text or comment(text, limit=len(text)) != text:
        return None
    if re.fullmatch(r"[A-Za-z0-9_.:/@+\-]*", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def toml_string(text: str) -> str:
    """A TOML basic string (in double quotes) holding exactly `text`."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\u{ord(m.group()):04x}", escaped) + '"'
