"""OpenAPI 3.0 Schema Objects and Avro schemas become models like JSON Schema payloads: each
construct's model takes the JSON it describes and refuses what it does not."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pydantic
import pytest
from typer.testing import CliRunner

from asyncgen.cli import app
from asyncgen.model.formats import schema_dialect

runner = CliRunner()

OPENAPI = "application/vnd.oai.openapi;version=3.0.0"
AVRO = "application/vnd.apache.avro;version=1.9.0"

#: Message name -> (schemaFormat, schema as YAML flow text).
SCHEMAS: dict[str, tuple[str, str]] = {
    "nullable": (
        OPENAPI,
        "{type: object, required: [name, size, level], properties: {"
        "name: {type: string, nullable: true}, "
        "size: {type: integer, nullable: true, minimum: 1}, "
        "level: {type: string, enum: [low, high], nullable: true}}}",
    ),
    "pet": (OPENAPI, "{$ref: '#/components/schemas/Pet'}"),
    "shape": (
        OPENAPI,
        "{oneOf: [{type: object, required: [radius], properties: {radius: {type: number}},"
        " additionalProperties: false}, {type: object, required: [side],"
        " properties: {side: {type: number}}, additionalProperties: false}]}",
    ),
    "bounded": (
        OPENAPI,
        "{type: object, required: [ratio], properties: {ratio: {type: number, minimum: 0,"
        " exclusiveMinimum: true, maximum: 1, exclusiveMaximum: false}}}",
    ),
    "record": (
        AVRO,
        "{type: record, name: Reading, namespace: iot, fields: [{name: value, type: double},"
        " {name: count, type: int}, {name: note, type: string, default: ''},"
        " {name: next, type: ['null', iot.Reading], default: null}]}",
    ),
    "enum": (
        AVRO,
        "{type: record, name: Light, fields: [{name: colour,"
        " type: {type: enum, name: Colour, symbols: [RED, GREEN]}}]}",
    ),
    "array": (
        AVRO,
        "{type: record, name: Batch, fields: [{name: items, type: {type: array, items: long}}]}",
    ),
    "map": (
        AVRO,
        "{type: record, name: Labels, fields: [{name: labels, type: {type: map, values: string}}]}",
    ),
    "union": (AVRO, "{type: record, name: Either, fields: [{name: value, type: [string, long]}]}"),
    "fixed": (
        AVRO,
        "{type: record, name: Digest, fields: [{name: md5,"
        " type: {type: fixed, name: MD5, size: 4}}]}",
    ),
    "bytes": (AVRO, "{type: record, name: Blob, fields: [{name: data, type: bytes}]}"),
    "date": (
        AVRO,
        "{type: record, name: Day, fields: [{name: day, type: {type: int, logicalType: date}}]}",
    ),
    "timestamp": (
        AVRO,
        "{type: record, name: Event, fields: [{name: at,"
        " type: {type: long, logicalType: timestamp-millis}}]}",
    ),
    "decimal": (
        AVRO,
        "{type: record, name: Price, fields: [{name: amount,"
        " type: {type: bytes, logicalType: decimal, precision: 5, scale: 2}}]}",
    ),
    "uuid": (
        AVRO,
        "{type: record, name: Thing, fields: [{name: id,"
        " type: {type: string, logicalType: uuid}}]}",
    ),
}

COMPONENTS = """\
components:
  schemas:
    Pet:
      oneOf: [{$ref: '#/components/schemas/Cat'}, {$ref: '#/components/schemas/Dog'}]
      discriminator:
        propertyName: petType
        mapping: {cat: '#/components/schemas/Cat', dog: Dog}
    Cat:
      type: object
      required: [petType, lives]
      properties: {petType: {type: string}, lives: {type: integer}}
    Dog:
      type: object
      required: [petType, bark]
      properties: {petType: {type: string}, bark: {type: string}}
