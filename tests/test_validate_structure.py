"""Structural validation: asyncgen's own AsyncAPI schemas, checked against the official ones."""

from __future__ import annotations

import copy
import json
import textwrap
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator, Draft202012Validator

from asyncgen.errors import Problem
from asyncgen.load import load_document
from asyncgen.validate.schemas import SUPPORTED_VERSIONS, schema_for
from asyncgen.validate.structure import check_structure

SHARED = Path(__file__).parents[1].parent / "shared"
SPECS = SHARED / "specs"
OFFICIAL_SCHEMAS = SHARED / "asyncapi-schemas"

_PARAMETER_REF = (
    "the official 2.0.0-2.4.0 schemas reject a channel parameter written as a `$ref` "
    "before refs are resolved (it matches both branches of a oneOf)",
    "parameters",
)
#: Documents on which the official schema's verdict is a quirk of that schema (see
#: shared/asyncapi-schemas/SOURCES.md): file -> (reason, a JSON pointer segment found in
#: every error the official schema reports). asyncgen accepts these documents.
OFFICIAL_QUIRKS: dict[str, tuple[str, str]] = {
    "2.0.0/application-headers.yml": _PARAMETER_REF,
    "2.0.0/correlation-id.yml": _PARAMETER_REF,
    "2.0.0/streetlights.yml": _PARAMETER_REF,
    "2.1.0/streetlights-mqtt.yml": _PARAMETER_REF,
    "2.2.0/streetlights-mqtt.yml": _PARAMETER_REF,
    "2.3.0/streetlights-mqtt.yml": _PARAMETER_REF,
    "2.4.0/streetlights-mqtt.yml": _PARAMETER_REF,
    "3.0.0/adeo-kafka-request-reply-asyncapi.yml": (
        "the message's kafka binding `key` is a `$ref` to a remote .avsc file, which the "
        "official 3.0.0 schema matches against both Schema and Reference in a oneOf; "
        "asyncgen checks binding contents only as mappings (the remote ref itself is the "
        "loader's business)",
        "costingResponse",
    ),
}


@cache
def official_validator(version: str) -> Draft7Validator:
    schema = json.loads((OFFICIAL_SCHEMAS / f"{version}.json").read_text(encoding="utf-8"))
    return Draft7Validator(schema)


def official_errors(data: dict[str, Any]) -> list[Any]:
    return list(official_validator(data["asyncapi"]).iter_errors(data))


def corpus() -> list[Any]:
    if not SPECS.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{SPECS} is not present"))]
    documents = [
        path
        for path in sorted(SPECS.rglob("*"))
        if path.suffix in (".yml", ".yaml") and "asyncapi" in load_document(path).data
    ]
    return [pytest.param(path, id=path.relative_to(SPECS).as_posix()) for path in documents]


def needs_corpus() -> None:
    if not SPECS.is_dir() or not OFFICIAL_SCHEMAS.is_dir():
        pytest.skip(f"{SPECS} or {OFFICIAL_SCHEMAS} is not present")


