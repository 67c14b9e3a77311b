"""Structural validation: the raw root document against asyncgen's schema of AsyncAPI.

Runs before any `$ref` is followed (a Reference Object is accepted wherever AsyncAPI
allows one) and reports every problem at once, each as a plain sentence at the JSON
pointer of the offending value. The schemas themselves are in `schemas.py`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from functools import cache
from typing import TYPE_CHECKING, Any

from asyncgen.errors import Problem
from asyncgen.load import Document
from asyncgen.load.source import escape_token
from asyncgen.validate.quick import quick_validator, quickly_valid
from asyncgen.validate.schemas import SUPPORTED_VERSIONS, Schema, schema_for

if TYPE_CHECKING:
    # jsonschema is imported only to explain problems: a valid document never needs it.
    from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped, unused-ignore]

#: Longest excerpt of a value quoted in a message.
MAX_QUOTE = 60

TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "a boolean",
    "null": "null",
}

#: Advice for unknown fields that are usually a mix-up between AsyncAPI 2.x and 3.0,
#: keyed by (title of the object, field).
_HINTS = {
    ("channel", "publish"): "AsyncAPI 3.0 declares operations under `operations`",
    ("channel", "subscribe"): "AsyncAPI 3.0 declares operations under `operations`",
    ("AsyncAPI document", "tags"): "in AsyncAPI 3.0 `tags` belong in `info`",
    ("AsyncAPI document", "externalDocs"): "in AsyncAPI 3.0 `externalDocs` belong in `info`",
    ("server", "url"): "AsyncAPI 3.0 servers have `host` and `pathname` instead of `url`",
    ("server", "host"): "AsyncAPI 2.x servers have `url` instead of `host`",
}


def check_structure(doc: Document) -> list[Problem]:
    """Every way the root document breaks AsyncAPI's structure, sorted by line.

    A missing, malformed or unsupported `asyncapi` version is reported alone: without
    it there is no schema to check the rest against.
    """
    data = doc.data
    if not isinstance(data, dict):
        return [Problem(doc.root.location(""), "the document must be a mapping")]
    version_problem = _check_version(data)
    if version_problem is not None:
        pointer = "/asyncapi" if "asyncapi" in data else ""
        return [Problem(doc.root.location(pointer), version_problem)]

    version = data["asyncapi"]
    if _fast_valid(version, data):
        return []
    problems: dict[tuple[str, str], Problem] = {}
    for error in _validator(version).iter_errors(data):
        for pointer, message in explain(error):
            problems.setdefault((pointer, message), Problem(doc.root.location(pointer), message))
    return sorted(
        problems.values(),
        key=lambda p: (p.location.line, p.location.column, p.location.pointer, p.message),
    )


def _check_version(data: dict[str, Any]) -> str | None:
    supported = ", ".join(SUPPORTED_VERSIONS)
    if "asyncapi" not in data:
        return f"`asyncapi` is required: the AsyncAPI version of the document ({supported})"
    version = data["asyncapi"]
    if not isinstance(version, str):
        return (
            f"`asyncapi` must be a string such as '3.0.0' (got {_quote(version)}); quote it in YAML"
        )
    if version not in SUPPORTED_VERSIONS:
        return f"unsupported AsyncAPI version {_quote(version)} (supported: {supported})"
    return None


def _fast_valid(version: str, data: dict[str, Any]) -> bool:
    """Whether jsonschema-rs finds `data` valid against the same schema: about a hundred
    times faster than jsonschema, which is left to explain the problems (see `quick`)."""
    return quickly_valid(_fast_validator(version), data)


@cache
def _fast_validator(version: str) -> Any:
    return quick_validator(schema_for(version), 2020)


@cache
def _validator(version: str) -> Any:
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]

    return Draft202012Validator(schema_for(version))


def explain(error: ValidationError, prefix: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(JSON pointer, sentence) pairs for one schema error; `prefix` is where the checked
    value sits in its file, when that is not the top level."""
    error = _most_relevant(error)
    path = [*prefix, *error.absolute_path]
    pointer = _pointer(path)
    schema: Schema = error.schema if isinstance(error.schema, dict) else {}
    keyword = error.validator
    instance = error.instance

    if "propertyNames" in list(error.absolute_schema_path)[-2:]:
        expected = schema.get("x-expected", "a valid name")
        return [
            (_pointer([*path, instance]), f"invalid name {_quote(instance)}: expected {expected}")
        ]
    if keyword in ("anyOf", "oneOf"):
        missing = _missing_alternatives(error)
        if missing:
            fields = " or ".join(f"`{name}`" for name in missing)
            return [(pointer, f"{fields} is required{_in_object(schema, path)}")]
    if keyword == "required":
        if "x-expected" in schema:
            return [(pointer, f"expected {schema['x-expected']}")]
        return [
            (pointer, f"`{name}` is required{_in_object(schema, path)}")
            for name in _as_list(error.validator_value)
            if isinstance(instance, dict) and name not in instance
        ]
    if keyword == "additionalProperties" and isinstance(instance, dict):
        return [
            (_pointer([*path, key]), _unknown_field(key, schema, path))
            for key in _unknown_keys(instance, schema)
        ]
    if keyword == "type":
        return [(pointer, f"expected {_expected(schema)}, got {_kind(instance)}")]
    if keyword in ("enum", "const"):
        values = _as_list(error.validator_value) if keyword == "enum" else [error.validator_value]
        choices = ", ".join(str(value) for value in values)
        return [(pointer, f"{_subject(path)} must be one of: {choices} (got {_quote(instance)})")]
    if keyword == "pattern":
        expected = schema.get("x-expected", f"text matching {error.validator_value}")
        return [(pointer, f"{_subject(path)} must be {expected} (got {_quote(instance)})")]
    if keyword == "uniqueItems":
        return [(pointer, f"{_subject(path)} has duplicate items")]
    return [(pointer, _truncate(error.message, 200))]


