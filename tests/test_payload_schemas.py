"""`validate` checks payload and header schemas as JSON Schema (draft-07), with the line
of each error, and leaves schemas of other formats alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from asyncgen.cli import app

runner = CliRunner()

V3 = """asyncapi: 3.0.0
info: {{title: Payloads, version: '1'}}
channels:
  readings:
    address: readings
    messages:
      reading:
{message}
operations:
  receiveReading:
    action: receive
    channel: {{$ref: '#/channels/readings'}}
components:
  schemas:
    Reading:
      type: object
      properties:
        value: {{type: number}}
"""


def validate(tmp_path: Path, text: str) -> tuple[int, str]:
    spec = tmp_path / "asyncapi.yaml"
    spec.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["validate", str(spec)])
    return result.exit_code, result.output


def test_a_bad_type_and_a_bad_pattern_are_located(tmp_path: Path) -> None:
    message = (
        "        payload:\n          type: object\n          properties:\n"
        "            unit: {type: strng}\n            code: {type: string, pattern: '(['}\n"
    )
    code, output = validate(tmp_path, V3.format(message=message))
    assert code == 1, output
    where = "asyncapi.yaml:11:26 #/channels/readings/messages/reading/payload/properties"
    assert f"{where}/unit/type: error:" in output
    assert "'strng' is not a type" in output
    assert (
        "/properties/code/pattern: error: pattern '([' is not a valid regular expression" in output
    )


def test_patterns_the_models_accept_are_accepted(tmp_path: Path) -> None:
    message = (
        "        payload:\n          type: object\n          properties:\n"
        "            name: {type: string, pattern: '^\\\\p{L}+$'}\n"
        "            day: {type: string, pattern: '^(?<year>\\\\d{4})-\\\\d{2}$'}\n"
    )
    code, output = validate(tmp_path, V3.format(message=message))
    assert code == 0, output


def test_avro_headers_and_payloads_are_not_read_as_json_schema(tmp_path: Path) -> None:
    (tmp_path / "reading.avsc").write_text(
        '{"type": "record", "name": "Reading", "fields": [{"name": "v", "type": "double"}]}'
    )
    message = (
        "        headers:\n"
        "          schemaFormat: application/vnd.apache.avro;version=1.9.0\n"
        "          schema: {$ref: './reading.avsc'}\n"
        "        payload:\n"
        "          schemaFormat: application/vnd.apache.avro;version=1.9.0\n"
        "          schema: {type: record, name: R, fields: [{name: v, type: double}]}\n"
    )
    code, output = validate(tmp_path, V3.format(message=message))
    assert code == 0, output


def test_json_headers_in_a_multi_format_object_are_checked(tmp_path: Path) -> None:
    message = (
        "        headers:\n"
        "          schemaFormat: application/schema+json;version=draft-07\n"
        "          schema: {type: object, required: yes}\n"
        "        payload: {$ref: '#/components/schemas/Reading'}\n"
    )
    code, output = validate(tmp_path, V3.format(message=message))
    assert code == 1, output
    assert "#/channels/readings/messages/reading/headers/schema/required" in output


def test_a_2x_avro_message_may_keep_its_schema_in_components(tmp_path: Path) -> None:
    spec = """asyncapi: 2.6.0
info: {title: Avro, version: '1'}
channels:
  readings:
    subscribe:
      message:
        schemaFormat: application/vnd.apache.avro;version=1.9.0
        payload: {$ref: '#/components/schemas/Reading'}
components:
  schemas:
    Reading:
      type: record
      name: Reading
      fields: [{name: v, type: double}]
    Other:
      type: object
      properties: {x: {type: strng}}
