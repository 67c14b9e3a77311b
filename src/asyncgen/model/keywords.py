"""The keywords of a JSON Schema that asyncgen lets through to the models, and those it
does not.

datamodel-code-generator reads extension keywords of its own from the schemas it is
given. Some choose code: `customTypePath`, `customBasePath`, `x-python-type` and
`x-python-import` make the models import any module and use any class as a type or a
base class, `x-is-base-class` and `x-is-classvar` change what a class or a field is.
Nothing in a spec may choose what generated code imports, so these are refused (the
validate stage reports them). Others only rename or reshape what is generated (enum
member names and comments, literals instead of enums, default factories): they are
dropped with a warning. Both are removed from every schema before it reaches the
generator, whatever the validate stage said.

The walk below visits the schemas inside a schema (never the names of properties, nor
enum values, defaults and examples, which are data), iteratively, so that deep nesting
cannot exhaust Python's stack.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

#: Keywords that choose imports, types or base classes of the generated code: refused.
CODE_KEYWORDS = frozenset(
    {
        "customTypePath",
        "customBasePath",
        "x-python-type",
        "x-python-import",
        "x-is-base-class",
        "x-is-classvar",
    }
)
#: Prefixes of such keywords (datamodel-code-generator reads several `x-python-*`).
CODE_PREFIXES = ("x-python-",)
#: Keywords that rename or reshape generated code without choosing it: dropped.
IGNORED_KEYWORDS = frozenset(
    {
        "x-enum-varnames",
        "x-enumNames",
        "x-enum-descriptions",
        "x-enum-field-as-literal",
        "x-propertyNames",
        "default_factory",
    }
)
IGNORED_PREFIXES = ("x-datamodel-code-generator-",)

#: Keywords whose value maps names to schemas.
_SCHEMA_MAPS = frozenset(
    {"properties", "patternProperties", "definitions", "$defs", "dependentSchemas"}
)
#: Keywords whose value is a schema, or a list of schemas.
_SCHEMA_VALUES = frozenset(
    {
        "items",
        "additionalItems",
        "additionalProperties",
        "contains",
        "propertyNames",
        "if",
        "then",
        "else",
        "not",
        "unevaluatedItems",
        "unevaluatedProperties",
        "contentSchema",
        "allOf",
        "anyOf",
        "oneOf",
        "prefixItems",
    }
)

#: How deep schemas may nest inside one schema (the generator, jsonschema and black all
#: recurse; 128 levels is far beyond any real payload and well within Python's stack).
MAX_SCHEMA_DEPTH = 128

Path_ = tuple[str | int, ...]


def is_code_keyword(key: str) -> bool:
    return key in CODE_KEYWORDS or key.startswith(CODE_PREFIXES)


def is_ignored_keyword(key: str) -> bool:
    return key in IGNORED_KEYWORDS or key.startswith(IGNORED_PREFIXES)


def _children(schema: dict[str, Any]) -> Iterator[tuple[Path_, Any]]:
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            for name, item in value.items():
                yield (key, name), item
        elif key == "dependencies" and isinstance(value, dict):
            for name, item in value.items():
                if isinstance(item, dict):
                    yield (key, name), item
        elif key in _SCHEMA_VALUES:
            if isinstance(value, list):
                for index, item in enumerate(value):
                    yield (key, index), item
            else:
                yield (key,), value


def walk(schema: Any) -> Iterator[tuple[Path_, dict[str, Any], int]]:
    """Every schema (a mapping) inside `schema`, itself first: its path, itself, and how
    many schemas it is nested in."""
    stack: list[tuple[Path_, Any, int]] = [((), schema, 0)]
    while stack:
        path, item, depth = stack.pop()
        if not isinstance(item, dict):
            continue
        yield path, item, depth
        if depth < MAX_SCHEMA_DEPTH:
            stack.extend((path + sub, child, depth + 1) for sub, child in _children(item))


def generator_keywords(schema: Any) -> Iterator[tuple[Path_, str]]:
    """Where `schema` holds keywords of the generator's own: the path of each and its name."""
    for path, item, _ in walk(schema):
        for key in item:
            if isinstance(key, str) and (is_code_keyword(key) or is_ignored_keyword(key)):
                yield (*path, key), key


def too_deep(schema: Any) -> Path_ | None:
    """The path of the first schema nested deeper than MAX_SCHEMA_DEPTH, if any."""
    for path, item, depth in walk(schema):
        if depth == MAX_SCHEMA_DEPTH and any(True for _ in _children(item)):
            return path
    return None


def without_generator_keywords(schema: Any) -> Any:
    """A copy of `schema` without the generator's own keywords anywhere in it."""
    result = copy.deepcopy(schema)
    for _, item, _ in walk(result):
        for key in [key for key in item if is_code_keyword(key) or is_ignored_keyword(key)]:
            del item[key]
    return result
