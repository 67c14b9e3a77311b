"""Payload and header schemas against JSON Schema's own rules (draft-07).

AsyncAPI's structure check stops at a Schema Object's door: it only asks for a mapping.
What is inside must be a JSON Schema (AsyncAPI's Schema Object is a superset of draft-07),
or the models made from it break later without a line to point at. Every schema a message
reaches, through `$ref`s across files too, is checked here: each keyword's value has the
right shape, and every `pattern` is a regular expression.

Schemas in another format (Avro, Protobuf, ...) are left alone: generation refuses them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from asyncgen.asyncapi import regex_engine
from asyncgen.cache import Sound, tool_version
from asyncgen.errors import Level, Problem, SpecError
from asyncgen.load import Document, Ref
from asyncgen.load.source import escape_token
from asyncgen.model.formats import AvroError, Dialect, parse_avro, schema_dialect
from asyncgen.model.keywords import (
    MAX_SCHEMA_DEPTH,
    generator_keywords,
    is_code_keyword,
    too_deep,
    walk,
)
from asyncgen.validate.quick import quick_validator, quickly_valid
from asyncgen.validate.structure import TYPE_NAMES

# Keywords whose values are data, not schemas: a `$ref` key in there is not a reference.
_DATA_KEYS = {"enum", "const", "default", "examples", "example"}


#: What OpenAPI 3.0's Schema Object has beyond (or instead of) draft-07's keywords.
_OPENAPI_KEYWORDS: dict[str, Any] = {
    "nullable": {"type": "boolean"},
    "exclusiveMinimum": {"type": ["number", "boolean"]},
    "exclusiveMaximum": {"type": ["number", "boolean"]},
    "discriminator": {
        "type": "object",
        "required": ["propertyName"],
        "properties": {
            "propertyName": {"type": "string"},
            "mapping": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
}


@cache
def _meta_validator(dialect: Dialect = "jsonschema") -> Any:
    # A `pattern` is checked the way the generated models will use it: with pydantic's
    # Rust engine, else Python's (the generated code then asks for "python-re").
    from jsonschema import Draft7Validator, FormatChecker  # type: ignore[import-untyped, unused-ignore]

    checker = FormatChecker(formats=[])

    @checker.checks("regex", raises=ValueError)
    def is_regex(value: object) -> bool:
        if isinstance(value, str):
            engine, why = regex_engine(value)
            if engine is None:
                raise ValueError(why)
        return True

    return Draft7Validator(_meta_schema(dialect), format_checker=checker)


@cache
def _meta_schema(dialect: Dialect) -> dict[str, Any]:
    meta = _draft7_meta_schema()
    if dialect == "openapi":
        # Its own id, so that its `{"$ref": "#"}`s recurse into it and not into draft-07.
        meta = {**meta, "$id": "urn:asyncgen:openapi-3.0-schema"}
        meta["properties"] = {**meta["properties"], **_OPENAPI_KEYWORDS}
    return meta


def _draft7_meta_schema() -> dict[str, Any]:
    """draft-07's meta-schema: jsonschema's own, read from the package that holds it
    (jsonschema-specifications) without importing either, which a document whose
    payload schemas are all sound never needs (a tenth of a second)."""
    spec = importlib.util.find_spec("jsonschema_specifications")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder, "schemas", "draft7", "metaschema.json")
        with contextlib.suppress(OSError, ValueError):
            meta: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return meta
    from jsonschema import Draft7Validator  # type: ignore[import-untyped, unused-ignore]

    return dict(Draft7Validator.META_SCHEMA)


def _fast_sound(schema: Any, dialect: Dialect) -> bool:
    """Whether jsonschema-rs finds `schema` valid against the same meta-schema (see
    `quick`), and every text that may be a `pattern` compiles as the models will compile
    it (the one format the full check asks for)."""
    return quickly_valid(_fast_meta_validator(dialect), schema) and all(
        regex_engine(pattern)[0] is not None for pattern in _patterns(schema)
    )


def _patterns(value: Any) -> Iterator[str]:
    """Every `pattern` string and `patternProperties` key anywhere in `value`, data
    included (more than the meta-schema checks; never less)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            pattern = item.get("pattern")
            if isinstance(pattern, str):
                yield pattern
            properties = item.get("patternProperties")
            if isinstance(properties, dict):
                yield from (key for key in properties if isinstance(key, str))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