"""
    code, output = validate(tmp_path, spec)
    assert code == 1, output
    assert "#/components/schemas/Other/properties/x/type" in output
    assert "#/components/schemas/Reading" not in output


# -- the fast path ------------------------------------------------------------------------


def _corpus_schemas() -> list[tuple[Any, str]]:
    """Every payload and header schema of the documents at hand, with its dialect."""
    from asyncgen.errors import SpecError
    from asyncgen.load import load_document
    from asyncgen.validate.payloads import _schemas_of_messages

    shared = Path(__file__).resolve().parents[2] / "shared" / "specs"
    paths = sorted((Path(__file__).resolve().parent / "broken").glob("*.y*ml"))
    if shared.is_dir():
        paths += sorted(p for p in shared.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
    found: list[tuple[Any, str]] = []
    for path in paths:
        try:
            doc = load_document(path)
            places, _ = _schemas_of_messages(doc)
            for place, dialect in places:
                schema, _ = doc.resolve_at(place)
                found.append((schema, dialect))
        except SpecError:  # unreadable documents say nothing here
            continue
    return found


def test_jsonschema_rs_never_passes_a_payload_schema_jsonschema_refuses() -> None:
    """The fast path may send a sound schema to the full check, never the reverse:
    compared on every payload schema at hand and on broken variants of each."""
    from asyncgen.validate import payloads

    if payloads._fast_meta_validator("jsonschema") is None:
        pytest.skip("jsonschema-rs is not installed")
    schemas = _corpus_schemas()
    assert len(schemas) >= 20
    agreed = 0
    for schema, dialect in schemas:
        if not isinstance(schema, dict):
            continue
        variants = [
            schema,
            {**schema, "type": "numeric"},
            {**schema, "properties": {"a": {"type": "string", "pattern": "(unclosed"}}},
            {**schema, "minimum": "low"},
            {**schema, "required": "id"},
        ]
        for variant in variants:
            fast = payloads._fast_sound(variant, dialect)  # type: ignore[arg-type]
            slow = list(payloads._meta_validator(dialect).iter_errors(variant))  # type: ignore[arg-type]
            assert not (fast and slow), (variant, [e.message for e in slow][:3])
            agreed += fast == (not slow)
    # Nearly always the same answer: the fast path is worth having.
    assert agreed >= 0.95 * sum(5 for s, _ in schemas if isinstance(s, dict))


def test_the_meta_schema_read_without_jsonschema_is_jsonschemas_own() -> None:
    from jsonschema import Draft7Validator

    from asyncgen.validate.payloads import _draft7_meta_schema

    assert _draft7_meta_schema() == Draft7Validator.META_SCHEMA


def test_a_sound_document_is_validated_without_importing_jsonschema(tmp_path: Path) -> None:
    # jsonschema explains problems (and checks examples); jsonschema-rs answers for a
    # sound document without examples alone: its structure, bindings and payload schemas.
    import os
    import subprocess
    import sys

    spec = tmp_path / "asyncapi.yaml"
    spec.write_text(
        "asyncapi: 3.0.0\n"
        "info: {title: Sound, version: 1.0.0}\n"
        "servers:\n"
        "  broker:\n"
        "    host: localhost:1883\n"
        "    protocol: mqtt\n"
        "    bindings: {mqtt: {clientId: sound, keepAlive: 60, bindingVersion: 0.2.0}}\n"
        "channels:\n"
        "  readings:\n"
        "    address: readings/{id}\n"
        "    parameters: {id: {}}\n"
        "    messages:\n"
        "      reading:\n"
        "        payload:\n"
        "          type: object\n"
        "          properties: {value: {type: number}, unit: {type: string, pattern: '^[a-z]+$'}}\n"
        "operations:\n"
        "  receiveReading:\n"
        "    action: receive\n"
        "    channel: {$ref: '#/channels/readings'}\n"
        "    bindings: {mqtt: {qos: 1, bindingVersion: 0.2.0}}\n",
        encoding="utf-8",
    )
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from asyncgen.generation import validate\n"
        f"problems = validate(Path({str(spec)!r}))\n"
        "assert not [p for p in problems if p.level.name == 'ERROR'], problems\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'jsonschema'))\n"
    )
    env = {**os.environ, "ASYNCGEN_NO_CACHE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