def write_yaml(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "asyncapi.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def check_text(tmp_path: Path, text: str) -> list[Problem]:
    path = tmp_path / "asyncapi.yaml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return check_structure(load_document(path))


# --- the official schemas as an oracle ---------------------------------------------------


@pytest.mark.parametrize("path", corpus())
def test_verdict_matches_the_official_schema(path: Path) -> None:
    needs_corpus()
    name = path.relative_to(SPECS).as_posix()
    doc = load_document(path)
    problems = check_structure(doc)
    official = official_errors(doc.data)

    if name in OFFICIAL_QUIRKS:
        _reason, where = OFFICIAL_QUIRKS[name]
        # The quirk is still there, and it is the only thing the official schema dislikes...
        assert official, f"{name} is no longer rejected by the official schema: drop the quirk"
        assert all(where in map(str, error.absolute_path) for error in official)
        # ...while asyncgen, which knows a Reference Object when it sees one, accepts it.
        assert problems == []
    else:
        assert bool(problems) == bool(official), [str(p) for p in problems] or official


# --- breaking a valid document: both schemas object, asyncgen says where ----------------

STREETLIGHTS_2 = "2.6.0/streetlights-mqtt.yml"
STREETLIGHTS_3 = "3.0.0/streetlights-mqtt-asyncapi.yml"
MEASURED_2 = "smartylighting/streetlights/1/0/event/{streetlightId}/lighting/measured"
MEASURED_2_POINTER = "/channels/" + MEASURED_2.replace("/", "~1")


def delete(*path: str | int) -> Callable[[Any], None]:
    def mutate(data: Any) -> None:
        for token in path[:-1]:
            data = data[token]
        del data[path[-1]]

    return mutate


def put(*path: str | int, value: Any) -> Callable[[Any], None]:
    def mutate(data: Any) -> None:
        for token in path[:-1]:
            data = data[token]
        data[path[-1]] = value

    return mutate


MUTATIONS = [
    # (document, mutation, JSON pointer of the problem, words in its message)
    pytest.param(STREETLIGHTS_2, delete("info"), "", "`info` is required", id="2.6-no-info"),
    pytest.param(
        STREETLIGHTS_2,
        delete("info", "title"),
        "/info",
        "`title` is required",
        id="2.6-no-info-title",
    ),
    pytest.param(
        STREETLIGHTS_2,
        put("channels", value=[{"publish": {}}]),
        "/channels",
        "expected a mapping, got a list",
        id="2.6-channels-as-list",
    ),
    pytest.param(
        STREETLIGHTS_2,
        delete("servers", "production", "protocol"),
        "/servers/production",
        "`protocol` is required in a server",
        id="2.6-server-without-protocol",
    ),
    pytest.param(
        STREETLIGHTS_2,
        put("channels", MEASURED_2, "foo", value="bar"),
        f"{MEASURED_2_POINTER}/foo",
        "unknown field `foo` in a channel",
        id="2.6-unknown-channel-field",
    ),
    pytest.param(
        STREETLIGHTS_2,
        put("channels", MEASURED_2, "publish", "message", value=[{"payload": {}}]),
        f"{MEASURED_2_POINTER}/publish/message",
        "expected a message (a mapping), got a list",
        id="2.6-operation-message-as-list",
    ),
    pytest.param(
        STREETLIGHTS_2,
        put("components", "messages", "lightMeasured", "examples", value={"payload": {}}),
        "/components/messages/lightMeasured/examples",
        "expected a list, got a mapping",
        id="2.6-examples-not-a-list",
    ),
    pytest.param(
        STREETLIGHTS_2,
        put("components", "messages", "lightMeasured", "correlationId", value={"location": "id"}),
        "/components/messages/lightMeasured/correlationId/location",
        "must be a runtime expression",
        id="2.6-correlation-id-not-a-runtime-expression",
    ),
    pytest.param(STREETLIGHTS_3, delete("info"), "", "`info` is required", id="3.0-no-info"),
    pytest.param(
        STREETLIGHTS_3,
        delete("info", "title"),
        "/info",
        "`title` is required",
        id="3.0-no-info-title",
    ),
    pytest.param(
        STREETLIGHTS_3,
        put("operations", "receiveLightMeasurement", "action", value="publish"),
        "/operations/receiveLightMeasurement/action",
        "`action` must be one of: send, receive (got 'publish')",
        id="3.0-wrong-action",
    ),
    pytest.param(
        STREETLIGHTS_3,
        put("channels", value=[{"address": "a"}]),
        "/channels",
        "expected a mapping, got a list",
        id="3.0-channels-as-list",
    ),
    pytest.param(
        STREETLIGHTS_3,
        delete("servers", "production", "protocol"),
        "/servers/production",
        "`protocol` is required in a server",
        id="3.0-server-without-protocol",
    ),
    pytest.param(
        STREETLIGHTS_3,
        put("channels", "lightingMeasured", "publish", value={"message": {}}),
        "/channels/lightingMeasured/publish",
        "unknown field `publish` in a channel",
        id="3.0-unknown-channel-field",
    ),
    pytest.param(
        STREETLIGHTS_3,
        put("components", "messages", "lightMeasured", "examples", value={"payload": {}}),
        "/components/messages/lightMeasured/examples",
        "expected a list, got a mapping",
        id="3.0-examples-not-a-list",
    ),
    pytest.param(
        STREETLIGHTS_3,
        put("operations", "receiveLightMeasurement", "channel", value={"address": "x"}),
        "/operations/receiveLightMeasurement/channel",
        "expected a reference",
        id="3.0-operation-channel-inline",
    ),
    pytest.param(
        STREETLIGHTS_3,
        delete("operations", "receiveLightMeasurement", "channel"),
        "/operations/receiveLightMeasurement",
        "`channel` is required in an operation",
        id="3.0-operation-without-channel",
    ),
]


@pytest.mark.parametrize(("document", "mutate", "pointer", "words"), MUTATIONS)
def test_a_broken_document_is_rejected_with_the_place_and_reason(
    tmp_path: Path,
    document: str,
    mutate: Callable[[Any], None],
    pointer: str,
    words: str,
) -> None:
    needs_corpus()
    data = copy.deepcopy(load_document(SPECS / document).data)
    assert official_errors(data) == [], "the starting document must be valid"
    mutate(data)
    path = write_yaml(tmp_path, data)

    problems = check_structure(load_document(path))

    assert official_errors(data), "the official schema must reject the mutation too"
    reported = [(p.location.pointer, p.message) for p in problems]
    assert len(problems) == 1, reported  # one mistake, one problem: no cascade of oneOf noise
    [problem] = problems
    assert problem.location.pointer == pointer, reported
    assert words in problem.message, reported
    assert problem.location.file == path
    assert problem.location.line > 0
    assert problem.location.column > 0


# --- versions -----------------------------------------------------------------------------


def test_an_unsupported_version_is_the_only_problem_reported(tmp_path: Path) -> None:
    problems = check_text(
        tmp_path,
        """
        asyncapi: 2.7.0
        channels: []
        """,
    )
    assert [(p.location.pointer, p.message) for p in problems] == [
        (
            "/asyncapi",
            "unsupported AsyncAPI version '2.7.0' (supported: 2.0.0, 2.1.0, 2.2.0, 2.3.0, "
            "2.4.0, 2.5.0, 2.6.0, 3.0.0, 3.1.0)",
        )
    ]


def test_a_version_written_as_a_number_is_refused_with_a_hint_to_quote_it(tmp_path: Path) -> None:
    [problem] = check_text(tmp_path, "asyncapi: 2.6\ninfo: {title: t, version: '1'}\n")
    assert problem.location.pointer == "/asyncapi"
    assert "must be a string" in problem.message
    assert "quote it" in problem.message


def test_a_document_without_asyncapi_is_told_which_versions_exist(tmp_path: Path) -> None:
    [problem] = check_text(tmp_path, "info: {title: t, version: '1'}\n")
    assert problem.location.pointer == ""
    assert problem.message.startswith("`asyncapi` is required")
    assert "3.0.0" in problem.message


def test_fields_added_in_a_later_minor_version_are_unknown_before_it(tmp_path: Path) -> None:
    text = """
        asyncapi: {version}
        info: {{title: t, version: '1'}}
        channels: {{}}
        components:
          messages:
            hello: {{messageId: hello, payload: {{type: string}}}}
        """
    assert check_text(tmp_path, text.format(version="2.4.0")) == []
    [problem] = check_text(tmp_path, text.format(version="2.3.0"))
    assert problem.location.pointer == "/components/messages/hello/messageId"
    assert problem.message.startswith("unknown field `messageId` in a message")


# --- what a problem says and where ---------------------------------------------------------


def test_two_errors_in_one_document_are_both_reported_in_line_order(tmp_path: Path) -> None:
    problems = check_text(
        tmp_path,
        """
        asyncapi: 3.0.0
        info:
          title: Two mistakes
        servers:
          production:
            host: broker.example.com
        """,
    )
    assert [(p.location.pointer, p.message) for p in problems] == [
        ("/info", "`version` is required in an info object"),
        ("/servers/production", "`protocol` is required in a server"),
    ]
    assert problems[0].location.line < problems[1].location.line


def test_a_problem_carries_the_line_and_column_of_the_offending_value(tmp_path: Path) -> None:
    problems = check_text(
        tmp_path,
        """
        asyncapi: 3.0.0
        info:
          title: Lights
          version: 1.0.0
        channels:
          lights:
            address: lights
        operations:
          turnOn:
            action: publish
            channel:
              $ref: '#/channels/lights'
        """,
    )
    [problem] = problems
    assert problem.location.pointer == "/operations/turnOn/action"
    assert (problem.location.line, problem.location.column) == (10, 13)
    assert problem.location.file == tmp_path / "asyncapi.yaml"


def test_an_unknown_field_close_to_a_fixed_field_gets_a_suggestion(tmp_path: Path) -> None:
    [problem] = check_text(
        tmp_path,
        """
        asyncapi: 3.0.0
        info: {title: t, version: '1'}
        servers:
          production: {host: h, protocol: mqtt, protocl: mqtt}
        """,
    )
    assert problem.location.pointer == "/servers/production/protocl"
    assert problem.message == "unknown field `protocl` in a server (did you mean `protocol`?)"


def test_a_failed_alternative_is_explained_by_its_missing_fields(tmp_path: Path) -> None:
    [problem] = check_text(
        tmp_path,
        """
        asyncapi: 2.6.0
        info: {title: t, version: '1'}
        channels: {}
        components:
          messages:
            hello:
              examples:
                - name: empty
        """,
    )
    assert problem.location.pointer == "/components/messages/hello/examples/0"
    assert problem.message == "`payload` or `headers` is required in a message example"


def test_long_values_are_shortened_in_messages(tmp_path: Path) -> None:
    action = "publish" * 200
    problems = check_text(
        tmp_path,
        f"""
        asyncapi: 3.0.0
        info: {{title: t, version: '1'}}
        channels: {{c: {{address: c}}}}
        operations:
          o: {{action: {action}, channel: {{$ref: '#/channels/c'}}}}
        """,
    )
    [problem] = problems
    assert problem.message.startswith("`action` must be one of: send, receive (got 'publish")
    assert len(problem.message) < 150


def test_references_and_extensions_are_accepted_where_asyncapi_allows_them(
    tmp_path: Path,
) -> None:
    problems = check_text(
        tmp_path,
        """
        asyncapi: 3.0.0
        x-owner: lights team
        info:
          title: t
          version: '1'
          x-audience: internal
          tags: [{$ref: '#/components/tags/lights'}]
        servers:
          production: {$ref: '#/components/servers/production'}
        channels:
          lights:
            address: 'lights/{id}'
            x-retained: true
            parameters: {id: {$ref: '#/components/parameters/id'}}
            messages: {on: {$ref: '#/components/messages/on'}}
        operations:
          turnOn: {$ref: '#/components/operations/turnOn'}
        components:
          tags: {lights: {name: lights}}
          servers: {production: {host: h, protocol: mqtt}}
          parameters: {id: {description: the light}}
          messages:
            on: {payload: {type: object}, x-kind: command, traits: [{$ref: '#/t'}]}
          operations:
            turnOn:
              action: send
              channel: {$ref: '#/channels/lights'}
              messages: [{$ref: '#/channels/lights/messages/on'}]
              reply: {$ref: '#/components/replies/ack'}
          replies:
            ack: {address: {location: '$message.header#/replyTo'}}
        """,
    )
    assert problems == []


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_each_version_schema_is_a_valid_json_schema(version: str) -> None:
    Draft202012Validator.check_schema(schema_for(version))


def test_version_3_1_passes_over_unknown_bindings_and_takes_examples_of_any_type(
    tmp_path: Path,
) -> None:
    text = """
        asyncapi: {version}
        info: {{title: t, version: '1'}}
        channels:
          a:
            address: a
            messages:
              m:
                payload: {{type: string}}
                examples:
                  - headers: just text
                    payload: 42
        operations:
          recv:
            action: receive
            channel: {{$ref: '#/channels/a'}}
            bindings:
              ros2: {{role: subscriber}}
              zenoh: {{bindingVersion: '0.1.0'}}
        """
    assert check_text(tmp_path, text.format(version="3.1.0")) == []
    refused = {p.location.pointer for p in check_text(tmp_path, text.format(version="3.0.0"))}
    assert "/channels/a/messages/m/examples/0/headers" in refused
    assert "/operations/recv/bindings/ros2" in refused


# -- the fast path ------------------------------------------------------------------------

_SHARED = Path(__file__).resolve().parents[2] / "shared" / "specs"
_BROKEN = Path(__file__).resolve().parent / "broken"


def _documents() -> list[Path]:
    found = sorted(_BROKEN.glob("*.y*ml")) + sorted(_BROKEN.glob("*.json"))
    if _SHARED.is_dir():
        found += sorted(p for p in _SHARED.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
    return found


def test_jsonschema_rs_finds_valid_exactly_the_documents_jsonschema_finds_valid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fast path (jsonschema-rs) may only skip documents the full check passes, and
    must not send valid ones to it either: compared on every document at hand, and on
    each of them broken in a few ways."""
    from asyncgen.errors import SpecError
    from asyncgen.validate import structure

    if structure._fast_validator("3.0.0") is None:
        pytest.skip("jsonschema-rs is not installed")
    compared = 0
    for path in _documents():
        try:
            doc = load_document(path)
        except SpecError:
            continue
        data = doc.data
        if not isinstance(data, dict) or data.get("asyncapi") not in SUPPORTED_VERSIONS:
            continue
        variants = [
            data,
            {**data, "info": {"title": 1}},
            {**data, "channels": {"x": {"bogus": 1}}},
            {**data, "components": {"schemas": {"a b": {}}}},
        ]
        for variant in variants:
            fast = structure._fast_valid(data["asyncapi"], variant)
            monkeypatch.setattr(structure, "_fast_valid", lambda version, value: False)
            doc.root.data = variant
            slow = check_structure(doc)
            monkeypatch.undo()
            assert fast == (slow == []), (path, [p.message for p in slow][:3])
            compared += 1
    assert compared >= 20