@cache
def _fast_meta_validator(dialect: Dialect) -> Any:
    return quick_validator(_meta_schema(dialect), 7)


def check_payload_schemas(doc: Document) -> list[Problem]:
    problems: dict[tuple[str, str], Problem] = {}
    json_schemas, avro_schemas = _schemas_of_messages(doc)
    for place in avro_schemas:
        try:
            schema, at = doc.resolve_at(place)
            parse_avro(schema)
        except AvroError as exc:
            problem = doc.problem(at.child(*exc.path), str(exc))
            problems.setdefault((str(problem.location), problem.message), problem)
        except SpecError:
            continue  # reported by the check of references
    queue = list(json_schemas)
    seen: set[Ref] = set()
    # A schema found sound once is not checked again (its `$ref`s still are followed).
    sound = Sound("payload-schemas", _RULES, tool_version("jsonschema"))
    while queue:
        at, dialect = queue.pop()
        try:
            schema, at = doc.resolve_at(at)
        except SpecError:
            continue  # reported by the check of references
        if at in seen:
            continue
        seen.add(at)
        digest = sound.digest(dialect, sound.canonical(schema))
        if digest not in sound:
            found = list(_schema_problems(doc, schema, at, dialect))
            for problem in found:
                problems.setdefault((str(problem.location), problem.message), problem)
            if not found:
                sound.add(digest)
        queue.extend((target, dialect) for target in _references(doc, schema, at))
    sound.save()
    return sorted(
        problems.values(),
        key=lambda p: (str(p.location.file), p.location.line, p.location.column, p.message),
    )


#: Bumped whenever the checks of `_schema_problems` change.
_RULES = "1"


def _schema_problems(doc: Document, schema: Any, at: Ref, dialect: Dialect) -> Iterator[Problem]:
    def place(path: tuple[str | int, ...]) -> Ref:
        return Ref(at.file, at.pointer + "".join(f"/{escape_token(str(t))}" for t in path))

    deep = too_deep(schema)
    if deep is not None:
        # jsonschema, the model generator and black all recurse into what they read.
        yield doc.problem(
            place(deep), f"the schema is nested deeper than {MAX_SCHEMA_DEPTH} schemas"
        )
        return
    try:
        errors = (
            []
            if _fast_sound(schema, dialect)
            else list(_meta_validator(dialect).iter_errors(schema))
        )
    except RecursionError:
        yield doc.problem(place(()), "the schema is nested too deeply to be checked")
        return
    for error in errors:
        yield doc.problem(place(tuple(error.absolute_path)), _sentence(error))
    if not errors:
        for path, item, _ in walk(schema):
            for where, why in _constraint_problems(item):
                yield doc.problem(place((*path, *where)), why)
    for path, key in generator_keywords(schema):
        if is_code_keyword(key):
            yield doc.problem(
                place(path),
                f"`{key}` (a datamodel-code-generator extension) would choose what the "
                "generated models import, derive from or declare; asyncgen refuses it",
            )
        else:
            yield Problem(
                doc.location(place(path)),
                f"`{key}` (a datamodel-code-generator extension) is ignored: the generated "
                "models follow the standard keywords only",
                Level.WARNING,
            )


#: Bounds that become numbers in the generated models.
_NUMBER_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
#: Counts that become sizes in the generated models (pydantic-core keeps them in 64 bits).
_COUNT_KEYWORDS = (
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
)
_MAX_COUNT = 2**63 - 1