def _most_relevant(error: ValidationError) -> ValidationError:
    """For `anyOf`/`oneOf` failures, the sub-error that best explains what went wrong."""
    from jsonschema.exceptions import best_match  # type: ignore[import-untyped, unused-ignore]

    while error.validator in ("anyOf", "oneOf") and error.context:
        if _missing_alternatives(error):
            return error
        best = best_match(error.context)
        if best is None:
            break
        error = best
    return error


def _missing_alternatives(error: ValidationError) -> list[str]:
    """For an `anyOf` whose every branch failed on a missing field: those fields."""
    context = error.context or []
    if not context or any(sub.validator != "required" for sub in context):
        return []
    if any(list(sub.absolute_path) != list(error.absolute_path) for sub in context):
        return []
    names: list[str] = []
    for sub in context:
        names.extend(name for name in _as_list(sub.validator_value) if name not in names)
    return names


def _unknown_keys(instance: dict[str, Any], schema: Schema) -> Iterator[str]:
    known = schema.get("properties", {})
    patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
    for key in instance:
        if key not in known and not any(p.search(key) for p in patterns):
            yield key


def _unknown_field(key: str, schema: Schema, path: list[Any]) -> str:
    title = schema.get("title", "")
    where = "at the top level" if not path else f"in {_a(title)}" if title else "here"
    message = f"unknown field `{key}` {where}"
    hint = _HINTS.get((title, key))
    if hint:
        return f"{message} ({hint})"
    close = difflib.get_close_matches(key, list(schema.get("properties", {})), n=1, cutoff=0.75)
    if close:
        return f"{message} (did you mean `{close[0]}`?)"
    if schema.get("patternProperties"):
        return f"{message} (custom fields must start with `x-`)"
    return message


def _expected(schema: Schema) -> str:
    if "x-expected" in schema:
        return str(schema["x-expected"])
    types = schema.get("type", [])
    names = " or ".join(
        TYPE_NAMES.get(t, t) for t in ([types] if isinstance(types, str) else types)
    )
    title = schema.get("title")
    return f"{_a(title)} ({names})" if title else names


def _in_object(schema: Schema, path: list[Any]) -> str:
    title = schema.get("title")
    return f" in {_a(title)}" if title and path else ""


def _subject(path: list[Any]) -> str:
    """How a message names the value at `path`: its key, or its parent's key and index."""
    if not path:
        return "the document"
    last = path[-1]
    if isinstance(last, int):
        names = [token for token in path if isinstance(token, str)]
        return f"item {last} of `{names[-1]}`" if names else f"item {last}"
    return f"`{last}`"


def _a(title: str) -> str:
    if title.startswith(("`", "the ")):
        return title
    return ("an " if title[:1].lower() in "aeiou" else "a ") + title


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _quote(value: Any) -> str:
    """A short rendering of a value for a message: scalars as literals, else their kind."""
    if isinstance(value, dict | list):
        return _kind(value)
    return _truncate(repr(value), MAX_QUOTE)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _pointer(path: Iterable[Any]) -> str:
    return "".join(f"/{escape_token(str(token))}" for token in path)
