"""One set of checks: `validate` reports, in one run, everything `generate` refuses, and
`generate` refuses with exactly those problems. Bindings against the MQTT and NATS
binding specifications; tag names; operations and their channels' messages."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from asyncgen.errors import Level, Problem
from asyncgen.load import load_document
from asyncgen.validate import validate_document

runner = CliRunner()

SEVEN_PROBLEMS = """\
asyncapi: 3.0.0
info:
  title: Seven problems
  version: 1.0.0
  tags:
    - name: devices
    - {name: devices, description: the same name again}
servers:
  broker:
    host: localhost:1883
    protocol: mqtt
    bindings:
      mqtt:
        clientId: svc
        keepAliveSeconds: 60
channels:
  a:
    address: things/{thingId}
    parameters: {otherId: {}}
    messages:
      M1: {$ref: '#/components/messages/M1'}
  b:
    address: other
    messages:
      M2: {$ref: '#/components/messages/M2'}
    unknownField: true
operations:
  recvA:
    action: receive
    channel: {$ref: '#/channels/a'}
    messages:
      - $ref: '#/channels/b/messages/M2'
    bindings:
      mqtt:
        qos: 124
  sendB:
    action: send
    channel: {$ref: '#/channels/b'}
components:
  messages:
    M1:
      payload: {type: object, properties: {n: {type: 5}}}
    M2:
      payload: {type: string}
"""

#: (line, a phrase of the message) of each of the seven problems.
EXPECTED = [
    (7, "tag 'devices' is listed twice"),
    (15, "unknown field `keepAliveSeconds` in the mqtt binding of a server"),
    (18, "uses parameter {thingId}, which the channel does not declare"),
    (26, "unknown field `unknownField` in a channel"),
    (32, "operation 'recvA' uses message 'M2', which its channel 'a' does not list"),
    (35, "`qos` must be one of: 0, 1, 2 (got 124)"),
    (42, "5 is not a type"),
]


def write(tmp_path: Path, text: str, name: str = "asyncapi.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def receive_operation(extra: str, servers: str = "", channel: str = "{address: orders}") -> str:
    """A 3.0 document with one receive operation on channel `c`, `extra` written after it."""
    return f"""\
asyncapi: 3.0.0
info: {{title: t, version: '1'}}
{servers}channels:
  c: {channel}
operations:
  recv:
    action: receive
    channel: {{$ref: '#/channels/c'}}
{extra}"""


def problems(path: Path) -> list[Problem]:
    return validate_document(load_document(path))


def errors(path: Path) -> list[str]:
    return [f"{p.location.line}: {p.message}" for p in problems(path) if p.level == Level.ERROR]


def test_a_document_with_seven_problems_gets_them_all_in_one_run(tmp_path: Path) -> None:
    found = errors(write(tmp_path, SEVEN_PROBLEMS))
    for line, phrase in EXPECTED:
        assert any(f.startswith(f"{line}: ") and phrase in f for f in found), (
            line,
            phrase,
            found,
        )
    assert len(found) == len(EXPECTED), found


def test_validate_and_generate_report_the_same_problems(tmp_path: Path) -> None:
    from asyncgen.cli import app

    spec = write(tmp_path, SEVEN_PROBLEMS)
    checked = runner.invoke(app, ["validate", str(spec)])
    generated = runner.invoke(app, ["generate", str(spec), "-o", str(tmp_path / "out")])
    assert checked.exit_code == 1 and generated.exit_code == 1
    reported = [line for line in checked.output.splitlines() if ": error: " in line]
    assert len(reported) == len(EXPECTED)
    assert [line for line in generated.output.splitlines() if ": error: " in line] == reported
    assert f"{len(EXPECTED)} error(s); nothing written" in generated.output
    assert not (tmp_path / "out").exists()


MQTT_BINDINGS = """\
asyncapi: 2.6.0
info: {title: t, version: '1'}
servers:
  broker:
    url: localhost:1883
    protocol: mqtt
    bindings:
      mqtt:
        clientId: svc
        cleanSession: false
        keepAlive: 60
        lastWill: {topic: bye, qos: 1, message: gone, retain: false}
        sessionExpiryInterval: 120
        maximumPacketSize: 1024
        bindingVersion: 0.2.0