"""


def spec_text() -> str:
    messages = "".join(
        f"      {name}:\n"
        f"        payload:\n"
        f"          schemaFormat: '{schema_format}'\n"
        f"          schema: {schema}\n"
        for name, (schema_format, schema) in SCHEMAS.items()
    )
    return (
        "asyncapi: 3.0.0\n"
        "info: {title: Formats, version: 1.0.0}\n"
        "channels:\n"
        "  things:\n"
        "    address: things\n"
        "    messages:\n"
        f"{messages}"
        "operations:\n"
        "  onThing: {action: receive, channel: {$ref: '#/channels/things'}}\n"
        f"{COMPONENTS}"
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    folder = tmp_path_factory.mktemp("formats")
    spec = folder / "spec.yaml"
    spec.write_text(spec_text())
    output = folder / "out"
    result = runner.invoke(
        app, ["generate", str(spec), "-o", str(output), "--package-name", "schema_formats"]
    )
    assert result.exit_code == 0, result.output
    sys.path.insert(0, str(output / "src"))
    try:
        yield importlib.import_module("schema_formats._generated.models")
    finally:
        sys.path.remove(str(output / "src"))
        for name in [n for n in sys.modules if n.startswith("schema_formats")]:
            del sys.modules[name]


UUID = "9b2f4c8e-2f1a-4d3c-8f7e-1a2b3c4d5e6f"

#: Construct -> (model class, JSON it takes, JSON it refuses).
CASES: dict[str, tuple[str, list[Any], list[Any]]] = {
    "openapi nullable": (
        "NullablePayload",
        [{"name": None, "size": None, "level": None}, {"name": "a", "size": 2, "level": "low"}],
        [
            {"name": 1, "size": None, "level": None},
            {"name": "a", "size": 0, "level": None},
            {"name": "a", "size": 1, "level": "mid"},
            {"size": 1, "level": "low"},
        ],
    ),
    "openapi discriminator": (
        "Pet",
        [{"petType": "cat", "lives": 9}, {"petType": "dog", "bark": "woof"}],
        [{"petType": "cow", "lives": 1}, {"petType": "cat", "bark": "woof"}, {"lives": 9}],
    ),
    "openapi oneOf": (
        "ShapePayload",
        [{"radius": 1.5}, {"side": 2}],
        [{"radius": "big"}, {"corner": 1}],
    ),
    "openapi boolean exclusive bounds": (
        "BoundedPayload",
        [{"ratio": 0.5}, {"ratio": 1}],
        [{"ratio": 0}, {"ratio": 1.01}],
    ),
    "avro record": (
        "Reading",
        [{"value": 1.5, "count": 2}, {"value": 1, "count": 2, "next": {"value": 2, "count": 3}}],
        [{"value": 1.5}, {"value": "x", "count": 2}, {"value": 1.5, "count": 2**31}],
    ),
    "avro enum": ("Light", [{"colour": "RED"}], [{"colour": "BLUE"}]),
    "avro array": ("Batch", [{"items": [1, 2]}, {"items": []}], [{"items": ["a"]}, {"items": 1}]),
    "avro map": ("Labels", [{"labels": {"a": "b"}}], [{"labels": {"a": 1}}, {"labels": ["a"]}]),
    "avro union": ("Either", [{"value": "a"}, {"value": 3}], [{"value": 1.5}, {"value": None}]),
    "avro fixed": ("Digest", [{"md5": "abcd"}], [{"md5": "abc"}, {"md5": "abcde"}]),
    "avro bytes": ("Blob", [{"data": "\u0000\u00ff"}], [{"data": 1}, {}]),
    "avro date": ("Day", [{"day": "2024-02-29"}], [{"day": "2024-02-30"}, {"day": "today"}]),
    "avro timestamp-millis": (
        "Event",
        [{"at": "2024-02-29T12:00:00Z"}, {"at": 1709208000000}],
        [{"at": "noon"}, {"at": "2024-02-29T12:00:00"}],
    ),
    "avro decimal": (
        "Price",
        [{"amount": 12.34}, {"amount": "999.99"}],
        [{"amount": "cheap"}, {"amount": 1000}],
    ),
    "avro uuid": ("Thing", [{"id": UUID}], [{"id": "not-a-uuid"}]),
}


@pytest.mark.parametrize("construct", sorted(CASES))
def test_the_model_takes_the_right_json_and_refuses_the_wrong(
    models: ModuleType, construct: str
) -> None:
    class_name, good, bad = CASES[construct]
    model = getattr(models, class_name)
    for payload in good:
        model.model_validate(payload)
    for payload in bad:
        with pytest.raises(pydantic.ValidationError):
            model.model_validate(payload)


@pytest.mark.parametrize(
    ("schema_format", "dialect"),
    [
        (None, "jsonschema"),
        ("application/schema+json;version=draft-07", "jsonschema"),
        ("application/vnd.oai.openapi;version=3.0.0", "openapi"),
        ("application/vnd.oai.openapi+yaml;version=3.0.0", "openapi"),
        ("application/vnd.oai.openapi+json;version=3.1.0", "jsonschema"),
        ("application/vnd.apache.avro;version=1.9.0", "avro"),
        ("application/vnd.apache.avro+json;version=1.9.0", "avro"),
        ("application/vnd.google.protobuf;version=3", None),
        ("application/raml+yaml;version=1.0", None),
    ],
)
def test_schema_formats_are_recognised(schema_format: str | None, dialect: str | None) -> None:
    assert schema_dialect(schema_format) == dialect


def validate(tmp_path: Path, schema: str, schema_format: str = AVRO) -> tuple[int, str]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(
            f"""\
            asyncapi: 3.0.0
            info: {{title: Avro, version: 1.0.0}}
            channels:
              things:
                address: things
                messages:
                  thing:
                    payload:
                      schemaFormat: {schema_format}
                      schema: {schema}
            """
        )
        + COMPONENTS
    )
    result = runner.invoke(app, ["validate", str(spec)])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("schema", "where", "sentence"),
    [
        (
            "{type: record, name: R, fields: [{name: a, type: doubel}]}",
            "10:68 #/channels/things/messages/thing/payload/schema/fields/0/type",
            "unknown type 'doubel'",
        ),
        (
            "{type: record, name: R, fields: [{name: a, type: {type: map, values: [int, Nope]}}]}",
            "10:94 #/channels/things/messages/thing/payload/schema/fields/0/type/values/1",
            "unknown type 'Nope'",
        ),
        (
            "{type: enum, name: E}",
            "10:19 #/channels/things/messages/thing/payload/schema",
            "an enum needs 'symbols'",
        ),
        (
            "{type: array}",
            "10:19 #/channels/things/messages/thing/payload/schema",
            "an array needs 'items'",
        ),
    ],
)
def test_invalid_avro_is_a_located_error(
    tmp_path: Path, schema: str, where: str, sentence: str
) -> None:
    code, output = validate(tmp_path, schema)
    assert code == 1, output
    assert f"spec.yaml:{where}: error: invalid Avro schema: {sentence}" in output


def test_valid_avro_passes_validation(tmp_path: Path) -> None:
    code, output = validate(tmp_path, SCHEMAS["record"][1])
    assert code == 0, output


def test_openapi_schemas_are_checked_with_openapi_keywords(tmp_path: Path) -> None:
    for name in ("nullable", "bounded", "pet"):
        code, output = validate(tmp_path, SCHEMAS[name][1], OPENAPI)
        assert code == 0, output
    schema = "{type: object, nullable: 'yes', properties: {a: {type: strng}}}"
    code, output = validate(tmp_path, schema, OPENAPI)
    assert code == 1, output
    pointer = "#/channels/things/messages/thing/payload/schema"
    assert f"spec.yaml:10:44 {pointer}/nullable: error: invalid JSON Schema" in output
    assert f"spec.yaml:10:74 {pointer}/properties/a/type: error: invalid JSON Schema" in output