def _constraint_problems(schema: dict[str, Any]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Constraints that are valid JSON Schema but no model can hold: not-a-number,
    infinities, sizes beyond 64 bits, enum values that are arrays or objects."""
    for key in _NUMBER_KEYWORDS:
        value = schema.get(key)
        if isinstance(value, float) and not math.isfinite(value):
            yield (key,), f"`{key}` must be a finite number, not {value}"
        elif isinstance(value, int) and abs(value) > sys.float_info.max:
            yield (key,), f"`{key}` is beyond the range of a 64-bit float (about 1.8e308)"
    for key in _COUNT_KEYWORDS:
        value = schema.get(key)
        if isinstance(value, int | float) and value > _MAX_COUNT:
            yield (key,), f"`{key}` is too large (the most is 2**63 - 1)"
    values = schema.get("enum")
    data = list(enumerate(values)) if isinstance(values, list) else []
    places: list[tuple[tuple[str | int, ...], Any]] = [(("enum", i), v) for i, v in data]
    if "const" in schema:
        places.append((("const",), schema["const"]))
    for where, value in places:
        if isinstance(value, list | dict):
            what = "an enum" if where[0] == "enum" else "a const"
            why = (
                f"unsupported: {what} value that is {_kind(value)}; the generated models hold "
                "enums and constants of strings, numbers, booleans and null"
            )
            yield where, why


def _sentence(error: Any) -> str:
    if error.validator == "format":
        return f"pattern {error.instance!r} is not a valid regular expression"
    if error.validator == "type":
        expected = error.validator_value
        wanted = [str(name) for name in (expected if isinstance(expected, list) else [expected])]
        shape = (
            "a schema (a mapping)"
            if set(wanted) == {"object", "boolean"}
            else " or ".join(TYPE_NAMES.get(name, name) for name in wanted)
        )
        return f"invalid JSON Schema: this must be {shape}, not {_kind(error.instance)}"
    if error.validator == "anyOf" and list(error.absolute_path)[-1:] == ["type"]:
        return (
            f"invalid JSON Schema: {error.instance!r} is not a type (string, number, integer, "
            "boolean, object, array, null)"
        )
    return f"invalid JSON Schema: {error.message}"


def _kind(value: Any) -> str:
    for kind, name in ((bool, "boolean"), (dict, "object"), (list, "array"), (str, "string")):
        if isinstance(value, kind):
            return TYPE_NAMES[name]
    if isinstance(value, int | float):
        return "a number"
    return "null" if value is None else type(value).__name__


def _references(doc: Document, value: Any, at: Ref) -> Iterator[Ref]:
    """The targets of the `$ref`s inside a schema."""
    if isinstance(value, dict):
        if isinstance(value.get("$ref"), str):
            with contextlib.suppress(SpecError):
                yield doc.target_of(value, at)
            return
        for key, item in value.items():
            if key not in _DATA_KEYS:
                yield from _references(doc, item, at.child(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _references(doc, item, at.child(index))


def _schemas_of_messages(doc: Document) -> tuple[list[tuple[Ref, Dialect]], list[Ref]]:
    """Where the JSON Schemas (and OpenAPI Schema Objects) of the messages (payloads,
    headers) and components are, and where their Avro schemas are."""
    json_schemas: list[tuple[Ref, Dialect]] = []
    avro_schemas: list[Ref] = []
    data = doc.data
    root = Ref(doc.root.path)
    components = data.get("components") if isinstance(data.get("components"), dict) else {}
    foreign: set[Ref] = set()  # schemas that a message of another format reaches
    for place in message_places(doc):
        try:
            message, at = doc.resolve_at(place)
        except SpecError:
            continue
        if not isinstance(message, dict):
            continue
        for part in ("headers", "payload"):
            if part not in message:
                continue
            schema_at, schema_format = _unwrap(message[part], at.child(part))
            if part == "payload" and schema_format is None:
                schema_format = message.get("schemaFormat")
            dialect = schema_dialect(schema_format)
            if dialect == "jsonschema":
                json_schemas.append((schema_at, dialect))
                continue
            if dialect == "openapi":
                json_schemas.append((schema_at, dialect))
            elif dialect == "avro":
                avro_schemas.append(schema_at)
            foreign.update(_reached(doc, schema_at))
        traits = message.get("traits")
        if isinstance(traits, list):
            places = [at.child("traits", i) for i in range(len(traits))]
            json_schemas.extend(_trait_headers(doc, places))
    trait_places = [
        root.child("components", "messageTraits", n) for n in _keys(components.get("messageTraits"))
    ]
    json_schemas.extend(_trait_headers(doc, trait_places))
    schemas = components.get("schemas")
    for name, schema in schemas.items() if isinstance(schemas, dict) else []:
        schema_at, schema_format = _unwrap(schema, root.child("components", "schemas", name))
        if schema_dialect(schema_format) == "jsonschema" and schema_at not in foreign:
            json_schemas.append((schema_at, "jsonschema"))
        elif schema_dialect(schema_format) == "avro" and schema_at not in foreign:
            avro_schemas.append(schema_at)
    return json_schemas, avro_schemas


def _reached(doc: Document, start: Ref) -> set[Ref]:
    """The places of the schema at `start` and of every schema its `$ref`s reach."""
    reached: set[Ref] = set()
    queue = [start]
    while queue:
        try:
            schema, at = doc.resolve_at(queue.pop())
        except SpecError:
            continue
        if at not in reached:
            reached.add(at)
            queue.extend(_references(doc, schema, at))
    return reached


def _trait_headers(doc: Document, places: list[Ref]) -> Iterator[tuple[Ref, Dialect]]:
    """The headers schemas of message traits (a trait holds no payload)."""
    for place in places:
        try:
            trait, at = doc.resolve_at(place)
        except SpecError:
            continue
        if isinstance(trait, dict) and "headers" in trait:
            schema_at, schema_format = _unwrap(trait["headers"], at.child("headers"))
            dialect = schema_dialect(schema_format)
            if dialect in ("jsonschema", "openapi"):
                yield schema_at, dialect


def _unwrap(value: Any, at: Ref) -> tuple[Ref, Any]:
    """A Multi Format Schema Object's schema and format (AsyncAPI 3.0), else the value's
    own place and None (the default format)."""
    if isinstance(value, dict) and "schemaFormat" in value and "schema" in value:
        return at.child("schema"), value["schemaFormat"]
    return at, None


def message_places(doc: Document) -> list[Ref]:
    """Where the messages are written in the root file: components, channels, 2.x
    operations (each of a `oneOf`)."""
    root = Ref(doc.root.path)
    found = doc.data.get("components")
    components = found if isinstance(found, dict) else {}
    messages = [root.child("components", "messages", n) for n in _keys(components.get("messages"))]
    channels = doc.data.get("channels") if isinstance(doc.data.get("channels"), dict) else {}
    for key, channel in channels.items():
        try:
            channel, at = doc.resolve(channel, root.child("channels", key))
        except SpecError:
            continue
        if not isinstance(channel, dict):
            continue
        messages += [at.child("messages", name) for name in _keys(channel.get("messages"))]
        for verb in ("publish", "subscribe"):  # AsyncAPI 2.x
            operation = channel.get(verb)
            if isinstance(operation, dict) and "message" in operation:
                message = operation["message"]
                one_of = message.get("oneOf") if isinstance(message, dict) else None
                if isinstance(one_of, list):
                    messages += [at.child(verb, "message", "oneOf", i) for i in range(len(one_of))]
                else:
                    messages.append(at.child(verb, "message"))
    return messages


def _keys(value: Any) -> list[str]:
    return list(value) if isinstance(value, dict) else []