channels:
  t:
    bindings: {mqtt: {bindingVersion: 0.2.0}}
    publish:
      operationId: recv
      bindings:
        mqtt: {qos: 2, retain: true, messageExpiryInterval: 60, bindingVersion: 0.2.0}
      message:
        payload: {type: string}
        bindings:
          mqtt:
            payloadFormatIndicator: 1
            correlationData: {type: string, format: uuid}
            contentType: application/json
            responseTopic: replies
            bindingVersion: 0.2.0
"""


def test_every_field_of_the_mqtt_binding_specification_is_accepted(tmp_path: Path) -> None:
    assert errors(write(tmp_path, MQTT_BINDINGS)) == []


@pytest.mark.parametrize(
    ("old", "new", "phrase"),
    [
        ("qos: 1, message", "qos: 3, message", "`qos` must be one of: 0, 1, 2 (got 3)"),
        ("keepAlive: 60", "keepAlive: soon", "expected an integer"),
        ("maximumPacketSize: 1024", "maximumPacketSize: 0", "less than the minimum of 1"),
        ("retain: true", "retain: 'yes'", "expected a boolean"),
        ("payloadFormatIndicator: 1", "payloadFormatIndicator: 2", "must be one of: 0, 1"),
        ("bindings: {mqtt: {bindingVersion", "bindings: {mqtt: {qos: 1, bindingVersion", "`qos`"),
        # 0.1.0 knew neither session expiry nor packet size.
        ("bindingVersion: 0.2.0\nchannels", "bindingVersion: 0.1.0\nchannels", "sessionExpiry"),
    ],
    ids=["will-qos", "keep-alive", "packet-size", "retain", "format", "channel", "version"],
)
def test_mqtt_bindings_breaking_the_specification_are_errors(
    tmp_path: Path, old: str, new: str, phrase: str
) -> None:
    assert old in MQTT_BINDINGS
    found = errors(write(tmp_path, MQTT_BINDINGS.replace(old, new, 1)))
    assert len(found) >= 1 and all(phrase in f or "unknown field" in f for f in found), found
    assert any(phrase in f for f in found), found


@pytest.mark.parametrize(
    ("queue", "ok"),
    [("workers", True), ("q" * 255, True), ("q" * 256, False), ("''", False), ("[a]", False)],
)
def test_nats_queue_follows_the_nats_binding(tmp_path: Path, queue: str, ok: bool) -> None:
    spec = receive_operation(f"    bindings: {{nats: {{queue: {queue}, bindingVersion: 0.1.0}}}}\n")
    found = errors(write(tmp_path, spec))
    assert (found == []) is ok, found
    if not ok:
        assert all(f.startswith("9: ") for f in found), found


def test_bindings_reached_through_refs_and_components_are_checked(tmp_path: Path) -> None:
    spec = receive_operation("""\
    bindings: {$ref: '#/components/operationBindings/fast'}
components:
  operationBindings:
    fast:
      mqtt: {qos: 7}
""")
    found = errors(write(tmp_path, spec))
    assert found == ["13: `qos` must be one of: 0, 1, 2 (got 7)"]


def test_x_jetstream_must_name_a_stream_and_a_durable(tmp_path: Path) -> None:
    spec = receive_operation(
        "    x-jetstream: {stream: ORDERS}\n",
        servers="servers: {n: {host: localhost, protocol: nats}}\n",
    )
    expected = "10: `durable` is required in the `x-jetstream` extension"
    assert errors(write(tmp_path, spec)) == [expected]


def test_a_reply_without_a_message_is_reported_by_validate(tmp_path: Path) -> None:
    spec = """\
asyncapi: 3.0.0
info: {title: t, version: '1'}
channels:
  c: {address: orders, messages: {m: {payload: {type: string}}}}
  r: {address: replies}
