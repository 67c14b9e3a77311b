"""Payload schemas in other formats, as the JSON Schema that models are made from.

AsyncAPI lets a message name its schema's format (`schemaFormat`). Besides AsyncAPI's own
Schema Object and JSON Schema, asyncgen reads OpenAPI 3.0 Schema Objects and Avro 1.x
schemas: each is turned into JSON Schema here, so that every payload becomes a model the
same way.

- OpenAPI 3.0 differs from JSON Schema in a few keywords: `nullable`, boolean
  `exclusiveMinimum`/`exclusiveMaximum`, and `discriminator` (an object whose `mapping`
  points at schemas; the caller rewrites those pointers as it rewrites `$ref`s).
- Avro is checked and its named types resolved by fastavro's `parse_schema`; records
  become objects, enums string enums, arrays and maps arrays and objects, unions `anyOf`,
  and logical types the JSON Schema formats that give them their Python types (`date`,
  `AwareDatetime`, `Decimal`, `UUID`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

Dialect = Literal["jsonschema", "openapi", "avro"]

_JSON_SCHEMA = re.compile(
    r"^application/(vnd\.aai\.asyncapi(\+json|\+yaml)?|schema\+json|schema\+yaml)(;.*)?$"
)
_OPENAPI = re.compile(r"^application/vnd\.oai\.openapi(\+json|\+yaml)?(;.*)?$")
_AVRO = re.compile(r"^application/vnd\.apache\.avro(\+json|\+yaml)?(;.*)?$")
_OPENAPI_31 = re.compile(r"version=3\.1")


def schema_dialect(schema_format: Any) -> Dialect | None:
    """How a `schemaFormat` is read (None, the default: AsyncAPI's Schema Object), or None
    for a format asyncgen cannot read."""
    if schema_format is None:
        return "jsonschema"
    if not isinstance(schema_format, str):
        return None
    if _JSON_SCHEMA.match(schema_format):
        return "jsonschema"
    if _OPENAPI.match(schema_format):
        # OpenAPI 3.1's Schema Object is JSON Schema (2020-12).
        return "jsonschema" if _OPENAPI_31.search(schema_format) else "openapi"
    if _AVRO.match(schema_format):
        return "avro"
    return None


# -- OpenAPI 3.0 ----------------------------------------------------------------------


def openapi_node(schema: dict[str, Any]) -> dict[str, Any]:
    """One OpenAPI 3.0 Schema Object (its subschemas already converted) as JSON Schema."""
    result = dict(schema)
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        # OpenAPI 3.0's boolean form: `true` makes the bound exclusive (`false` is dropped).
        if isinstance(result.get(exclusive), bool) and result.pop(exclusive) and bound in result:
            result[exclusive] = result.pop(bound)
    if "discriminator" in result and "oneOf" in result:
        # The discriminator picks exactly one schema; to JSON Schema, which does not know
        # it, the schemas may overlap (they often differ only in the discriminating value).
        result["anyOf"] = result.pop("oneOf")
    if result.pop("nullable", False) is not True or "$ref" in result:
        return result  # `nullable` beside a `$ref` is ignored, as OpenAPI 3.0 ignores it
    kind = result.get("type")
    if isinstance(kind, str) and "enum" not in result:
        result["type"] = [kind, "null"]
        return result
    # An enum, or no type (allOf, oneOf, ...): null, or whatever the rest allows.
    return {"anyOf": [result, {"type": "null"}]}


def discriminator_targets(discriminator: Any) -> dict[str, str]:
    """The `mapping` of an OpenAPI discriminator: value -> `$ref` (a bare schema name
    means one in `components/schemas`)."""
    mapping = discriminator.get("mapping") if isinstance(discriminator, dict) else None
    if not isinstance(mapping, dict):
        return {}
    return {
        str(value): target if "#" in target or "/" in target else f"#/components/schemas/{target}"
        for value, target in mapping.items()
        if isinstance(target, str)
    }


# -- Avro -----------------------------------------------------------------------------


class AvroError(ValueError):
    """An Avro schema that fastavro refuses, in a sentence; `unknown` is the type name
    it does not know, if that is the reason."""

    def __init__(self, message: str, unknown: str | None = None) -> None:
        super().__init__(message)
        self.unknown = unknown


def parse_avro(schema: Any) -> Any:
    """The schema parsed by fastavro (named types resolved), or AvroError."""
    import fastavro

    try:
        return fastavro.parse_schema(schema)
    except KeyError as exc:
        raise AvroError(f"invalid Avro schema: {_key_owner(exc.args[0])} needs {exc}") from exc
    except Exception as exc:  # fastavro raises several kinds for a bad schema
        name = getattr(exc, "name", None)
        if isinstance(name, str):
            raise AvroError(f"invalid Avro schema: unknown type {name!r}", name) from exc
        raise AvroError(f"invalid Avro schema: {exc}") from exc


def type_path(schema: Any, name: str) -> list[str | int]:
    """Where in `schema` the type `name` is used (`fields/0/type`), or [] when nowhere."""
    if isinstance(schema, dict):
        for key in ("type", "items", "values", "fields"):
            if schema.get(key) == name and key != "fields":
                return [key]
            if key in schema and not isinstance(schema[key], str):
                path = type_path(schema[key], name)
                if path:
                    return [key, *path]
    elif isinstance(schema, list):
        for index, item in enumerate(schema):
            if item == name:
                return [index]
            path = type_path(item, name)
            if path:
                return [index, *path]
    return []


def _key_owner(key: Any) -> str:
    owners = {"symbols": "an enum", "items": "an array", "values": "a map", "size": "a fixed"}
    return owners.get(key, "a named type") if isinstance(key, str) else "a type"


_INT32 = 2**31
_INT64 = 2**63
_PRIMITIVES: dict[str, dict[str, Any]] = {
    "null": {"type": "null"},
    "boolean": {"type": "boolean"},
    "int": {"type": "integer", "minimum": -_INT32, "maximum": _INT32 - 1},
    "long": {"type": "integer", "minimum": -_INT64, "maximum": _INT64 - 1},
    "float": {"type": "number"},
    "double": {"type": "number"},
    "bytes": {"type": "string"},
    "string": {"type": "string"},
}
_LOGICAL: dict[str, dict[str, Any]] = {
    "date": {"type": "string", "format": "date"},
    "time-millis": {"type": "string", "format": "time"},
    "time-micros": {"type": "string", "format": "time"},
    "timestamp-millis": {"type": "string", "format": "date-time"},
    "timestamp-micros": {"type": "string", "format": "date-time"},
    "timestamp-nanos": {"type": "string", "format": "date-time"},
    "local-timestamp-millis": {"type": "string", "format": "date-time"},
    "local-timestamp-micros": {"type": "string", "format": "date-time"},
    "local-timestamp-nanos": {"type": "string", "format": "date-time"},
    "uuid": {"type": "string", "format": "uuid"},
}
_NAMED = ("record", "error", "enum", "fixed")

#: Registers a named type (full name, a function making its JSON Schema) and returns
#: the name of its definition.
Define = Callable[[str, Callable[[], dict[str, Any]]], str]


def avro_to_json_schema(parsed: Any, define: Define) -> dict[str, Any]:
    """A parsed Avro schema as JSON Schema: named types become definitions through
    `define` and are referred to as `#/$defs/<name>`."""

    known = parsed.get("__named_schemas", {}) if isinstance(parsed, dict) else {}

    def ref(fullname: str) -> dict[str, Any]:
        # Named types are defined where they first appear, which comes first.
        return {"$ref": f"#/$defs/{define(fullname, lambda: definition(known[fullname]))}"}

    def convert(schema: Any) -> dict[str, Any]:
        if isinstance(schema, str):
            return dict(_PRIMITIVES[schema]) if schema in _PRIMITIVES else ref(schema)
        if isinstance(schema, list):
            return {"anyOf": [convert(member) for member in schema]}
        kind = schema.get("type")
        if kind in _NAMED:
            name = schema["name"]
            return {"$ref": f"#/$defs/{define(name, lambda: definition(schema))}"}
        logical = _logical(schema)
        if logical is not None:
            return logical
        if kind == "array":
            return {"type": "array", "items": convert(schema["items"])}
        if kind == "map":
            return {"type": "object", "additionalProperties": convert(schema["values"])}
        return convert(kind)  # {"type": "string"} and the like

    def definition(schema: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] | None = _logical(schema)
        if result is not None:
            return result  # a fixed-size decimal
        if schema["type"] == "enum":
            result = {"type": "string", "enum": list(schema["symbols"])}
        elif schema["type"] == "fixed":
            result = {"type": "string", "minLength": schema["size"], "maxLength": schema["size"]}
        else:
            properties: dict[str, Any] = {}
            required: list[str] = []
            for item in schema.get("fields", []):
                field = convert(item["type"])
                if "default" in item:
                    field["default"] = item["default"]
                else:
                    required.append(item["name"])
                if isinstance(item.get("doc"), str):
                    field["description"] = item["doc"]
                properties[item["name"]] = field
            result = {"type": "object", "properties": properties}
            if required:
                result["required"] = required
        if isinstance(schema.get("doc"), str):
            result["description"] = schema["doc"]
        return result

    return convert(parsed)


def _logical(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON Schema of a logical type, or None (an unknown one reads as its base type,
    as Avro says)."""
    logical = schema.get("logicalType")
    if logical == "decimal" and isinstance(schema.get("precision"), int):
        limit = 10 ** (schema["precision"] - int(schema.get("scale") or 0))
        return {
            "type": "number",
            "format": "decimal",
            "exclusiveMinimum": -limit,
            "exclusiveMaximum": limit,
        }
    if isinstance(logical, str) and logical in _LOGICAL:
        return dict(_LOGICAL[logical])
    return None