operations:
  ask:
    action: send
    channel: {$ref: '#/channels/c'}
    reply:
      channel: {$ref: '#/channels/r'}
"""
    assert errors(write(tmp_path, spec)) == ["10: the reply of operation 'ask' names no message"]


def test_a_2x_operation_without_a_message_is_a_warning_of_raw_bytes(tmp_path: Path) -> None:
    spec = """\
asyncapi: 2.6.0
info: {title: t, version: '1'}
channels:
  orders:
    subscribe: {operationId: send}
"""
    path = write(tmp_path, spec)
    assert errors(path) == []
    assert [(p.location.line, p.message) for p in problems(path)] == [
        (5, "operation 'send' has no message: its handler receives the raw bytes")
    ]


def test_a_parameter_pattern_that_is_not_a_regular_expression_is_an_error(
    tmp_path: Path,
) -> None:
    spec = """\
asyncapi: 2.6.0
info: {title: t, version: '1'}
channels:
  devices/{id}:
    parameters:
      id:
        schema: {type: string, pattern: '([a-z'}
    publish:
      message: {payload: {type: string}}
"""
    found = errors(write(tmp_path, spec))
    assert len(found) == 1 and found[0].startswith("7: parameter 'id': '([a-z' is not"), found


def test_an_address_the_target_client_refuses_is_an_error_for_that_target(
    tmp_path: Path,
) -> None:
    spec = """\
asyncapi: 3.0.0
info: {title: t, version: '1'}
servers: {n: {host: localhost, protocol: nats}}
channels:
  c: {address: 'orders.*.new'}
"""
    path = write(tmp_path, spec)
    assert errors(path) == [
        "5: unsupported: address 'orders.*.new' maps to the NATS subject 'orders.*.new', "
        "which is not valid: `*` and `>` are wildcards, not part of a subject"
    ]
    assert [p.message for p in validate_document(load_document(path), "mqtt")] == []
    from asyncgen.cli import app

    as_mqtt = runner.invoke(app, ["validate", "--protocol", "mqtt", str(path)])
    as_nats = runner.invoke(app, ["validate", str(path)])
    assert as_mqtt.exit_code == 0 and as_nats.exit_code == 1
    assert "not valid" not in as_mqtt.output and "maps to the NATS subject" in as_nats.output


def test_binding_values_that_would_be_code_are_refused_before_generating(
    tmp_path: Path,
) -> None:
    from asyncgen.cli import app

    spec = write(
        tmp_path,
        MQTT_BINDINGS.replace("qos: 2, retain: true", "qos: '1; import os', retain: 'yes'"),
    )
    result = runner.invoke(app, ["generate", str(spec), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "#/channels/t/publish/bindings/mqtt/qos: error: `qos` must be one of: 0, 1, 2" in (
        result.output
    )
    assert "#/channels/t/publish/bindings/mqtt/retain: error: expected a boolean" in result.output
    assert not (tmp_path / "out").exists()


EXAMPLES_DOC = receive_operation(
    """\
components:
  messages:
    reading:
      payload: {$ref: 'schemas.yaml#/Reading'}
      examples:
        - {name: fits, payload: {value: 21.5}}
        - {name: wrong, payload: {value: warm}}
""",
    channel="{address: readings, messages: {reading: {$ref: '#/components/messages/reading'}}}",
)


def test_an_example_that_does_not_fit_its_schema_is_a_warning_and_left_out(
    tmp_path: Path,
) -> None:
    from asyncgen.cli import app

    (tmp_path / "schemas.yaml").write_text(
        "Reading: {type: object, properties: {value: {$ref: '#/Number'}}}\nNumber: {type: number}\n"
    )
    spec = write(tmp_path, EXAMPLES_DOC)
    warnings = [f"{p.location.line}: {p.message}" for p in problems(spec)]
    assert warnings == [
        "12: example 2 of message 'reading' does not match its payload schema "
        "('warm' is not of type 'number'); left out of the generated tests"
    ]
    checked = runner.invoke(app, ["validate", str(spec)])
    generated = runner.invoke(app, ["generate", str(spec), "-o", str(tmp_path / "out")])
    assert checked.exit_code == 0 and generated.exit_code == 0, generated.output
    warned = [line for line in checked.output.splitlines() if ": warning: " in line]
    assert (
        warned
        and [line for line in generated.output.splitlines() if ": warning: " in line] == warned
    )
    tests = (tmp_path / "out" / "tests" / "test_spec_examples.py").read_text()
    assert "21.5" in tests and "warm" not in tests


def test_checks_beside_a_broken_structure_read_any_shape_without_a_traceback(
    tmp_path: Path,
) -> None:
    spec = receive_operation(
        "components:\n  schemas: [not, a, mapping]\n  messages: 5\n",
        channel="{address: null, messages: [x]}",
    )
    found = errors(write(tmp_path, spec))
    assert found and all("expected a mapping" in f for f in found), found


def test_an_operation_on_a_channel_without_an_address_is_a_warning(tmp_path: Path) -> None:
    spec = write(tmp_path, receive_operation("", channel="{address: null}"))
    assert [(p.location.line, p.level, p.message) for p in problems(spec)] == [
        (7, Level.WARNING, "operation 'recv' has a channel without an address; skipped")
    ]


@pytest.mark.parametrize(("address", "subject"), [("/", "''"), ("a//b", "'a..b'")])
def test_an_address_that_maps_to_no_nats_subject_is_an_error_of_validate(
    tmp_path: Path, address: str, subject: str
) -> None:
    from asyncgen.cli import app

    spec = write(tmp_path, receive_operation("", channel=f"{{address: {address!r}}}"))
    expected = (
        f"{spec}:4:6 #/channels/c: error: unsupported: address {address!r} maps to the NATS "
        f"subject {subject}, which is not valid: it has an empty token"
    )
    for command in (["validate"], ["generate", "-o", str(tmp_path / "out")]):
        result = runner.invoke(app, [*command, "--protocol", "nats", str(spec)])
        assert result.exit_code == 1 and expected in result.output, result.output
    assert runner.invoke(app, ["validate", str(spec)]).exit_code == 0  # MQTT: a warning at most


def test_jsonschema_rs_passes_exactly_the_bindings_jsonschema_passes() -> None:
    """The fast path of the binding checks (jsonschema-rs) may only pass what jsonschema
    passes: compared on every MQTT and NATS binding of the documents at hand, each also
    broken in a few ways, against every binding version's schema."""
    from jsonschema import Draft202012Validator

    from asyncgen.errors import SpecError
    from asyncgen.load import load_document
    from asyncgen.validate import bindings
    from asyncgen.validate.quick import quickly_valid

    if bindings._validator("mqtt", "server", "0.2.0")._quick is None:
        pytest.skip("jsonschema-rs is not installed")
    shared = Path(__file__).resolve().parents[2] / "shared" / "specs"
    paths = sorted((Path(__file__).resolve().parent / "broken").glob("*.y*ml"))
    if shared.is_dir():
        paths += sorted(p for p in shared.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
    compared = 0
    for path in paths:
        try:
            doc = load_document(path)
            objects = bindings._bindings_objects(doc)
        except SpecError:
            continue
        for kind, value, at in objects:
            try:
                found, _ = doc.resolve(value, at)
            except SpecError:
                continue
            for protocol in ("mqtt", "nats"):
                binding = found.get(protocol) if isinstance(found, dict) else None
                if not isinstance(binding, dict):
                    continue
                variants = [
                    binding,
                    {**binding, "qos": True},
                    {**binding, "qos": 3},
                    {**binding, "retain": 1},
                    {**binding, "queue": ""},
                    {**binding, "bogus": 1},
                ]
                for version in bindings._FIELDS[(protocol, kind)]:
                    check = bindings._validator(protocol, kind, version)
                    full = Draft202012Validator(check._schema)
                    for variant in variants:
                        slow = list(full.iter_errors(variant))
                        assert quickly_valid(check._quick, variant) == (slow == []), (
                            path,
                            variant,
                        )
                        compared += 1
    assert compared >= 50
